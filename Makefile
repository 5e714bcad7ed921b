# The commands of the README:
#   make run [SPEED=fast]   set up if needed, execute every notebook, write build/ (executed copies + summary)
#   make test               set up if needed, pytest for aria_utils, then nbval over every notebook (fast)
#   make student            the student edition of the notebooks in build/student/
# For maintainers: make store (outputs into notebooks/), make times (measured times into headers and README),
#   make site (the reading edition in build/site/), make browser-check (widgets in a real browser),
#   make checkpoints (retrain every shipped checkpoint; the README lists them).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPEED ?= full
STAMP := $(VENV)/.aria-installed

.PHONY: setup data run test lab store student times site browser-check checkpoints clean

setup: $(STAMP) data

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps animal-mnist
	$(BIN)/python -m pip install --no-deps -e .
	touch $(STAMP)

# Fashion-MNIST: already found (data/ or the Debian package), else the Debian package (as root), else a download.
data: $(STAMP)
	@$(BIN)/python -c "import aria_utils as A; A.load_fashion_mnist('test', download=False)" 2>/dev/null \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
	|| $(BIN)/python -c "import aria_utils as A; A.load_fashion_mnist('train'); A.load_fashion_mnist('test')"

# Execute every notebook headless; writes under build/ only (executed copies, records, summary, times-table.md).
# A failed, timed-out (10 min per cell) or dead-kernel notebook is reported by cell, the others still run; exit 1.
run: setup
	$(BIN)/python -m aria_utils.runner --speed $(SPEED)

# Execute in full speed and store the outputs in notebooks/ (what is committed), the times in headers and README.
store: setup
	$(BIN)/python -m aria_utils.runner --speed full --store

# Rewrite the measured times (notebooks' headers, README table) from build/runs/, executing nothing.
times:
	$(BIN)/python -m aria_utils.runner --times

# The reading edition: build/site/index.html and one NN_*.html per stored notebook, readable offline.
site: setup
	$(BIN)/python tools/build_site.py --out build/site

# Widgets in a real JupyterLab, in headless Chromium (not in CI): `make browser-check [NB="06 02"]`.
# Needs Debian's chromium and `pip install playwright` in the venv; screenshots and report in build/browser/.
browser-check: setup
	$(BIN)/python tools/browser_check.py $(NB)

# Two workers on the two cores (pytest-xdist); a notebook's cells stay together on one worker (--dist loadscope),
# each kernel with one torch thread, so that the two notebooks running at once share the cores.
test: setup
	MPLBACKEND=Agg ARIA_SPEED=fast ARIA_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -n 2 tests
	ARIA_HEADLESS=1 ARIA_SPEED=fast ARIA_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadscope \
		--nbval-lax --nbval-current-env --durations=20 -o addopts="" notebooks

# The student edition: build/student/NN_*.ipynb, each marked solution replaced by a stub (README, "Student edition").
student: $(STAMP)
	$(BIN)/python -m aria_utils.student

# Every shipped checkpoint of checkpoints/ (seeded; the README's table lists them; about 45 min on 2 cores).
checkpoints: setup
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.scratch
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.scratch --grid photo_crops --draws 0 1 2
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.scratch --grid fashion_mnist --draws 0 1 2
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.representation train-simclr --epochs 15 --augment all
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.representation train-simclr --epochs 15 --augment crops
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.multitask
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.representation train-ae --dim 16 32 64 128 --epochs 5
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.representation train-ae --spatial 16 --noise 0.15 --epochs 5
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.pretext relpos --epochs 20
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.pretext background --epochs 3
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.pretext finetune --seeds 3
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.mae --data scenes --epochs 20 --decoder-depth 2
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.mae --data scenes --epochs 4 --decoder-depth 2 --pixel-targets \
		--out checkpoints/mae_scenes_pixels.pt
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.mae sweep --epochs 3
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.mae finetune --arm mae --steps 200
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.mae finetune --arm scratch --steps 500
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.vit_canvas --model vit --n-train 60000 --steps 2700
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.vit_canvas --model cnn --n-train 60000 --steps 1000
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.vit_canvas --model vit --n-train 10000 --steps 1000
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.vit_canvas --model cnn --n-train 10000 --steps 700
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.vit_canvas --model vit --n-train 2000 --steps 600
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.vit_canvas --model cnn --n-train 2000 --steps 600
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.clip_toy --counts frequent
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.clip_toy --counts rare
	ARIA_THREADS=2 $(BIN)/python -m aria_utils.sam_toy --variants K1 K3 K3_eps0 K3_mean --seeds 0 1 2

lab: setup
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf build cache

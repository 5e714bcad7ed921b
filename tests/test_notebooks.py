"""Every committed notebook has the series' shape, carries the outputs of one complete run (no stray values, no
stderr lines), a generated time in its header, and no measured figure typed into its markdown."""
import ast
import re

import nbformat
import pytest

import aria_utils as A
from aria_utils import timings
from aria_utils.runner import notebook_paths
from aria_utils.setup import repo_root

NOTEBOOKS = notebook_paths()


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1 and NOTEBOOKS[0].name == "00_start_here.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_come_from_one_complete_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: cells not executed once, in order: {counts}"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: stored error output {errors[0].get('ename')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.stem[:2]}")
    assert "google.colab" in code[0] and f'REPO_URL = "{A.REPO_URL}"' in code[0], "Colab cell differs from aria_utils.REPO_URL"
    assert "{REPO_URL}" in code[0].split("print(", 1)[-1] and "returncode != 0" in code[0] and "SystemExit" in code[0], \
        "the Colab cell must say which address it installs from and stop with a clear message when that fails"
    assert re.search(rf'A\.setup\("{path.stem}"', code[1]), "second code cell must call A.setup with the notebook's name"
    checks = [s for s in code if s.startswith("# NBVAL_CHECK_OUTPUT")]
    assert len(checks) == 1, "exactly one check cell"
    assert "A.record(" in "\n".join(code)
    assert "## Exercises" in md and "<details>" in md


def _stray_value(text: str) -> bool:
    """True for the repr of a bare number, bool, None or string (a value a cell left behind by accident)."""
    text = text.strip()
    if re.fullmatch(r"(np\.\w+|tensor)\(.*\)", text):  # np.float64(0.5), tensor(0.5)
        return True
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text in ("nan", "inf", "-inf")
    return value is None or isinstance(value, (bool, int, float, complex, str, bytes))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stray_values_in_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    stray = [(i, o.data["text/plain"][:40]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
             for o in c.outputs if o.output_type == "execute_result" and _stray_value(o.data.get("text/plain", ""))]
    assert not stray, f"{path.name}: cells (index, value) end in a bare value; end them with `;` or print: {stray}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_error_or_warning_lines_in_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    bad = [(i, line[:100]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
           for o in c.outputs if o.output_type == "stream" and o.name == "stderr"
           for line in o.text.splitlines() if line.strip()]
    assert not bad, f"{path.name}: stored stderr lines (cell index, line): {bad[:3]}"


def test_colab_cells_are_identical():
    first = {next(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code") for p in NOTEBOOKS}
    assert len(first) == 1, "every notebook's Colab cell (its first code cell) should be the same text"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_header_time_is_generated(path):
    header = nbformat.read(path, as_version=4).cells[0].source
    start, end = timings.HEADER_MARKS
    assert header.count(start) == 1 and header.count(end) == 1, f"{path.name}: header needs {start} ... {end}"
    assert not any(line.lstrip().startswith("<!--") for line in header.splitlines()), \
        "a line starting with <!-- is an HTML block in Markdown: put text before the marker"


def test_readme_timing_table_is_generated():
    readme = (repo_root() / "README.md").read_text()
    assert all(readme.count(m) == 1 for m in timings.TABLE_MARKS)


# Figures that read as measured: decimals (0.55), percentages (51 %), durations (30 s), ratios (3 times faster),
# and the phrase "stored run". Settings and constants go in code (`eps = 0.05`) or math ($\\tau = 0.2$), skipped here.
MEASURED = re.compile(r"\d+\.\d+|\d+(?:[.,]\d+)?\s?%|\b\d+\s?(?:ms|s|min|minutes?|seconds?|hours?)\b"
                      r"|\b\d+\s?(?:x|×|times) (?:faster|slower|less|more|fewer)\b|stored (?:full |fast )?run", re.I)
ALLOWED = ("75 %", "75%", "Python 3.10–3.13")  # the lecture's (MAE's) mask ratio; the supported Pythons
SKIPPED = [r"<!-- times -->.*?<!-- /times -->", r"```.*?```", r"\$\$.*?\$\$", r"\$[^$]+\$", r"`[^`]+`",
           r"<!--.*?-->", r"\]\([^)]*\)"]  # generated times, code, math, comments, link targets


def measured_figures(markdown: str) -> list[str]:
    """Measured-looking figures in a markdown text, each with a little context."""
    for pattern in SKIPPED:
        markdown = re.sub(pattern, " ", markdown, flags=re.S)
    for allowed in ALLOWED:
        markdown = markdown.replace(allowed, " ")
    return [markdown[max(0, m.start() - 40): m.end() + 10].replace("\n", " ") for m in MEASURED.finditer(markdown)]


def test_measured_figures_are_found():
    assert len(measured_figures("the probe gave 0.55, and 51 % of the attention; in the stored run it took 30 s")) == 4
    assert not measured_figures("with $\\tau = 0.2$ and `eps = 0.05`, 75 % masked <!-- times -->full 4.2 s<!-- /times -->")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_states_no_measured_figures(path):
    nb = nbformat.read(path, as_version=4)
    found = [(i, f) for i, c in enumerate(nb.cells) if c.cell_type == "markdown" for f in measured_figures(c.source)]
    assert not found, (f"{path.name}: markdown states measured figures (cell index, context); print them from the "
                       f"values just computed, or write settings as code or math: {found}")


# --- pages a student reads at a glance -------------------------------------------------------------------------
MAX_CELL_LINES = 30  # a code cell longer than this must be a def/class cell (the slide's concept), not plumbing


def _lines_outside_definitions(source: str) -> int:
    """Non-blank, non-comment lines of a cell that are not inside a top-level def or class (nor an import)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: count every line
        return len(source.splitlines())
    inside = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            inside.update(range(first, node.end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if i not in inside and line.strip() and not line.lstrip().startswith("#"))


def _long_plumbing_cells(path) -> list[tuple[int, int]]:
    nb = nbformat.read(path, as_version=4)
    return [(i, len(c.source.splitlines())) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and len(c.source.splitlines()) > MAX_CELL_LINES and _lines_outside_definitions(c.source) > 5]


def test_long_cell_rule():
    concept = "import torch\n\n\ndef f(x):\n" + "    x = x + 1\n" * 40 + "    return x\n"
    plumbing = "\n".join(f"a{i} = {i}" for i in range(40))
    assert _lines_outside_definitions(concept) == 0 and _lines_outside_definitions(plumbing) == 40


LESSONS = [p for p in NOTEBOOKS if p.stem[:2] != "00"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_code_cells_fit_on_a_screen(path):
    long = _long_plumbing_cells(path)
    assert not long, (f"{path.name}: code cells over {MAX_CELL_LINES} lines that are not def/class cells "
                      f"(cell index, lines): {long}; move the plumbing into aria_utils")


def _try_it_cells(nb) -> list[tuple[int, "nbformat.NotebookNode"]]:
    """The code cells of the "Try it" section (from its heading to the next heading of the same level)."""
    out, inside = [], False
    for i, c in enumerate(nb.cells):
        if c.cell_type == "markdown" and c.source.startswith("## "):
            inside = c.source.startswith("## Try it")
        elif inside and c.cell_type == "code" and ("widgets" in c.source or "try_it(" in c.source):
            out.append((i, c))
    return out


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_try_it_cells_store_their_default_figure(path):
    nb = nbformat.read(path, as_version=4)
    cells = _try_it_cells(nb)
    assert cells, f"{path.name}: no widget cell in a '## Try it' section"
    bare = [i for i, c in cells if not any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert not bare, f"{path.name}: 'Try it' cells without a stored figure of their defaults: {bare}"

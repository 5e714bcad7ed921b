"""Notebook 07's benchmark: small Fashion-MNIST items on 48 x 48 canvases strewn with distractors (fragments
of other items), the models compared on it (the plain ViT, its hybrid with a convolutional stem, a small CNN),
and the longer-trained checkpoints shipped in `checkpoints/`.

Reproduce the committed checkpoints (2 CPU threads; seconds and machine are stored in each file). The step
counts fall with the data (more passes over a small set):

    python -m aria_utils.vit_canvas --model vit --n-train 60000 --steps 2700
    python -m aria_utils.vit_canvas --model cnn --n-train 60000 --steps 1000
    python -m aria_utils.vit_canvas --model vit --n-train 2000 --steps 600
    python -m aria_utils.vit_canvas --model cnn --n-train 2000 --steps 600
    python -m aria_utils.vit_canvas --model vit --n-train 10000 --steps 1000
    python -m aria_utils.vit_canvas --model cnn --n-train 10000 --steps 700

Each writes `checkpoints/vit_<model>_canvas_n<n-train>.pt` (`shipped_path`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .data import load_fashion_mnist, make_canvas
from .blocks import conv_bn
from .setup import repo_root
from .training import classification_loss, fit
from .vit import HybridViT, ViT

# The canvases: items shrunk to 16-26 px (scale x 48) at random places; train and test placements differ by seed.
# `distractors` fragments (`fragment` px square) cut from other items lie on the background, off the item's box.
CANVAS: dict[str, Any] = {"S": 48, "scale": (0.33, 0.55), "seed_train": 1, "seed_test": 2,
                          "distractors": 6, "fragment": (5, 9)}
# The transformer of both ViTs (notebook 07's figure): width d, L blocks of H heads, 8 x 8 patches -> 36 tokens.
ARCH: dict[str, int] = {"image_size": 48, "patch": 8, "d": 64, "depth": 4, "H": 4}
# One optimiser recipe for every model on the canvases.
RECIPE: dict[str, float] = {"batch_size": 128, "lr": 2e-3, "weight_decay": 0.05, "warmup": 50}
MODELS = ("vit", "hybrid", "cnn")
# The numbers of training canvases of the shipped checkpoints (notebook 07's data-size curve).
DATA_SIZES: tuple[int, ...] = (2_000, 10_000, 60_000)


def add_distractors(images: torch.Tensor, boxes: torch.Tensor, pool: torch.Tensor, k: int,
                    size: tuple[int, int], seed: int) -> torch.Tensor:
    """`k` square fragments (side in `size`, from the central part of random `pool` items `[M, 28, 28]`)
    pasted (pixel-wise max) on each canvas `[N, 1, S, S]`, never overlapping the item's box `[N, 4]`
    (x0, y0, x1, y1) grown by 1 px; a fragment with no free place is dropped. Returns new canvases."""
    g = torch.Generator().manual_seed(seed)
    out = images.clone()
    n, S = len(images), images.shape[-1]
    pool = pool.float() / 255.0 if pool.dtype == torch.uint8 else pool.float()
    for i in range(n):
        x0, y0, x1, y1 = (int(v) for v in boxes[i])
        for _ in range(k):
            c = int(torch.randint(size[0], size[1] + 1, (1,), generator=g))
            j, u, v = (int(t) for t in torch.randint(0, 1 << 30, (3,), generator=g))
            frag = pool[j % len(pool), 6 + u % (16 - c + 1):, 6 + v % (16 - c + 1):][:c, :c]  # (c, c)
            for _try in range(10):
                px, py = (int(t) for t in torch.randint(0, S - c + 1, (2,), generator=g))
                if px + c < x0 - 1 or px > x1 + 1 or py + c < y0 - 1 or py > y1 + 1:
                    out[i, 0, py:py + c, px:px + c] = torch.maximum(out[i, 0, py:py + c, px:px + c], frag)
                    break
    return out


def canvas_data(n_train: int, n_test: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The first `n_train` training items and `n_test` test items of Fashion-MNIST on canvases with
    distractors: `image`, `label`, `box`, `mask` (the item's pixels only) and `foreground` (every pixel
    above the mask's threshold, item or distractor). Distractors come from the other items of the same split;
    a split of 0 items is an empty dict."""
    out: list[dict[str, torch.Tensor]] = []
    for split, n, seed in (("train", n_train, CANVAS["seed_train"]), ("test", n_test, CANVAS["seed_test"])):
        if n == 0:  # nothing asked of this split: do not load it
            out.append({})
            continue
        x, y = load_fashion_mnist(split)
        d = make_canvas(x[:n], y[:n], canvas=CANVAS["S"], scale=CANVAS["scale"], seed=seed)
        d["image"] = add_distractors(d["image"], d["box"], x[-10_000:] if split == "train" else x[n:],
                                     CANVAS["distractors"], CANVAS["fragment"], seed + 100)
        d["foreground"] = d["image"][:, 0] > 0.1
        out.append(d)
    return out[0], out[1]


def small_cnn(n_classes: int = 10, width: int = 16) -> nn.Sequential:
    """Four 3 x 3 conv-BN-ReLU layers (16-32-64-64 channels), 2 x 2 max-pooling between them, then a global
    max-pool (where the item is does not matter) and a linear head."""
    w = width
    return nn.Sequential(*conv_bn(1, w), nn.MaxPool2d(2), *conv_bn(w, 2 * w), nn.MaxPool2d(2),
                         *conv_bn(2 * w, 4 * w), nn.MaxPool2d(2), *conv_bn(4 * w, 4 * w),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_classes))


def new_model(model: str = "vit", seed: int = 0) -> nn.Module:
    """The plain ViT, the hybrid or the small CNN with the initial weights that `seed` gives (a checkpoint's
    random-weight twin)."""
    if model not in MODELS:
        raise ValueError(f"model={model!r}: choose one of {MODELS}.")
    torch.manual_seed(seed)
    return {"vit": lambda: ViT(**ARCH), "hybrid": lambda: HybridViT(**ARCH), "cnn": small_cnn}[model]()


def flip_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """`classification_loss` with a random horizontal flip of half the batch (a garment mirrored is the same
    garment)."""
    flip = torch.rand(len(x), 1, 1, 1) < 0.5
    return classification_loss(model, torch.where(flip, x.flip(-1), x), y)


def train_classifier(model: nn.Module, train: dict[str, torch.Tensor], steps: int, *, seconds: float | None = None,
                     seed: int = 0, desc: str = "train", progress: bool = True) -> dict[str, Any]:
    """`RECIPE` (AdamW, warm-up, cosine) for `steps` steps on the canvases; returns the history as a dict."""
    hist = fit(model, [train["image"], train["label"]], flip_loss, steps=steps, seconds=seconds, seed=seed,
               desc=desc, progress=progress, **RECIPE)
    return hist.to_dict()


def shipped_config(model: str, n_train: int, steps: int, seed: int) -> dict[str, Any]:
    """What a shipped checkpoint was trained with (stored in the file and checked on load)."""
    return {"model": model, "arch": ARCH, "canvas": CANVAS, "recipe": RECIPE, "n_train": n_train, "steps": steps,
            "seed": seed}


def shipped_path(model: str, n_train: int) -> Path:
    """`checkpoints/vit_<model>_canvas_n<n_train>.pt`."""
    return repo_root() / "checkpoints" / f"vit_{model}_canvas_n{n_train}.pt"


def load_shipped(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A model shipped in `checkpoints/`, in eval mode, and its metadata (config, command, seconds, machine,
    loss curve). Raises `CheckpointError` when the file was trained on other canvases or another architecture."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with `python -m aria_utils.vit_canvas`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = blob.get("config")
    want = json.loads(json.dumps(shipped_config("?", 0, 0, 0)))  # tuples read back as lists
    if not isinstance(config, dict) or config.get("model") not in MODELS or any(
            config.get(k) != want[k] for k in ("arch", "canvas", "recipe")):
        raise CheckpointError(f"{path} holds another model or data ({config}); "
                              "retrain it with `python -m aria_utils.vit_canvas`.")
    model = new_model(config["model"], config["seed"])
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": config}


def show_map(ax: Any, image: torch.Tensor, amap: torch.Tensor, vmax: float, title: str | None = None) -> Any:
    """An image `[1, S, S]` with a patch map `[g, g]` on top, coloured from 0 to `vmax` (one scale for the
    panels that are compared); returns the map's artist, for a colour bar."""
    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    im = ax.imshow(amap, cmap="inferno", alpha=0.65, vmin=0, vmax=vmax, interpolation="nearest",
                   extent=(-0.5, image.shape[-1] - 0.5, image.shape[-2] - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return im


def main(argv: list[str] | None = None) -> int:
    """Train one model on `--n-train` training canvases and save it where notebook 07 loads it."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=MODELS, default="vit")
    ap.add_argument("--n-train", type=int, default=60_000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3600.0, help="safety cap on wall-clock time")
    ap.add_argument("--out", type=Path, default=None, help="default: checkpoints/vit_<model>_canvas_n<n>.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    train, _ = canvas_data(args.n_train, 0)
    model = new_model(args.model, args.seed)
    hist = train_classifier(model, train, args.steps, seconds=args.seconds, seed=args.seed, desc=args.model)
    meta = {"history": {k: v for k, v in hist.items() if k not in ("loss", "logs")},
            "loss_every_10": [sum(hist["loss"][i:i + 10]) / len(hist["loss"][i:i + 10])
                              for i in range(0, len(hist["loss"]), 10)],
            "command": "python -m aria_utils.vit_canvas " + " ".join(argv if argv is not None else sys.argv[1:]),
            "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {hist['steps']} steps "
                          f"in {hist['seconds']:.0f} s wall",
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__)}
    out = args.out or shipped_path(args.model, args.n_train)
    path = save_checkpoint(out, model, shipped_config(args.model, args.n_train, hist["steps"], args.seed), meta)
    print(f"[vit_canvas] {args.model} on {args.n_train} canvases: {hist['steps']} steps in {hist['seconds']:.0f} s, "
          f"final loss {meta['loss_every_10'][-1]:.4f} -> {path} ({Path(path).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Notebook 07's benchmark: small Fashion-MNIST items on 48 x 48 canvases, the models compared on it
(the plain ViT, its hybrid with a convolutional stem, a small CNN), and the longer-trained hybrid
checkpoint shipped in `checkpoints/`.

Reproduce the committed checkpoint (2 CPU threads, about a quarter of an hour on the course's CPU):

    ARIA_THREADS=2 python -m aria_utils.vit_canvas --steps 4500 --out checkpoints/vit_hybrid_canvas.pt
"""
from __future__ import annotations

import argparse
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
from .vit import HybridViT

# The canvases: items shrunk to 16-26 px (scale x 48) at random places; train and test placements differ by seed.
CANVAS: dict[str, Any] = {"S": 48, "scale": (0.33, 0.55), "seed_train": 1, "seed_test": 2}
# The transformer of both ViTs (notebook 07's figure): width d, L blocks of H heads, 8 x 8 patches -> 36 tokens.
ARCH: dict[str, int] = {"image_size": 48, "patch": 8, "d": 64, "depth": 4, "H": 4}
# One optimiser recipe for every model on the canvases.
RECIPE: dict[str, float] = {"batch_size": 128, "lr": 2e-3, "weight_decay": 0.05, "warmup": 50}
SHIPPED_HYBRID = repo_root() / "checkpoints" / "vit_hybrid_canvas.pt"


def canvas_data(n_train: int, n_test: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The first `n_train` training items and `n_test` test items of Fashion-MNIST, placed on canvases
    (`make_canvas`: image, label, box, mask)."""
    x_tr, y_tr = load_fashion_mnist("train")
    x_te, y_te = load_fashion_mnist("test")
    kw = {"canvas": CANVAS["S"], "scale": CANVAS["scale"]}
    return (make_canvas(x_tr[:n_train], y_tr[:n_train], seed=CANVAS["seed_train"], **kw),
            make_canvas(x_te[:n_test], y_te[:n_test], seed=CANVAS["seed_test"], **kw))


def small_cnn(n_classes: int = 10, width: int = 16) -> nn.Sequential:
    """Four 3 x 3 conv-BN-ReLU layers (16-32-64-64 channels), 2 x 2 max-pooling between them, then a global
    max-pool (where the item is does not matter) and a linear head."""
    w = width
    return nn.Sequential(*conv_bn(1, w), nn.MaxPool2d(2), *conv_bn(w, 2 * w), nn.MaxPool2d(2),
                         *conv_bn(2 * w, 4 * w), nn.MaxPool2d(2), *conv_bn(4 * w, 4 * w),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, n_classes))


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


def hybrid_config(steps: int, seed: int) -> dict[str, Any]:
    """What the shipped hybrid checkpoint was trained with (it is stored in the file and checked on load)."""
    return {"arch": ARCH, "canvas": CANVAS, "recipe": RECIPE, "n_train": 60_000, "steps": steps, "seed": seed}


def new_hybrid(seed: int = 0) -> HybridViT:
    """The hybrid ViT with the initial weights that `seed` gives (the checkpoint's random-weight twin)."""
    torch.manual_seed(seed)
    return HybridViT(**ARCH)


def load_shipped_hybrid(path: str | Path = SHIPPED_HYBRID) -> tuple[HybridViT, dict[str, Any]]:
    """The longer-trained hybrid ViT shipped in `checkpoints/`, in eval mode, and its metadata
    (config, command, seconds, machine, loss curve)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with `python -m aria_utils.vit_canvas`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = blob.get("config")
    if not isinstance(config, dict) or config.get("arch") != ARCH:
        raise CheckpointError(f"{path} holds another model ({config}); retrain it with `python -m aria_utils.vit_canvas`.")
    model = new_hybrid(config["seed"])
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": config}


def main(argv: list[str] | None = None) -> int:
    """Train the hybrid ViT on 60k training canvases and save it where notebook 07 loads it."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3 * 3600.0, help="safety cap on wall-clock time")
    ap.add_argument("--out", type=Path, default=SHIPPED_HYBRID)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    train, _ = canvas_data(60_000, 0)
    model = new_hybrid(args.seed)
    hist = train_classifier(model, train, args.steps, seconds=args.seconds, seed=args.seed, desc="hybrid ViT")
    meta = {"history": {k: v for k, v in hist.items() if k not in ("loss", "logs")},
            "loss_every_10": hist["loss"][::10],
            "command": "python -m aria_utils.vit_canvas " + " ".join(argv if argv is not None else sys.argv[1:]),
            "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {hist['steps']} steps "
                          f"in {hist['seconds']:.0f} s wall",
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__)}
    path = save_checkpoint(args.out, model, hybrid_config(hist["steps"], args.seed), meta)
    print(f"[vit_canvas] {hist['steps']} steps in {hist['seconds']:.0f} s, final loss {hist['loss'][-1]:.4f} "
          f"-> {path} ({Path(path).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

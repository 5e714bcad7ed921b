"""Notebook 01's from-scratch reference: a small CNN, its training recipe, and the networks trained on
100 labels per class for 100 epochs and on 1000 labels per class for 15 epochs, shipped in `checkpoints/`.

Make the shipped networks (about 5 minutes on 2 CPU cores; `--n 100` or `--n 1000` makes one budget)::

    ARIA_THREADS=2 python -m aria_utils.scratch
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
import torch.nn.functional as F

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .data import to_float
from .blocks import conv_bn
from .setup import repo_root
from .training import History, fit
from .transfer import labelled_pool, load_target, random_shift_flip

RECIPE = {"batch_size": 64, "lr": 3e-3, "weight_decay": 5e-2, "warmup": 20}  # AdamW, cosine to 0
SHIPPED_EPOCHS = {100: 100, 1000: 15}  # labels per class of a shipped network -> its epochs (to a plateau)


def scratch_cnn(in_channels: int, n_classes: int, width: int = 16) -> nn.Sequential:
    """A small CNN sized for 28-32 px inputs (five 3 x 3 conv-BN-ReLU layers, two max-pools, global average
    pooling, dropout 0.3, linear head): the from-scratch reference, under 1 % of EfficientNet-Lite0's size.
    The conv-BN-ReLU layers are unpacked into one flat Sequential (the shipped checkpoints' layout)."""
    w = width
    return nn.Sequential(*conv_bn(in_channels, w), *conv_bn(w, w), nn.MaxPool2d(2), *conv_bn(w, 2 * w),
                         *conv_bn(2 * w, 2 * w), nn.MaxPool2d(2), *conv_bn(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * w, n_classes))


def train_scratch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0,
                  desc: str = "from scratch", progress: bool = True) -> History:
    """`RECIPE` for `steps` steps on uint8 images, each batch mirrored and shifted by up to 2 px;
    cross-entropy with label smoothing 0.1."""
    aug = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(to_float(random_shift_flip(xb, 2, aug))), yb, label_smoothing=0.1)

    return fit(model, [x, y], loss_fn, steps=steps, seed=seed, desc=desc, progress=progress, **RECIPE)


def shipped_path(target: str, n: int = 1000) -> Path:
    return repo_root() / "checkpoints" / f"scratch_{target}_n{n}.pt"


def scratch_config(target: str, steps: int, seed: int, n: int = 1000) -> dict[str, Any]:
    """What a shipped network was trained with (stored in the file and checked on load)."""
    return {"arch": "scratch_cnn(width=16)", "recipe": RECIPE, "target": target, "n": n,
            "pool_seed": 0, "steps": steps, "seed": seed}


def load_shipped_scratch(target: str, in_channels: int, n_classes: int, n: int = 1000) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped from-scratch network for `target` and n labels per class, in eval mode, and its metadata."""
    if n not in SHIPPED_EPOCHS:
        raise ValueError(f"No network is shipped for n={n} labels per class; the shipped ones: {sorted(SHIPPED_EPOCHS)}.")
    path = shipped_path(target, n)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with `python -m aria_utils.scratch --n {n}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = blob.get("config")
    if not isinstance(config, dict) or config.get("target") != target or config.get("n") != n:
        raise CheckpointError(f"{path} holds another network ({config}); retrain it with "
                              f"`python -m aria_utils.scratch --n {n}`.")
    model = scratch_cnn(in_channels, n_classes)
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": config}


def main(argv: list[str] | None = None) -> int:
    """Train the small CNN on n labels per class of each offline target and save it in `checkpoints/`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", choices=sorted(SHIPPED_EPOCHS), default=sorted(SHIPPED_EPOCHS),
                    help="labels per class (default: every shipped budget)")
    ap.add_argument("--epochs", type=int, default=None, help="default: SHIPPED_EPOCHS[n]")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs must be at least 1 (got {args.epochs}).")
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    for target in ("photo_crops", "fashion_mnist"):
        d = load_target(target)  # once per target, for every budget
        for n in args.n:
            epochs = SHIPPED_EPOCHS[n] if args.epochs is None else args.epochs
            pool = labelled_pool(d, [n], 1)
            x, y = pool["x_lab"], pool["y_lab"]
            steps = epochs * (len(x) // RECIPE["batch_size"])
            torch.manual_seed(args.seed)
            model = scratch_cnn(to_float(x[:1]).shape[1], len(d["classes"]))
            hist = train_scratch(model, x, y, steps, seed=args.seed, desc=f"{target}, n={n}")
            meta = {"seconds": hist.seconds, "loss": hist.loss,
                    "command": ("python -m aria_utils.scratch "
                                + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
                    "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {hist.steps} steps "
                                  f"({epochs} epochs) in {hist.seconds:.0f} s wall",
                    "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__)}
            path = save_checkpoint(shipped_path(target, n), model, scratch_config(target, hist.steps, args.seed, n),
                                   meta)
            print(f"[scratch] {target}, n={n}: {hist.steps} steps in {hist.seconds:.0f} s, final loss "
                  f"{hist.loss[-1]:.4f} -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

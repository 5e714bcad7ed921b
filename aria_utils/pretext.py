"""A second pretext task (notebook 04): rotation prediction (Gidaris et al., 2018). Each image is turned by
0, 90, 180 or 270 degrees and the network predicts which; recognising "upright" needs the object's shape."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from .checkpoints import train_or_load
from .data import to_float
from .finetune import Classifier
from .representation import ConvEncoder
from .training import classification_loss, fit

N_ROTATIONS = 4


def rotate_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float `[B, C, H, W]` (square) -> each image turned by k * 90 degrees, and the labels k `[B]` in {0, 1, 2, 3}."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate_batch needs square images, got {tuple(x.shape[-2:])}.")
    k = torch.randint(0, N_ROTATIONS, (len(x),), generator=generator)
    out = x.clone()
    for r in range(1, N_ROTATIONS):
        sel = (k == r).to(x.device)
        out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out, k.to(x.device)


@dataclass(frozen=True)
class RotationConfig:
    """What defines a rotation-prediction run (its cache key)."""

    dim: int = 128
    width: int = 16
    size: int = 32
    epochs: float = 2.0
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    speed: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "rotation", **asdict(self)}


def make_rotation_net(cfg: RotationConfig) -> Classifier:
    """`ConvEncoder` + a linear layer to the 4 rotations, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return Classifier(ConvEncoder(cfg.dim, cfg.width, cfg.size), cfg.dim, N_ROTATIONS)


def rotation_loss(model: nn.Module, xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """A `fit` loss: cross-entropy of the predicted rotation, with the batch accuracy as a log."""
    return classification_loss(model, *rotate_batch(to_float(xb)))


def train_rotation(cfg: RotationConfig, images: torch.Tensor, seconds: float | None = None,
                   progress: bool = True) -> tuple[Classifier, dict[str, Any]]:
    """Train-or-load rotation prediction on unlabelled images (cache `rotation-<hash>`). Returns the network
    (its `.encoder` is the representation) and the metadata."""
    model = make_rotation_net(cfg)

    def train(m: nn.Module) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        hist = fit(m, [images], rotation_loss, epochs=cfg.epochs, seconds=seconds, batch_size=cfg.batch_size,
                   lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed, desc="rotation", progress=progress)
        return {"history": hist.to_dict()}

    meta = train_or_load("rotation", cfg.to_dict(), model, train)
    return model.eval(), meta

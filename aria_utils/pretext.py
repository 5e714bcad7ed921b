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


# ----------------------------------------------------------------------------- relative position (Doersch et al.)

# The 8 neighbours of the centre cell of a 3 x 3 grid, as (row, column) steps; the label is the index here.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def grid_patch(x: torch.Tensor, row: int | torch.Tensor, col: int | torch.Tensor, patch: int, cell: int,
               offset: torch.Tensor) -> torch.Tensor:
    """The `patch`-pixel patch of cell (`row`, `col`) (ints, or one per image `[B]`) of a 3 x 3 grid of
    `cell`-pixel cells centred in `x` `[B, C, H, W]`, at `offset` `[B, 2]` (row, column) pixels inside the cell.
    Returns `[B, C, patch, patch]`."""
    origin = (x.shape[-1] - 3 * cell) // 2
    r0 = origin + row * cell + offset[:, 0]
    c0 = origin + col * cell + offset[:, 1]
    ar = torch.arange(patch)
    rows = (r0[:, None] + ar)[:, None, :, None].expand(-1, x.shape[1], -1, patch)          # [B, C, p, p]
    cols = (c0[:, None] + ar)[:, None, None, :].expand(-1, x.shape[1], patch, -1)
    b = torch.arange(len(x))[:, None, None, None]
    ch = torch.arange(x.shape[1])[None, :, None, None]
    return x[b, ch, rows, cols]


def relative_position_batch(x: torch.Tensor, patch: int = 8, cell: int = 10,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Doersch et al. (2015) on float `[B, C, H, W]`: the centre patch of a 3 x 3 grid, one of its 8 neighbours
    drawn at random, and the neighbour's label in {0, ..., 7} (`NEIGHBOURS`). Each patch sits at a random offset
    of 0 to `cell - patch` pixels in its cell, so the gap between patches varies and edges do not give the answer.
    Returns `(centre [B, C, p, p], neighbour [B, C, p, p], label [B])`."""
    if 3 * cell > min(x.shape[-2:]) or patch > cell:
        raise ValueError(f"a 3 x 3 grid of {cell}-px cells with {patch}-px patches does not fit {tuple(x.shape[-2:])}.")
    B, jitter = len(x), cell - patch + 1
    label = torch.randint(0, len(NEIGHBOURS), (B,), generator=generator)
    off_c, off_n = torch.randint(0, jitter, (2, B, 2), generator=generator)
    centre = grid_patch(x, 1, 1, patch, cell, off_c)
    steps = torch.tensor(NEIGHBOURS)[label]                                               # [B, 2]
    neighbour = grid_patch(x, 1 + steps[:, 0], 1 + steps[:, 1], patch, cell, off_n)
    return centre, neighbour, label


class RelativePositionNet(nn.Module):
    """A patch encoder `f` (shared by both patches) and a small head on `[f(centre), f(neighbour)]` -> 8 logits."""

    def __init__(self, dim: int = 64, width: int = 16, patch: int = 8) -> None:
        super().__init__()
        self.encoder = ConvEncoder(dim, width, patch)
        self.head = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, len(NEIGHBOURS)))

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(centre), self.encoder(neighbour)], dim=1))


class GridFeatures(nn.Module):
    """The representation of a relative-position encoder for a whole image: the codes of the 9 patches of the
    grid (each at the middle of its cell), concatenated in reading order: `[B, 1, H, W]` -> `[B, 9 * dim]`."""

    def __init__(self, encoder: nn.Module, patch: int = 8, cell: int = 10) -> None:
        super().__init__()
        self.encoder, self.patch, self.cell = encoder, patch, cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        off = torch.full((len(x), 2), (self.cell - self.patch) // 2)
        patches = [grid_patch(x, r, c, self.patch, self.cell, off) for r in range(3) for c in range(3)]
        codes = self.encoder(torch.cat(patches))                                           # [9B, dim]
        return codes.reshape(9, len(x), -1).permute(1, 0, 2).flatten(1)


@dataclass(frozen=True)
class RelativePositionConfig:
    """What defines a relative-position run (its cache key)."""

    dim: int = 64
    width: int = 16
    patch: int = 8
    cell: int = 10
    epochs: float = 2.0
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    speed: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "relative-position", **asdict(self)}


def make_relative_position_net(cfg: RelativePositionConfig) -> RelativePositionNet:
    """The patch encoder and head, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return RelativePositionNet(cfg.dim, cfg.width, cfg.patch)


def relative_position_loss_fn(patch: int = 8, cell: int = 10) -> Any:
    """A `fit` loss: cross-entropy of the neighbour's predicted position, with the batch accuracy as a log."""
    def loss_fn(model: nn.Module, xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c, n, y = relative_position_batch(to_float(xb), patch, cell)
        logits = model(c, n)
        return nn.functional.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean().item()}
    return loss_fn


@torch.no_grad()
def relative_position_accuracy(model: RelativePositionNet, images: torch.Tensor, patch: int = 8, cell: int = 10,
                               seed: int = 0, batch_size: int = 1000) -> float:
    """8-way accuracy on held-out images (one random neighbour each, seeded draws); chance is 1/8."""
    model.eval()
    g, hits = torch.Generator().manual_seed(seed), 0
    for i in range(0, len(images), batch_size):
        c, n, y = relative_position_batch(to_float(images[i: i + batch_size]), patch, cell, generator=g)
        hits += int((model(c, n).argmax(-1) == y).sum())
    return hits / len(images)


def train_relative_position(cfg: RelativePositionConfig, images: torch.Tensor, seconds: float | None = None,
                            progress: bool = True) -> tuple[RelativePositionNet, dict[str, Any]]:
    """Train-or-load the relative-position pretext on unlabelled images (cache `relpos-<hash>`). Returns the
    network (its `.encoder` codes one patch; `GridFeatures(net.encoder)` codes an image) and the metadata."""
    model = make_relative_position_net(cfg)

    def train(m: nn.Module) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        hist = fit(m, [images], relative_position_loss_fn(cfg.patch, cfg.cell), epochs=cfg.epochs, seconds=seconds,
                   batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed,
                   desc="relative position", progress=progress)
        return {"history": hist.to_dict()}

    meta = train_or_load("relpos", cfg.to_dict(), model, train)
    return model.eval(), meta

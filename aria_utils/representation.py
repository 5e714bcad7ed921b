"""Representation learning without labels (notebooks 03 autoencoders, 04 SimCLR): the models and trainers.

`ConvEncoder`, the small CNN shared by the autoencoders and SimCLR, and its mirror `ConvDecoder`;
`nt_xent`; `AutoEncoder` and `SimCLR`; budgeted, cached trainers `train_autoencoder` and `train_simclr`;
and a command line that makes the longer-trained SimCLR checkpoint shipped in `checkpoints/`:

    ARIA_THREADS=2 python -m aria_utils.representation train-simclr --epochs 15 --augment all
    ARIA_THREADS=2 python -m aria_utils.representation train-simclr --epochs 15 --augment crops

The models read the scene benchmark's 32 x 32 images by default (`protocol.load_scene_data`);
how they are evaluated is in `protocol` and `finetune`, the augmentations in `augment`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import resize, simclr_augment
from .blocks import conv_bn
from .checkpoints import load_checkpoint, save_checkpoint, train_or_load
from .data import to_float
from .setup import repo_root
from .training import History, fit


# ----------------------------------------------------------------------------- the shared encoder

class ConvEncoder(nn.Module):
    """phi: `[B, 1, H, W]` in [0, 1] -> code `[B, dim]`. Resizes to `size` x `size` first (if needed).

    Four 3x3 conv layers (width w, 2w, 4w, 8w; size -> size/2 -> size/4), global average pooling to 8w
    numbers, and a linear layer to the code.
    """

    def __init__(self, dim: int = 128, width: int = 16, size: int = 32) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"size={size} must be a multiple of 4.")
        self.dim, self.width, self.size = dim, width, size
        w = width
        self.features = nn.Sequential(conv_bn(1, w), conv_bn(w, 2 * w, 2), conv_bn(2 * w, 4 * w, 2), conv_bn(4 * w, 8 * w))
        self.fc = nn.Linear(8 * w, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize(x, self.size) - 0.5                       # [B, 1, s, s], centred
        h = self.features(x.contiguous(memory_format=torch.channels_last))  # [B, 8w, s/4, s/4]
        return self.fc(h.mean(dim=(2, 3)))                   # pooled [B, 8w] -> [B, dim]


class ConvDecoder(nn.Module):
    """psi: code `[B, dim]` -> image `[B, 1, size, size]` in [0, 1] (the mirror of `ConvEncoder`)."""

    def __init__(self, dim: int = 128, width: int = 16, size: int = 32) -> None:
        super().__init__()
        w, self.s4 = width, size // 4
        self.fc = nn.Linear(dim, 4 * w * self.s4 ** 2)
        self.up = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),  # s/2
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),          # s
            nn.Conv2d(w, 1, 3, 1, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(len(z), -1, self.s4, self.s4)    # [B, 4w, s/4, s/4]
        return self.up(h)                                    # [B, 1, s, s]


# ----------------------------------------------------------------------------- losses

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """NT-Xent (SimCLR) as a cross-entropy over the 2N x 2N cosine-similarity matrix; positives are the
    other view of the same image, the diagonal is excluded. `z1, z2`: `[N, D]`."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)              # [2N, D]
    n = len(z1)
    sim = z @ z.T / tau                                      # [2N, 2N]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """||x_hat - x||^2, summed over pixels and averaged over the batch."""
    return ((x_hat - x) ** 2).flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------- models

class AutoEncoder(nn.Module):
    """x_hat = psi(phi(x)), at the encoder's resolution."""

    def __init__(self, phi: nn.Module, psi: nn.Module) -> None:
        super().__init__()
        self.phi, self.psi = phi, psi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.psi(self.phi(x))


class SimCLR(nn.Module):
    """Encoder f (the representation h = f(x)) and projection head g (z = g(h), where the loss is taken)."""

    def __init__(self, encoder: nn.Module, dim: int = 128, proj_dim: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                                  nn.Linear(dim, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


# ----------------------------------------------------------------------------- configs and trainers

@dataclass(frozen=True)
class AEConfig:
    """What defines an autoencoder run (its cache key)."""

    dim: int = 128
    width: int = 16
    size: int = 32
    epochs: float = 3.0
    batch_size: int = 256
    lr: float = 2e-3
    noise: float = 0.0          # > 0: denoising autoencoder (Gaussian noise of this std on the input)
    seed: int = 0
    speed: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "autoencoder", **asdict(self)}


@dataclass(frozen=True)
class SimCLRConfig:
    """What defines a SimCLR run (its cache key)."""

    dim: int = 128
    width: int = 16
    size: int = 32
    proj_dim: int = 64
    tau: float = 0.2
    epochs: float = 3.0
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    crop_scale: tuple[float, float] = (0.3, 1.0)
    augment: str = "all"    # "all" augmentations, or "crops" only (resized crop + flip)
    seed: int = 0
    speed: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "simclr", **asdict(self)}


def make_encoder(cfg: AEConfig | SimCLRConfig) -> ConvEncoder:
    """The shared encoder for a config (random weights from the current torch seed)."""
    return ConvEncoder(cfg.dim, cfg.width, cfg.size)


def make_autoencoder(cfg: AEConfig) -> AutoEncoder:
    """phi = ConvEncoder, psi = ConvDecoder, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return AutoEncoder(ConvEncoder(cfg.dim, cfg.width, cfg.size), ConvDecoder(cfg.dim, cfg.width, cfg.size))


def make_simclr(cfg: SimCLRConfig) -> SimCLR:
    """Encoder + BN projection head, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return SimCLR(ConvEncoder(cfg.dim, cfg.width, cfg.size), cfg.dim, cfg.proj_dim)


def autoencoder_loss_fn(size: int, noise: float = 0.0) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    """A `fit` loss: reconstruct the `size`-px image from itself (or from a noisy copy when `noise` > 0)."""
    def loss_fn(model: nn.Module, xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = resize(to_float(xb), size)                       # [B, 1, s, s]
        x_in = (x + noise * torch.randn_like(x)).clamp(0, 1) if noise > 0 else x
        x_hat = model(x_in)
        loss = reconstruction_loss(x_hat, x)
        return loss, {"mse_per_pixel": loss.item() / x[0].numel()}
    return loss_fn


def simclr_loss_fn(size: int, tau: float, crop_scale: tuple[float, float] = (0.3, 1.0), augment: str = "all"
                   ) -> Callable[..., torch.Tensor]:
    """A `fit` loss: two views of each image (`augment`: "all" or "crops" only), NT-Xent on the projections."""
    if augment not in ("all", "crops"):
        raise ValueError(f"augment={augment!r}: use 'all' or 'crops'.")
    extra = {} if augment == "all" else {"strength": 0.0, "noise": 0.0, "erase": 0.0}

    def loss_fn(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        x = to_float(xb)
        v1, v2 = simclr_augment(x, size, crop_scale, **extra), simclr_augment(x, size, crop_scale, **extra)
        z = model(torch.cat([v1, v2]))                       # [2B, proj_dim]
        return nt_xent(z[: len(x)], z[len(x):], tau)
    return loss_fn


def train_autoencoder(cfg: AEConfig, images: torch.Tensor, model: nn.Module | None = None,
                      seconds: float | None = None, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Train-or-load an autoencoder on the unlabelled training images (cache `autoencoder-<hash>`).

    `model` may be any module with the same parameter names as `make_autoencoder(cfg)`.
    `seconds` is a safety cap only (not part of the cache key). Returns the model and its metadata.
    """
    model = model if model is not None else make_autoencoder(cfg)

    def train(m: nn.Module) -> dict[str, Any]:
        hist = fit(m, [images], autoencoder_loss_fn(cfg.size, cfg.noise), epochs=cfg.epochs, seconds=seconds,
                   batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, desc="autoencoder", progress=progress)
        print(hist.summary())
        return {"history": hist.to_dict()}

    meta = train_or_load("autoencoder", cfg.to_dict(), model, train)
    return model.eval(), meta


def train_simclr(cfg: SimCLRConfig, images: torch.Tensor, model: nn.Module | None = None,
                 seconds: float | None = None, progress: bool = True, cache: bool = True
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """Train-or-load SimCLR on the unlabelled training images (cache `simclr-<hash>`; `cache=False`: always
    train, save nothing); AdamW, cosine schedule."""
    model = model if model is not None else make_simclr(cfg)
    loss_fn = simclr_loss_fn(cfg.size, cfg.tau, cfg.crop_scale, cfg.augment)

    def train(m: nn.Module) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        hist = fit(m, [images], loss_fn, epochs=cfg.epochs,
                   seconds=seconds, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                   seed=cfg.seed, desc="SimCLR", progress=progress)
        print(hist.summary())
        return {"history": hist.to_dict()}

    if not cache:
        return model, {**train(model), "loaded": False}
    meta = train_or_load("simclr", cfg.to_dict(), model, train)
    return model.eval(), meta


# ----------------------------------------------------------------------------- shipped checkpoint

CHECKPOINT_DIR = repo_root() / "checkpoints"
SHIPPED_EPOCHS = 15


def shipped_simclr_path(epochs: float = SHIPPED_EPOCHS, augment: str = "all") -> Path:
    """Where a longer-trained SimCLR checkpoint lives: `checkpoints/simclr_scenes_<epochs>ep.pt` (all
    augmentations) or `simclr_scenes_crops_<epochs>ep.pt` (crops and flips only)."""
    tag = "" if augment == "all" else f"{augment}_"
    return CHECKPOINT_DIR / f"simclr_scenes_{tag}{epochs:g}ep.pt"


def load_shipped_simclr(epochs: float = SHIPPED_EPOCHS, augment: str = "all") -> tuple[SimCLR, dict[str, Any]]:
    """A longer-trained SimCLR model shipped with the repository, and its metadata (config, history, machine)."""
    path = shipped_simclr_path(epochs, augment)
    if not path.exists():
        raise FileNotFoundError(f"No shipped checkpoint at {path}; make it with `ARIA_THREADS=2 python -m "
                                f"aria_utils.representation train-simclr --epochs {epochs:g} --augment {augment}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = SimCLRConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in blob["config"].items() if k != "kind"})
    model = make_simclr(cfg)
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": cfg}


def _cli(argv: list[str] | None = None) -> int:
    """`train-simclr --epochs E --augment all|crops`: SimCLR on the scene benchmark's 20k unlabelled training scenes for E epochs
    (seed 0), saved under checkpoints/ with its command, wall time and machine."""
    from .protocol import SCENE_TRAIN_PER_CLASS, scene_images

    ap = argparse.ArgumentParser(prog="python -m aria_utils.representation")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-simclr", help="train the longer SimCLR checkpoint")
    t.add_argument("--epochs", type=float, default=SHIPPED_EPOCHS)
    t.add_argument("--augment", choices=("all", "crops"), default="all")
    t.add_argument("--seconds", type=int, default=6 * 3600, help="safety cap on wall-clock time")
    t.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    threads = int(os.environ.get("ARIA_THREADS", "2"))
    torch.set_num_threads(threads)
    images = scene_images("train", SCENE_TRAIN_PER_CLASS)[0]
    cfg = SimCLRConfig(epochs=args.epochs, augment=args.augment, speed="checkpoint")
    start = time.time()
    model, meta = train_simclr(cfg, images, seconds=args.seconds, cache=False)
    hist = History.from_dict(meta["history"])
    hist_small = {k: v for k, v in hist.to_dict().items() if k not in ("loss", "logs")}
    hist_small["loss_every_50"] = hist.loss[::50]
    command = f"ARIA_THREADS={threads} python -m aria_utils.representation train-simclr --epochs {args.epochs:g} --augment {args.augment}"
    info = {"history": hist_small, "threads": threads, "torch": str(torch.__version__), "command": command,
            "trained_on": f"CPU, {threads} thread(s), {args.epochs:g} epochs ({hist.seconds:.0f} s wall)",
            "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime(start + hist.seconds))}
    out = args.out or shipped_simclr_path(args.epochs, args.augment)
    save_checkpoint(out, model, cfg.to_dict(), info)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB): {hist.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())

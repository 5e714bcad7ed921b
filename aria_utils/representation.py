"""Representation learning without labels (notebooks 03 autoencoders, 04 SimCLR): the models and trainers.

`ConvEncoder`, the small CNN shared by the autoencoders and SimCLR, and its mirror `ConvDecoder`;
`SpatialEncoder`/`SpatialDecoder` (a code of `c` maps of s/4 x s/4 numbers); `nt_xent`; `AutoEncoder` and
`SimCLR`; budgeted, cached trainers `train_autoencoder` and `train_simclr`; and a command line that makes the
longer-trained checkpoints shipped in `checkpoints/`:

    ARIA_THREADS=2 python -m aria_utils.representation train-simclr --epochs 15 --augment all
    ARIA_THREADS=2 python -m aria_utils.representation train-simclr --epochs 15 --augment crops
    ARIA_THREADS=2 python -m aria_utils.representation train-ae --dim 16 32 64 128 --epochs 5
    ARIA_THREADS=2 python -m aria_utils.representation train-ae --spatial 16 --noise 0.15 --epochs 5

The models read the scene benchmark's 32 x 32 images by default (`protocol.load_scene_data`);
how they are evaluated is in `protocol` and `finetune`, the augmentations in `augment`.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import resize, simclr_augment
from .blocks import conv_bn
from .checkpoints import load_checkpoint, save_checkpoint, train_or_load
from .data import to_float
from .setup import repo_root
from .training import History, RunConfig, fit


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


class SpatialEncoder(ConvEncoder):
    """phi with a spatial code: `[B, 1, H, W]` -> `[B, channels, size/4, size/4]`: `ConvEncoder`'s four conv
    layers, no pooling, and a 1x1 convolution to `channels` maps (each number sees a neighbourhood only)."""

    def __init__(self, channels: int = 16, width: int = 16, size: int = 32) -> None:
        super().__init__(channels, width, size)
        self.fc = nn.Conv2d(8 * width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = resize(x, self.size) - 0.5
        return self.fc(self.features(x.contiguous(memory_format=torch.channels_last)))  # [B, c, s/4, s/4]


class SpatialDecoder(ConvDecoder):
    """psi for a spatial code: `[B, channels, size/4, size/4]` -> `[B, 1, size, size]` (a 1x1 convolution to
    `ConvDecoder`'s first maps, then its up-sampling layers)."""

    def __init__(self, channels: int = 16, width: int = 16, size: int = 32) -> None:
        super().__init__(channels, width, size)
        self.fc = nn.Conv2d(channels, 4 * width, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(z))


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
class AEConfig(RunConfig):
    """What defines an autoencoder run (its cache key)."""

    KIND: ClassVar[str] = "autoencoder"
    dim: int = 128
    width: int = 16
    size: int = 32
    noise: float = 0.0          # > 0: denoising autoencoder (Gaussian noise of this std on the input)
    spatial: int = 0            # > 0: a spatial code of this many size/4 x size/4 maps (`dim` unused)


@dataclass(frozen=True)
class SimCLRConfig(RunConfig):
    """What defines a SimCLR run (its cache key)."""

    KIND: ClassVar[str] = "simclr"
    dim: int = 128
    width: int = 16
    size: int = 32
    proj_dim: int = 64
    tau: float = 0.2
    weight_decay: float = 1e-4
    crop_scale: tuple[float, float] = (0.3, 1.0)
    augment: str = "all"    # "all" augmentations, or "crops" only (resized crop + flip)


def make_encoder(cfg: AEConfig | SimCLRConfig) -> ConvEncoder:
    """The shared encoder for a config (random weights from the current torch seed)."""
    return ConvEncoder(cfg.dim, cfg.width, cfg.size)


def make_autoencoder(cfg: AEConfig) -> AutoEncoder:
    """phi = ConvEncoder, psi = ConvDecoder (`SpatialEncoder`/`SpatialDecoder` if `cfg.spatial`), seeded by
    `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    if cfg.spatial:
        return AutoEncoder(SpatialEncoder(cfg.spatial, cfg.width, cfg.size),
                           SpatialDecoder(cfg.spatial, cfg.width, cfg.size))
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
                      seconds: float | None = None, progress: bool = True, cache: bool = True
                      ) -> tuple[nn.Module, dict[str, Any]]:
    """Train-or-load an autoencoder on the unlabelled training images (cache `autoencoder-<hash>`; `cache=False`:
    always train, save nothing).

    `model` may be any module with the same parameter names as `make_autoencoder(cfg)`.
    `seconds` is a safety cap only (not part of the cache key). Returns the model and its metadata.
    """
    model = model if model is not None else make_autoencoder(cfg)

    def train(m: nn.Module) -> dict[str, Any]:
        hist = fit(m, [images], autoencoder_loss_fn(cfg.size, cfg.noise), epochs=cfg.epochs, seconds=seconds,
                   batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, desc="autoencoder", progress=progress)
        print(hist.summary())
        return {"history": hist.to_dict()}

    if not cache:
        return model.eval(), {**train(model), "loaded": False}
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


AE_RECIPE = {"epochs": 5.0, "batch_size": 128, "lr": 2e-3}   # the shipped autoencoders' training (AdamW, cosine)


def shipped_ae_path(dim: int = 128, spatial: int = 0, noise: float = 0.0) -> Path:
    """`checkpoints/ae_scenes_d<dim>.pt` (a code of `dim` numbers) or `ae_scenes_c<spatial>.pt` (a spatial code),
    with `dae_` before the code's tag for a denoising autoencoder (`noise` > 0)."""
    tag = f"c{spatial}" if spatial else f"d{dim}"
    return CHECKPOINT_DIR / f"ae_scenes_{'dae_' if noise > 0 else ''}{tag}.pt"


def load_shipped_autoencoder(dim: int = 128, spatial: int = 0, noise: float = 0.0, model: nn.Module | None = None
                             ) -> tuple[nn.Module, dict[str, Any]]:
    """A shipped autoencoder (weights stored in float16, loaded as float32) and its metadata (config, command,
    seconds, machine, history). `model`: any module with `make_autoencoder`'s parameter names."""
    path = shipped_ae_path(dim, spatial, noise)
    if not path.exists():
        flags = f"--spatial {spatial}" if spatial else f"--dim {dim}"
        raise FileNotFoundError(f"No shipped autoencoder at {path}; make it with `ARIA_THREADS=2 python -m "
                                f"aria_utils.representation train-ae {flags} --noise {noise:g}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = AEConfig(**{k: v for k, v in blob["config"].items() if k != "kind"})
    model = model if model is not None else make_autoencoder(cfg)
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": cfg}


def _half_copy(model: nn.Module) -> nn.Module:
    """A float16 copy of `model` (halves the file; the loss it adds is far below the differences measured)."""
    import copy
    return copy.deepcopy(model).half()


def _train_ae_cli(args: argparse.Namespace, threads: int) -> None:
    """Train and save each autoencoder asked for by `train-ae` (seeded, on the 20k unlabelled training scenes)."""
    from .protocol import SCENE_TRAIN_PER_CLASS, scene_images

    images = scene_images("train", SCENE_TRAIN_PER_CLASS)[0]
    for dim in ([128] if args.spatial else args.dim):
        cfg = AEConfig(dim=dim, spatial=args.spatial, noise=args.noise, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, speed="checkpoint")
        model, meta = train_autoencoder(cfg, images, seconds=args.seconds, cache=False)
        hist = History.from_dict(meta["history"])
        flags = f"--spatial {args.spatial}" if args.spatial else f"--dim {dim}"
        command = (f"ARIA_THREADS={threads} python -m aria_utils.representation train-ae {flags} --noise "
                   f"{args.noise:g} --epochs {args.epochs:g} --batch-size {args.batch_size} --lr {args.lr:g} "
                   f"--seed {args.seed}")
        hist_small = {k: v for k, v in hist.to_dict().items() if k not in ("loss", "logs")}
        hist_small["mse_per_pixel"] = [round(v, 6) for v in hist.logs["mse_per_pixel"]]
        info = {"history": hist_small, "threads": threads, "torch": str(torch.__version__), "command": command,
                "seconds": round(hist.seconds, 1), "seed": args.seed, "machine": f"{platform.processor() or platform.machine()}, "
                f"{threads} thread(s), torch {torch.__version__}",
                "trained_on": f"CPU, {threads} thread(s), {hist.epochs:g} epochs ({hist.seconds:.0f} s wall)",
                "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
        out = shipped_ae_path(dim, args.spatial, args.noise)
        save_checkpoint(out, _half_copy(model), cfg.to_dict(), info)
        print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB): {hist.summary()}")


def _cli(argv: list[str] | None = None) -> int:
    """`train-simclr --epochs E --augment all|crops`: SimCLR on the scene benchmark's 20k unlabelled training scenes for E epochs
    (seed 0); `train-ae --dim D [D ...] | --spatial C [--noise S]`: autoencoders (`AE_RECIPE`); each saved under
    checkpoints/ with its command, wall time and machine."""
    from .protocol import SCENE_TRAIN_PER_CLASS, scene_images

    ap = argparse.ArgumentParser(prog="python -m aria_utils.representation")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-simclr", help="train the longer SimCLR checkpoint")
    t.add_argument("--epochs", type=float, default=SHIPPED_EPOCHS)
    t.add_argument("--augment", choices=("all", "crops"), default="all")
    t.add_argument("--seconds", type=int, default=6 * 3600, help="safety cap on wall-clock time")
    t.add_argument("--out", type=Path, default=None)
    a = sub.add_parser("train-ae", help="train shipped autoencoders")
    a.add_argument("--dim", type=int, nargs="+", default=[128], help="code size(s) d of global codes")
    a.add_argument("--spatial", type=int, default=0, help="> 0: a spatial code of this many 8 x 8 maps")
    a.add_argument("--noise", type=float, default=0.0, help="> 0: denoising autoencoder, noise sd")
    a.add_argument("--epochs", type=float, default=AE_RECIPE["epochs"])
    a.add_argument("--batch-size", type=int, default=AE_RECIPE["batch_size"])
    a.add_argument("--lr", type=float, default=AE_RECIPE["lr"])
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--seconds", type=int, default=3600, help="safety cap on wall-clock time per model")
    args = ap.parse_args(argv)
    threads = int(os.environ.get("ARIA_THREADS", "2"))
    torch.set_num_threads(threads)
    if args.cmd == "train-ae":
        _train_ae_cli(args, threads)
        return 0
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

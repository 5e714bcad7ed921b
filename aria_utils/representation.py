"""Representation learning without labels (notebooks 03 autoencoder, 04 SimCLR, 05 MAE): one shared protocol.

The evaluation protocol (the same in 03, 04 and 05, so that their numbers compare)
-------------------------------------------------------------------------------
* Data: Fashion-MNIST. The encoder is trained on the 60k training images *without* labels.
* An encoder is given as `encode(x) -> features`: `x` is float `[B, 1, 28, 28]` in [0, 1]
  (an `nn.Module` is accepted too; it is put in eval mode and run without gradients);
  the features `[B, ...]` are flattened to `[B, D]` and kept frozen.
* Labelled pools drawn from the training set with `per_class_subset(..., seed=0)`:
  10 and 100 labels per class (`n10`, `n100`), and all labels (`all`: the 60k in `full`,
  a fixed 1,000 per class in `fast`). The few-label pools are identical in both speeds.
* Test set: the 10k test images in `full` (a fixed, class-balanced 2,000 in `fast`).
* Two classifiers on the frozen features: `linear_probe` (standardised features, full-batch
  AdamW) and `knn_accuracy` (cosine, k = 20). `evaluate_representation` returns
  `probe_n10, probe_n100, probe_all, knn_n10, knn_n100, knn_all` (accuracies in [0, 1]).
* References: the same encoder with random weights (its "random twin"), raw pixels
  (`pixels`), and `supervised_baseline`: the same encoder architecture + a linear head trained
  from scratch, end to end, on the same few labels (light augmentations), tested on the same set.

Also here: `ConvEncoder`, the small CNN shared by the autoencoder and SimCLR; `ConvDecoder`;
`simclr_augment`, batched augmentations on tensors; `nt_xent`; budgeted, cached trainers
`train_autoencoder` and `train_simclr`; and a command line that makes the longer-trained
SimCLR checkpoint shipped in `checkpoints/`:

    python -m aria_utils.representation train-simclr --epochs 3
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import load_checkpoint, save_checkpoint, train_or_load
from .data import load_fashion_mnist, per_class_subset, to_float
from .setup import by_speed, repo_root
from .training import History, fit, knn_accuracy, linear_probe

Encode = Callable[[torch.Tensor], torch.Tensor]
LABEL_COUNTS = (10, 100)
KNN_K = 20
POOL_SEED = 0


# ----------------------------------------------------------------------------- data and protocol

@dataclass
class EvalData:
    """The images and labels of the protocol: uint8 `[N, 28, 28]`, int64 `[N]`, and the pools' indices."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    pools: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> indices into x_train


def eval_sizes() -> tuple[int | None, int | None]:
    """(labels per class for `all`, test images per class): `None` means every image (full speed)."""
    return by_speed(fast=(1000, 200), full=(None, None))


def load_eval_data(all_per_class: int | None = -1, test_per_class: int | None = -1) -> EvalData:
    """Fashion-MNIST and the protocol's labelled pools; sizes default to `eval_sizes()` for the speed."""
    d_all, d_test = eval_sizes()
    all_per_class = d_all if all_per_class == -1 else all_per_class
    test_per_class = d_test if test_per_class == -1 else test_per_class
    x_tr, y_tr = load_fashion_mnist("train")
    x_te, y_te = load_fashion_mnist("test")
    if test_per_class is not None:
        keep = per_class_subset(y_te, test_per_class, seed=POOL_SEED)
        x_te, y_te = x_te[keep], y_te[keep]
    pools = {f"n{n}": per_class_subset(y_tr, n, seed=POOL_SEED) for n in LABEL_COUNTS}
    pools["all"] = (torch.arange(len(y_tr)) if all_per_class is None
                    else per_class_subset(y_tr, all_per_class, seed=POOL_SEED))
    return EvalData(x_tr, y_tr, x_te, y_te, pools)


@torch.no_grad()
def encode_images(encode: Encode, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Frozen features `[N, D]` of uint8 `[N, 28, 28]` (or float) images, batch by batch, on the CPU."""
    module = encode if isinstance(encode, nn.Module) else None
    if module is not None:
        module.eval()
    params = list(module.parameters()) if module is not None else []
    device = params[0].device if params else torch.device("cpu")
    out = []
    for i in range(0, len(images), batch_size):
        xb = to_float(images[i: i + batch_size]).to(device)
        f = encode(xb)
        if not isinstance(f, torch.Tensor) or f.shape[0] != xb.shape[0]:
            raise ValueError(f"encode() must return a tensor [B, ...] for a batch of {xb.shape[0]} images, "
                             f"got {type(f).__name__} {getattr(f, 'shape', '')}.")
        out.append(f.float().flatten(1).cpu())
    return torch.cat(out)


def evaluate_representation(encode: Encode, data: EvalData | None = None, k: int = KNN_K, seed: int = 0,
                            batch_size: int = 500) -> dict[str, float]:
    """The protocol: linear probe and k-NN on frozen features with 10, 100 and all labels per class.

    Returns `{"probe_n10", "probe_n100", "probe_all", "knn_n10", "knn_n100", "knn_all"}` (accuracies).
    """
    data = data or load_eval_data()
    union = torch.unique(torch.cat(list(data.pools.values())))
    f_union = encode_images(encode, data.x_train[union], batch_size)
    where = torch.full((len(data.x_train),), -1, dtype=torch.long)
    where[union] = torch.arange(len(union))
    f_test = encode_images(encode, data.x_test, batch_size)
    out = {}
    for name, idx in data.pools.items():
        f, y = f_union[where[idx]], data.y_train[idx]
        out[f"probe_{name}"] = linear_probe(f, y, f_test, data.y_test, seed=seed)
        out[f"knn_{name}"] = knn_accuracy(f, y, f_test, data.y_test, k=k)
    order = [f"{m}_{p}" for m in ("probe", "knn") for p in [f"n{n}" for n in LABEL_COUNTS] + ["all"]]
    return {key: out[key] for key in order}


def pixels(x: torch.Tensor) -> torch.Tensor:
    """The raw-pixel 'encoder' (a reference every learnt representation should beat)."""
    return x.flatten(1)


# ----------------------------------------------------------------------------- the shared encoder

def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvEncoder(nn.Module):
    """phi: `[B, 1, H, W]` in [0, 1] -> code `[B, dim]`. Resizes to `size` x `size` first (20 px: 2x cheaper).

    Four 3x3 conv layers (width w, 2w, 4w, 8w; size -> size/2 -> size/4), global average pooling to 8w
    numbers, and a linear layer to the code.
    """

    def __init__(self, dim: int = 128, width: int = 32, size: int = 20) -> None:
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

    def __init__(self, dim: int = 128, width: int = 32, size: int = 20) -> None:
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


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float `[B, C, H, W]` -> `[B, C, size, size]` (antialiased bilinear; unchanged if already that size)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


# ----------------------------------------------------------------------------- augmentations (whole batch)

def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """A random crop of area `scale` and aspect `ratio`, resized to `size`, optionally mirrored: one
    `affine_grid` + `grid_sample` for the whole batch. `[B, C, H, W]` -> `[B, C, size, size]`."""
    B = x.shape[0]
    u = torch.rand(B, 5, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    sx = (area * logr.exp()).sqrt().clamp(max=1.0)           # crop width / image width
    sy = (area / logr.exp()).sqrt().clamp(max=1.0)
    tx = (2 * u[:, 2] - 1) * (1 - sx)                         # centre, in [-1, 1] coordinates
    ty = (2 * u[:, 3] - 1) * (1 - sy)
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones(B)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * sign, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta.to(x.device), [B, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def photometric(x: torch.Tensor, strength: float = 1.0, p: float = 0.8,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Random gamma, contrast and brightness (with probability `p` per image), on `[B, C, H, W]` in [0, 1]."""
    B = x.shape[0]
    u = torch.rand(B, 4, generator=generator).to(x.device).view(B, 4, 1, 1, 1).unbind(1)
    on = (u[3] < p).float()
    gamma = torch.exp(strength * 0.5 * (2 * u[0] - 1) * on)
    contrast = 1 + strength * 0.5 * (2 * u[1] - 1) * on
    bright = strength * 0.2 * (2 * u[2] - 1) * on
    x = x.clamp(1e-4, 1) ** gamma
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * contrast + m + bright).clamp(0, 1)


def random_erase(x: torch.Tensor, p: float = 0.5, scale: tuple[float, float] = (0.05, 0.25),
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Blank a random rectangle (area fraction `scale`) in each image with probability `p`."""
    B, _, H, W = x.shape
    u = torch.rand(B, 4, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    h = (area.sqrt() * H).clamp(1, H)
    w = (area.sqrt() * W).clamp(1, W)
    y0 = u[:, 1] * (H - h)
    x0 = u[:, 2] * (W - w)
    ys = torch.arange(H).view(1, H, 1)
    xs = torch.arange(W).view(1, 1, W)
    box = ((ys >= y0.view(B, 1, 1)) & (ys < (y0 + h).view(B, 1, 1)) &
           (xs >= x0.view(B, 1, 1)) & (xs < (x0 + w).view(B, 1, 1)) & (u[:, 3] < p).view(B, 1, 1))
    return x.masked_fill(box.unsqueeze(1).to(x.device), 0.0)


def simclr_augment(x: torch.Tensor, size: int = 20, crop_scale: tuple[float, float] = (0.2, 1.0),
                   strength: float = 1.0, noise: float = 0.05, erase: float = 0.5,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of each image (SimCLR's t ~ T): resized crop + flip, gamma/contrast/brightness,
    Gaussian noise, erasing. Float or uint8 `[B, (1,) 28, 28]` -> float `[B, 1, size, size]` in [0, 1]."""
    x = to_float(x)
    v = random_resized_crop(x, size, crop_scale, generator=generator)
    if strength > 0:
        v = photometric(v, strength, generator=generator)
    if noise > 0:
        sigma = noise * torch.rand(len(v), 1, 1, 1, generator=generator).to(v.device)
        v = v + sigma * torch.randn(v.shape, generator=generator).to(v.device)
    if erase > 0:
        v = random_erase(v, erase, generator=generator)
    return v.clamp(0, 1)


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
    width: int = 32
    size: int = 20
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
    width: int = 32
    size: int = 20
    proj_dim: int = 64
    tau: float = 0.2
    epochs: float = 3.0
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    crop_scale: tuple[float, float] = (0.2, 1.0)
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


def simclr_loss_fn(size: int, tau: float, crop_scale: tuple[float, float] = (0.2, 1.0)
                   ) -> Callable[..., torch.Tensor]:
    """A `fit` loss: two views of each image, NT-Xent on the projections."""
    def loss_fn(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        x = to_float(xb)
        v1, v2 = simclr_augment(x, size, crop_scale), simclr_augment(x, size, crop_scale)
        z = model(torch.cat([v1, v2]))                       # [2B, proj_dim]
        return nt_xent(z[: len(x)], z[len(x):], tau)
    return loss_fn


def train_autoencoder(cfg: AEConfig, model: nn.Module | None = None, images: torch.Tensor | None = None,
                      seconds: float | None = None, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Train-or-load an autoencoder on the unlabelled training images (cache `autoencoder-<hash>`).

    `model` may be any module with the same parameter names as `make_autoencoder(cfg)`.
    `seconds` is a safety cap only (not part of the cache key). Returns the model and its metadata.
    """
    model = model if model is not None else make_autoencoder(cfg)
    images = images if images is not None else load_fashion_mnist("train")[0]

    def train(m: nn.Module) -> dict[str, Any]:
        hist = fit(m, [images], autoencoder_loss_fn(cfg.size, cfg.noise), epochs=cfg.epochs, seconds=seconds,
                   batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, desc="autoencoder", progress=progress)
        print(hist.summary())
        return {"history": hist.to_dict()}

    meta = train_or_load("autoencoder", cfg.to_dict(), model, train)
    return model.eval(), meta


def train_simclr(cfg: SimCLRConfig, model: nn.Module | None = None, images: torch.Tensor | None = None,
                 seconds: float | None = None, progress: bool = True, cache: bool = True,
                 on_step: Callable[[nn.Module, int], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train-or-load SimCLR on the unlabelled training images (cache `simclr-<hash>`); AdamW, cosine schedule.

    `on_step(model, step)` is called before each step (e.g. to save snapshots).
    """
    model = model if model is not None else make_simclr(cfg)
    images = images if images is not None else load_fashion_mnist("train")[0]
    base_loss, step = simclr_loss_fn(cfg.size, cfg.tau, cfg.crop_scale), [0]

    def loss_fn(m: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        if on_step is not None:
            on_step(m, step[0])
        step[0] += 1
        return base_loss(m, xb)

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


def light_augment(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mild augmentations for supervised training on few labels: crops of 60-100 % area and flips."""
    return random_resized_crop(to_float(x), size, scale=(0.6, 1.0))


class Classifier(nn.Module):
    """An encoder followed by a linear layer on its features."""

    def __init__(self, encoder: nn.Module, dim: int, n_classes: int = 10) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).flatten(1))


def supervised_baseline(make_encoder: Callable[[], nn.Module], n_per_class: int, data: EvalData | None = None, *,
                        steps: int | None = None, seconds: float | None = None, batch_size: int = 128,
                        lr: float = 2e-3, weight_decay: float = 1e-4, augment_size: int | None = 20,
                        config: dict[str, Any] | None = None, seed: int = 0, progress: bool = True) -> float:
    """Test accuracy of `make_encoder()` + a linear head trained from scratch on `n_per_class` labels per class
    (the protocol's pool `n{n_per_class}`), end to end, with light augmentations (crop, flip) at `augment_size` px.

    With `config` (a JSON-able description of the encoder), the trained classifier is cached
    (`supervised-n<n>-<hash>`), so that notebooks sharing the config share the run.
    """
    data = data or load_eval_data()
    key = f"n{n_per_class}"
    idx = data.pools[key] if key in data.pools else per_class_subset(data.y_train, n_per_class, seed=POOL_SEED)
    x, y = data.x_train[idx], data.y_train[idx]
    steps = steps if steps is not None else by_speed(fast=60, full=300)
    torch.manual_seed(seed)
    enc = make_encoder()
    with torch.no_grad():
        dim = enc.eval()(to_float(x[:2])).flatten(1).shape[1]
    model = Classifier(enc, dim)

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        xb = light_augment(xb, augment_size) if augment_size else to_float(xb)
        logits = m(xb)
        return F.cross_entropy(logits, yb), {"acc": (logits.argmax(-1) == yb).float().mean().item()}

    def train(m: nn.Module) -> dict[str, Any]:
        hist = fit(m, [x, y], loss_fn, steps=steps, seconds=seconds, batch_size=batch_size, lr=lr,
                   weight_decay=weight_decay, seed=seed, desc=f"supervised {key}", progress=progress)
        return {"history": hist.to_dict()}

    if config is not None:
        full_cfg = {"kind": "supervised", "n_per_class": n_per_class, "steps": steps, "batch_size": batch_size,
                    "lr": lr, "weight_decay": weight_decay, "augment_size": augment_size, "seed": seed, **config}
        train_or_load(f"supervised-{key}", full_cfg, model, train)
    else:
        train(model)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(to_float(data.x_test[i: i + 500])) for i in range(0, len(data.x_test), 500)])
    return (logits.argmax(-1) == data.y_test).float().mean().item()


# ----------------------------------------------------------------------------- shipped checkpoint

CHECKPOINT_DIR = repo_root() / "checkpoints"


SHIPPED_EPOCHS = 3


def shipped_simclr_path(epochs: float = SHIPPED_EPOCHS) -> Path:
    """Where the longer-trained SimCLR checkpoint lives (`checkpoints/simclr_<epochs>ep.pt`)."""
    return CHECKPOINT_DIR / f"simclr_{epochs:g}ep.pt"


def load_shipped_simclr(epochs: float = SHIPPED_EPOCHS) -> tuple[SimCLR, dict[str, Any]]:
    """The longer-trained SimCLR model shipped with the repository, and its metadata (config, history, machine)."""
    path = shipped_simclr_path(epochs)
    if not path.exists():
        raise FileNotFoundError(f"No shipped checkpoint at {path}; make it with "
                                f"`python -m aria_utils.representation train-simclr --epochs {epochs:g}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = SimCLRConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in blob["config"].items() if k != "kind"})
    model = make_simclr(cfg)
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": cfg}


def _cli(argv: list[str] | None = None) -> int:
    """`train-simclr --epochs E`: train SimCLR for E epochs (a generous wall-clock cap), save it under checkpoints/."""
    ap = argparse.ArgumentParser(prog="python -m aria_utils.representation")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train-simclr", help="train the longer SimCLR checkpoint")
    t.add_argument("--epochs", type=float, default=SHIPPED_EPOCHS)
    t.add_argument("--seconds", type=int, default=6 * 3600, help="safety cap on wall-clock time")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--snapshot-dir", type=Path, default=None, help="also save a copy after every epoch here")
    t.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = SimCLRConfig(epochs=args.epochs, speed="checkpoint")
    model = make_simclr(cfg)
    start = time.time()
    snapshot = None
    if args.snapshot_dir is not None:
        per_epoch = 60000 // cfg.batch_size

        def snapshot(m: nn.Module, step: int) -> None:
            if step % per_epoch == 0:
                save_checkpoint(args.snapshot_dir / f"simclr_ep{step // per_epoch}.pt", m, cfg.to_dict())
    model, meta = train_simclr(cfg, model, seconds=args.seconds, cache=False, on_step=snapshot)
    hist = History.from_dict(meta["history"])
    hist_small = {k: v for k, v in hist.to_dict().items() if k not in ("loss", "logs")}
    hist_small["loss_every_50"] = hist.loss[::50]
    info = {"history": hist_small, "threads": args.threads, "torch": str(torch.__version__),
            "trained_on": f"CPU, {args.threads} thread(s), {args.epochs:g} epochs ({hist.seconds:.0f} s wall)",
            "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime(start + hist.seconds))}
    out = args.out or shipped_simclr_path(args.epochs)
    save_checkpoint(out, model, {**cfg.to_dict(), "epochs": cfg.epochs}, info)
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB): {hist.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())

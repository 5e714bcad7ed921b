"""Augmentations on whole batches of image tensors (notebooks 03-05): resize, resized crop + flip,
photometric jitter, erasing, and the two recipes built from them: SimCLR's views and the mild
augmentations of supervised training on few labels."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import to_float


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float `[B, C, H, W]` -> `[B, C, size, size]` (antialiased bilinear; unchanged if already that size)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


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
    Gaussian noise, erasing. Float or uint8 `[B, (1,) H, W]` -> float `[B, 1, size, size]` in [0, 1].
    `strength=0`, `noise=0` or `erase=0` leaves that part out (crops only: all three 0)."""
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


def light_augment(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mild augmentations for supervised training on few labels: crops of 60-100 % area and flips."""
    return random_resized_crop(to_float(x), size, scale=(0.6, 1.0))

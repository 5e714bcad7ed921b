"""Scenes shared by notebooks 02-05: a Fashion-MNIST item placed by `make_canvas` at a random position and
scale, pasted on a crop of a real photograph (grass, gravel, brick, ...), so that its mask is not simply "the
bright pixels"."""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .data import load_photo, make_canvas

BACKGROUNDS = ("grass", "gravel", "brick", "camera", "coffee", "astronaut", "rocket", "chelsea")


def background_photos(names: Sequence[str] = BACKGROUNDS, zoom: float = 0.25) -> list[torch.Tensor]:
    """Grey photographs `[H, W]` in [0, 1], shrunk by `zoom` so that a crop shows some structure."""
    if not 0 < zoom <= 1:
        raise ValueError(f"zoom={zoom}: use a value in (0, 1].")
    return [_grey_photo(name, zoom).clone() for name in names]


@functools.lru_cache(maxsize=32)
def _grey_photo(name: str, zoom: float) -> torch.Tensor:
    p = torch.from_numpy(load_photo(name)).float().mean(-1) / 255.0  # [H, W]
    return F.interpolate(p[None, None], scale_factor=zoom, mode="area")[0, 0]


def background_draw(n: int, n_photos: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What `make_scenes(..., seed=seed)` draws for its `n` backgrounds: which photo `[n]` and where in it the
    crop sits, `[n, 2]` in [0, 1) (rows, columns)."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, n_photos, (n,), generator=g), torch.rand(n, 2, generator=g)


def make_scenes(images: torch.Tensor, labels: torch.Tensor, canvas: int = 48, scale: tuple[float, float] = (0.4, 0.9),
                clutter: float = 0.6, seed: int = 0, backgrounds: Sequence[torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
    """`make_canvas`, then the black background replaced by a random photo crop times `clutter`.

    Returns the same keys as `make_canvas`: `image` `[N, 1, canvas, canvas]`, `label` `[N]`, `box` `[N, 4]`
    (x0, y0, x1, y1 in pixels), `mask` bool `[N, canvas, canvas]` (the item's pixels, unchanged).
    """
    if not 0 <= clutter <= 1:
        raise ValueError(f"clutter={clutter}: use a value in [0, 1] (0 = black background).")
    d = make_canvas(images, labels, canvas=canvas, scale=scale, seed=seed)
    if clutter == 0:
        return d
    photos = list(backgrounds) if backgrounds is not None else background_photos()
    small = [p for p in photos if min(p.shape) < canvas]
    if small:
        raise ValueError(f"background photos must be at least {canvas} px on each side, got {small[0].shape}.")
    n = d["image"].shape[0]
    which, u = background_draw(n, len(photos), seed)
    bg, r = torch.empty(n, 1, canvas, canvas), torch.arange(canvas)
    for k, p in enumerate(photos):  # every crop of photo k at once
        idx = which.eq(k).nonzero()[:, 0]
        y0 = (u[idx, 0] * (p.shape[0] - canvas + 1)).long()
        x0 = (u[idx, 1] * (p.shape[1] - canvas + 1)).long()
        bg[idx, 0] = p[(y0[:, None] + r)[:, :, None], (x0[:, None] + r)[:, None, :]]
    d["image"] = torch.where(d["mask"][:, None], d["image"], clutter * bg)
    return d

"""Figures: image grids, training curves, attention and mask overlays, 2-D embeddings."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_image(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """`[C, H, W]` / `[H, W]` tensor or array -> `[H, W]` or `[H, W, 3]` array for imshow."""
    a = img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def show_images(images: Sequence | torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
                size: float = 1.6, cmap: str = "gray", suptitle: str | None = None) -> plt.Figure:
    """A grid of images with optional titles."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    arrays = [to_numpy_image(images[i]) for i in range(n)]
    ratio = max(a.shape[0] / a.shape[1] for a in arrays)          # rows as tall as the tallest image (no empty bands)
    row_h = size * ratio + (0.3 if titles is not None else 0)     # room for the titles above each row
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, row_h * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            a = arrays[i]
            ax.imshow(a, cmap=cmap if a.ndim == 2 else None)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def smooth(values: Sequence[float], window: int = 20) -> np.ndarray:
    """Moving average (for noisy per-step losses)."""
    v = np.asarray(values, dtype=float)
    if len(v) < window or window <= 1:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str = "step", ylabel: str = "loss",
                window: int = 20, logy: bool = False, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Several (smoothed) curves on one axis, e.g. training losses of several runs."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        ax.plot(smooth(values, window), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def overlay_heatmap(image: torch.Tensor | np.ndarray, heat: torch.Tensor | np.ndarray, ax: plt.Axes | None = None,
                    alpha: float = 0.55, cmap: str = "inferno", title: str | None = None) -> plt.Axes:
    """An image with a heat map (e.g. attention over patches) stretched on top of it."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    img = to_numpy_image(image)
    h = to_numpy_image(heat)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    ax.imshow(h, cmap=cmap, alpha=alpha, extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5),
              interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def overlay_mask(image: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None,
                 box: Sequence[float] | None = None, ax: plt.Axes | None = None, color: str = "tab:red",
                 point: Sequence[float] | None = None, title: str | None = None) -> plt.Axes:
    """An image with a translucent mask, an optional box (x0, y0, x1, y1) and an optional point (x, y)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    if mask is not None:
        m = to_numpy_image(mask).astype(float)
        rgba = np.zeros((*m.shape, 4))
        rgba[..., :3] = plt.matplotlib.colors.to_rgb(color)
        rgba[..., 3] = 0.45 * m
        ax.imshow(rgba)
    if box is not None:
        x0, y0, x1, y1 = [float(b) for b in box]
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color=color, lw=1.5))
    if point is not None:
        ax.plot([point[0]], [point[1]], marker="*", color="lime", markersize=12, markeredgecolor="black")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def scatter_2d(points: torch.Tensor | np.ndarray, labels: Sequence[int] | torch.Tensor, class_names: Sequence[str],
               ax: plt.Axes | None = None, title: str | None = None, s: float = 4.0) -> plt.Axes:
    """A 2-D embedding coloured by class, with a legend of class names."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    p = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    lab = np.asarray(labels)
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        sel = lab == c
        ax.scatter(p[sel, 0], p[sel, 1], s=s, color=cmap(c % 10), label=name)
    ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """Project features `[N, D]` on their first two principal components."""
    x = features.float() - features.float().mean(0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    return x @ v[:, :2]


def try_it(draw: Callable[..., None], **controls: object) -> None:
    """A "Try it" widget: `ipywidgets.interactive(draw, **controls)`, redrawn when a control moves.

    Headless (`ARIA_HEADLESS`, a stored run) the figure of the default values is also drawn as an ordinary
    output, so that the stored notebook and the reading edition show it (a widget's own output is not stored).
    """
    import ipywidgets as widgets
    from IPython.display import display

    from .progress import headless

    panel = widgets.interactive(draw, **controls)
    display(panel)
    if headless():
        draw(**panel.kwargs)

"""Plumbing for the multi-task notebook (02): label availability flags, batched prediction of several heads,
a picture of one prediction, and a check that missing labels change nothing. Its scenes (class, box and mask labels) come from `aria_utils.scenes`."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from .plot import overlay_mask
from .scenes import BACKGROUNDS, background_photos, make_scenes  # noqa: F401 (02 uses them as M.*)

TASKS = ("cls", "box", "mask")


def label_flags(n: int, counts: Sequence[int | None], seed: int = 0) -> torch.Tensor:
    """Availability flags `[n, T]` (float 0/1): task t is labelled on `counts[t]` images drawn at random,
    independently of the other tasks (`None`: on every image)."""
    g = torch.Generator().manual_seed(seed)
    flags = torch.zeros(n, len(counts))
    for t, c in enumerate(counts):
        if c is None:
            flags[:, t] = 1
            continue
        if not 0 <= c <= n:
            raise ValueError(f"counts[{t}]={c}: must lie between 0 and n={n}.")
        flags[torch.randperm(n, generator=g)[:c], t] = 1
    return flags


@torch.no_grad()
def predict_heads(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, ...]:
    """All outputs of a model that returns a tuple of tensors, batch by batch in eval mode (on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    parts: list[list[torch.Tensor]] = []
    for i in range(0, len(x), batch_size):
        out = model(x[i: i + batch_size].to(device))
        if not isinstance(out, (tuple, list)):
            raise TypeError(f"predict_heads expects a model returning a tuple of tensors, got {type(out).__name__}.")
        if not parts:
            parts = [[] for _ in out]
        for p, o in zip(parts, out):
            p.append(o.float().cpu())
    return tuple(torch.cat(p) for p in parts)


def show_prediction(image: torch.Tensor, box: Sequence[float], mask: torch.Tensor, title: str = "",
                    true_box: Sequence[float] | None = None, ax: plt.Axes | None = None,
                    color: str = "tab:red") -> plt.Axes:
    """One scene with a predicted mask and box (`color`) and, if given, the true box (dashed, lime)."""
    ax = overlay_mask(image, mask, box, ax=ax, color=color, title=title)
    if true_box is not None:
        x0, y0, x1, y1 = [float(b) for b in true_box]
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1, ls="--"))
    return ax


def same_loss_and_grads(model: nn.Module, loss_fn: Callable[..., torch.Tensor], *targets: Sequence[torch.Tensor]
                        ) -> bool:
    """True when `loss_fn(model, *t)` gives exactly the same loss and gradients for every `t` in `targets`."""
    seen = []
    for t in targets:
        model.zero_grad()
        loss = loss_fn(model, *t)
        loss.backward()
        seen.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), rest = seen[0], seen[1:]
    return all(torch.equal(l0, l) and all(torch.equal(u, v) for u, v in zip(g0, g)) for l, g in rest)

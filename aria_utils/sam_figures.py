"""Notebook 09's figures and widgets: training curves, the ambiguous points, best of K, the ranking by predicted
IoU, and the point-prompt demos on a toy scene or a photo (`sam_toy`'s networks, `sam_real`'s predictor)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .sam_real import sam_point_masks
from .sam_toy import LEVELS, PromptableSegmenter, predict_masks


COLOURS = ("tab:blue", "tab:orange", "tab:red")  # whole, part, subpart (and masks 1, 2, 3)


def plot_training(live: dict[int, dict[str, Any]], shipped: dict[int, dict[str, Any]], warmup: int) -> None:
    """Loss of the live pair (per step, smoothed) and of the shipped seed-0 pair (every 10 steps); who wins
    the minimum (k*) in the live and the shipped K = 3 network."""
    import matplotlib.pyplot as plt

    from .plot import smooth

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for k, colour in ((1, "tab:purple"), (3, "tab:green")):
        axes[0].plot(np.arange(20, len(live[k]["loss"]) + 1), smooth(live[k]["loss"], 20), color=colour,
                     label=f"K = {k}, live")
        ls = shipped[k]["loss_every_10"]
        axes[0].plot(10 * np.arange(len(ls))[4:], smooth(ls, 5), color=colour, ls="--", lw=1,
                     label=f"K = {k}, shipped")
    axes[0].set(xlabel="step", ylabel="loss (moving average)", title="training loss, seed 0")
    for ax, (wins, every, name) in zip(axes[1:], ((live[3]["logs"], 1, "live"),
                                                  (shipped[3]["wins_every_10"], 10, "shipped"))):
        for k in range(3):
            w = smooth(wins[f"wins_{k}"], max(20 // every, 1))
            ax.plot(every * np.arange(len(w)) + (20 if every == 1 else 0), w, color=COLOURS[k],
                    label=f"output {k + 1}")
        ax.axvline(warmup, color="k", ls=":", lw=1)
        ax.set(xlabel="step", ylabel="share of the batch", ylim=(0, 1), title=f"K = 3 ({name}): who wins (k*)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_ambiguous_points(test: dict[str, torch.Tensor], prompt: dict[str, torch.Tensor],
                          single: PromptableSegmenter, multi: PromptableSegmenter, rows: list[int]) -> None:
    """For points in the subpart: the average of the valid masks, the 1-output network's probability map (one
    colour bar) and the three masks of the 3-output network."""
    import matplotlib.pyplot as plt

    from .plot import overlay_mask

    img, pts = test["image"][rows], prompt["point"][rows]
    p1, _ = predict_masks(single, img, pts)
    p3, _ = predict_masks(multi, img, pts)
    fig, axes = plt.subplots(len(rows), 6, figsize=(13, 2.2 * len(rows)), layout="constrained")
    for r, i in enumerate(rows):
        overlay_mask(img[r, 0], point=pts[r], ax=axes[r, 0], title="point in the subpart")
        for ax, heat, title in ((axes[r, 1], test["masks"][i].float().mean(0), "average of the 3 valid masks"),
                                (axes[r, 2], p1[r, 0], "K = 1: probability p")):
            im = ax.imshow(heat, cmap="magma", vmin=0, vmax=1)
            ax.plot(*pts[r].tolist(), marker="*", color="lime", markersize=10, markeredgecolor="black")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        for k in range(3):
            overlay_mask(img[r, 0], p3[r, k] > 0.5, point=pts[r], ax=axes[r, 3 + k], color=COLOURS[k],
                         title=f"K = 3: mask {k + 1} (p > 0.5)")
    fig.colorbar(im, ax=axes[:, 1:3], shrink=0.8, label="probability that the pixel is in the mask")
    fig.suptitle("one ambiguous point: one blurred mask (the average), or three valid ones")
    plt.show()


def plot_best_of_k(scores: dict[tuple[str, int], torch.Tensor], names: dict[str, str]) -> None:
    """Bars: mean over seeds of the best output's IoU with each valid mask (`scores[variant, level]`, `[seeds,
    level + 1]`), for points in the subpart and in the part; black tick: the worst seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), sharey=True)
    width = 0.8 / len(names)
    for ax, level in zip(axes, (2, 1)):
        xs = np.arange(level + 1)
        for j, (variant, name) in enumerate(names.items()):
            s = scores[variant, level]
            dx = (j - (len(names) - 1) / 2) * width
            ax.bar(xs + dx, s.mean(0), width, label=name)
            ax.scatter(xs + dx, s.min(0).values, marker="_", s=150, color="k", zorder=3)
        ax.set_xticks(xs, [f"valid mask: {n}" for n in LEVELS[: level + 1]])
        ax.set_title(f"points with {level + 1} valid masks ({LEVELS[level]} region)", fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("IoU of the closest output\n(tick: worst seed)")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    plt.show()


def plot_score_vs_iou(ev: dict[int, dict[str, torch.Tensor]]) -> dict[str, float]:
    """Predicted IoU of every output against its true IoU: on unambiguous points, on ambiguous points against
    the drawn target and against the IoU averaged over the valid masks. Returns the three correlations."""
    import matplotlib.pyplot as plt

    s0, t0 = ev[0]["s_hat"].flatten(), ev[0]["iou"][:, :, 0].flatten()
    s2, t2, e2 = ev[2]["s_hat"].flatten(), ev[2]["drawn"].flatten(), ev[2]["iou"].mean(2).flatten()
    corr = {"unambiguous": float(np.corrcoef(s0, t0)[0, 1]), "ambiguous": float(np.corrcoef(s2, t2)[0, 1]),
            "ambiguous_expected": float(np.corrcoef(s2, e2)[0, 1])}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    panels = [(t0, corr["unambiguous"], "unambiguous points\n(IoU with the one valid mask)"),
              (t2, corr["ambiguous"], "ambiguous points\n(IoU with the drawn target)"),
              (e2, corr["ambiguous_expected"], "ambiguous points\n(IoU averaged over the 3 valid masks)")]
    for ax, (t, c, name) in zip(axes, panels):
        ax.scatter(t, s0 if t is t0 else s2, s=5, alpha=0.4)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_title(f"{name}\ncorrelation {c:.2f}", fontsize=9)
        ax.set_xlabel("true IoU")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(r"predicted IoU $\hat{s}$")
    fig.tight_layout()
    plt.show()
    return corr


def plot_ranking(ranks: dict[tuple[tuple[int, ...], int], dict[str, torch.Tensor]],
                 groups: dict[tuple[int, ...], str]) -> None:
    """Bars per group of points (`ranks[group, seed]` from `ranking`): the top output by predicted IoU, always
    output k, and the oracle (best output per point); mean over seeds, black tick: the worst seed."""
    import matplotlib.pyplot as plt

    seeds = sorted({s for _, s in ranks})
    choices = ["top-1 by ŝ", "always 1", "always 2", "always 3", "oracle"]
    colours = ["tab:green", *COLOURS, "tab:gray"]
    fig, ax = plt.subplots(figsize=(12, 3.6))
    width = 0.8 / len(choices)
    for g, group in enumerate(groups):
        vals = torch.stack([torch.stack([r["top1"], *r["always"], r["oracle"]])
                            for r in (ranks[group, s] for s in seeds)])  # [seeds, 5]
        for j in range(len(choices)):
            x = g + (j - 2) * width
            ax.bar(x, vals[:, j].mean(), width, color=colours[j], label=choices[j] if g == 0 else None)
            ax.scatter(x, vals[:, j].min(), marker="_", s=150, color="k", zorder=3)
    ax.set_xticks(range(len(groups)), list(groups.values()))
    ax.set_ylabel("IoU with the intended mask\n(mean over the annotator's choice)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    plt.show()


def subpart_centre(masks: torch.Tensor) -> tuple[float, float]:
    """The centre of a scene's subpart (`masks [3, S, S]`) as fractions (x, y) of its width and height."""
    ys, xs = torch.nonzero(masks[2], as_tuple=True)
    size = masks.shape[-1] - 1
    return round(xs.float().mean().item() / size, 2), round(ys.float().mean().item() / size, 2)


def draw_toy_prompt(image: torch.Tensor, point: tuple[float, float], single: PromptableSegmenter,
                    multi: PromptableSegmenter) -> None:
    """A point (fractions of width and height) on a toy scene `[1, S, S]`: the 1-output network's probability
    map and the 3 masks of the other, with their predicted IoUs."""
    import matplotlib.pyplot as plt

    from .plot import overlay_mask

    size = image.shape[-1]
    pt = torch.tensor([[point[0] * (size - 1), point[1] * (size - 1)]])
    p1, _ = predict_masks(single, image[None], pt)
    p3, s3 = predict_masks(multi, image[None], pt)
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.8))
    overlay_mask(image[0], point=pt[0], ax=axes[0], title="scene + point")
    im = axes[1].imshow(p1[0, 0], cmap="magma", vmin=0, vmax=1)
    axes[1].plot(*pt[0].tolist(), marker="*", color="lime", markersize=12, markeredgecolor="black")
    axes[1].set_title("K = 1: probability p", fontsize=9)
    axes[1].axis("off")
    fig.colorbar(im, cax=axes[1].inset_axes([1.03, 0.0, 0.05, 1.0]))   # beside the map: it keeps its size
    for k in range(3):
        overlay_mask(image[0], p3[0, k] > 0.5, point=pt[0], ax=axes[2 + k], color=COLOURS[k],
                     title=f"K = 3, mask {k + 1}: ŝ = {s3[0, k]:.2f}")
    fig.tight_layout(w_pad=3)                                            # room for the colour bar's ticks
    plt.show()


def draw_sam_prompt(predictor: "segment_anything.SamPredictor", photo: np.ndarray,  # noqa: F821
                    point: tuple[float, float], title: str = "photo") -> None:
    """A point (fractions of width and height) on the photo: SAM's three masks and scores, best first."""
    import matplotlib.pyplot as plt

    from .plot import overlay_mask

    pt = (point[0] * (photo.shape[1] - 1), point[1] * (photo.shape[0] - 1))
    m, s = sam_point_masks(predictor, pt)
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    overlay_mask(photo, point=pt, ax=axes[0], title=title)
    for k in range(3):
        overlay_mask(photo, m[k], point=pt, ax=axes[k + 1], color=COLOURS[k], title=f"SAM mask {k + 1}: {s[k]:.2f}")
    fig.tight_layout()
    plt.show()


def click_demo(image: torch.Tensor, draw: Callable[[float, float], None], default: tuple[float, float],
               px: int = 256) -> None:
    """A clickable grey image `[S, S]` (shown `px` wide): each click calls `draw(x, y)` (fractions) below it.

    Headless (a stored run) the figure of `default` is drawn as an ordinary output, so that it is stored.
    """
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display
    from ipyevents import Event

    from .progress import headless

    fig = plt.figure(figsize=(2, 2), dpi=px / 2)
    fig.add_axes((0, 0, 1, 1)).imshow(image, cmap="gray", vmin=0, vmax=1)
    plt.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    picture = widgets.Image(value=buf.getvalue(), format="png", width=px, height=px)
    out = widgets.Output()

    def on_click(event: dict[str, Any]) -> None:
        with out:
            out.clear_output(wait=True)
            draw(event["dataX"] / px, event["dataY"] / px)

    Event(source=picture, watched_events=["click"]).on_dom_event(on_click)
    display(widgets.VBox([widgets.Label("click on the scene: the point is the prompt"), picture, out]))
    if headless():
        draw(*default)
    else:
        with out:
            draw(*default)

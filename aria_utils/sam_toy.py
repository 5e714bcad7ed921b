"""SAM's ambiguity in miniature: nested-object scenes, point prompts, a small promptable segmenter, its losses,
training and evaluation, and the shipped networks (notebook 09's figures: `sam_figures`; the real Segment Anything:
`sam_real`).

A scene is a 48 x 48 grey image holding three nested objects, the lecture's "whole, part, and
subpart": a striped rectangle (whole) holding a Fashion-MNIST item (part) holding a small
checkerboard square (subpart). A point inside the subpart has three valid masks.

Notebook 09 trains one pair of networks live and loads the 3-seed networks of its measurements from
`checkpoints/sam_toy_<variant>_seed<s>.pt`. Reproduce them (2 CPU threads, about a minute each here):

    ARIA_THREADS=2 python -m aria_utils.sam_toy --variants K1 K3 --seeds 0 1 2
    ARIA_THREADS=2 python -m aria_utils.sam_toy --variants K3_eps0 K3_mean --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = ("whole", "part", "subpart")
# The scenes of notebook 09 (train and test items come from Fashion-MNIST's train and test splits).
SCENES: dict[str, int] = {"size": 32, "n_train": 3000, "n_test": 400, "seed_train": 1, "seed_test": 2}
# One recipe for every network: AdamW, `warmup` steps of learning-rate warm-up then a cosine to 0, `level_warmup`
# steps where output k learns level k only, then the rule (`eps` on the losing masks, `lam` on the IoU head).
RECIPE: dict[str, Any] = {"batch_size": 32, "lr": 3e-3, "warmup": 20, "widths": (8, 24, 48), "lam": 1.0,
                          "level_warmup": 60}
# The networks measured over seeds: K outputs, the rule after the warm-up ("min": the lecture's minimum over
# masks, "mean": every mask learns every target), and eps.
VARIANTS: dict[str, dict[str, Any]] = {"K1": {"k": 1, "rule": "min", "eps": 0.05},
                                       "K3": {"k": 3, "rule": "min", "eps": 0.05},
                                       "K3_eps0": {"k": 3, "rule": "min", "eps": 0.0},
                                       "K3_mean": {"k": 3, "rule": "mean", "eps": 0.05}}
SHIPPED_STEPS = 1200
VALID = 0.9  # a mask counts as a valid answer when its IoU with a valid mask is at least this


# ----------------------------------------------------------------------------------------------
# data: nested scenes and point prompts
# ----------------------------------------------------------------------------------------------

def _fits(mask: torch.Tensor, q: int) -> torch.Tensor:
    """Top-left corners `[H-q+1, W-q+1]` where a q x q square lies entirely inside `mask`."""
    return F.avg_pool2d(mask.float()[None, None], q, stride=1)[0, 0] > 0.999


def make_nested_scenes(items: torch.Tensor, n: int, size: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    """`n` scenes (whole rectangle > Fashion-MNIST item > checkerboard square) from uint8 items `[N, 28, 28]`.

    Returns `image` float `[n, 1, size, size]` in [0, 1] and `masks` bool `[n, 3, size, size]`
    (whole, part, subpart: each mask contains the next one).
    """
    if items.ndim != 3 or items.shape[-2:] != (28, 28):
        raise ValueError(f"items must be uint8 [N, 28, 28] (Fashion-MNIST), got shape {tuple(items.shape)}.")
    if size < 32:
        raise ValueError(f"size={size} is too small for three nested objects; use 32 or more.")
    rng = np.random.default_rng(seed)
    x = items.float() / 255.0 if items.dtype == torch.uint8 else items.float()
    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, 3, size, size, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float), torch.arange(size, dtype=torch.float), indexing="ij")
    i, tries = 0, 0
    while i < n:
        tries += 1
        if tries > 20 * n + 100:
            raise ValueError("could not place a part and a subpart in most scenes: the items are too thin or too "
                             "faint (use Fashion-MNIST-like items: bright objects on black).")
        img = torch.from_numpy(rng.uniform(0.0, 0.15, (size, size))).float()  # background noise
        # whole: a rectangle with stripes at a random angle and period
        h, w = rng.integers(int(0.6 * size), size - 3, size=2)
        y0, x0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        theta, period = rng.uniform(0, math.pi), rng.uniform(4, 7)
        stripes = 0.33 + 0.1 * torch.sign(torch.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period))
        whole = torch.zeros(size, size, dtype=torch.bool)
        whole[y0:y0 + h, x0:x0 + w] = True
        img[whole] = stripes[whole]
        # part: a Fashion-MNIST item, resized, inside the rectangle
        s = int(rng.integers(int(0.75 * min(h, w)), min(h, w) + 1))
        item = F.interpolate(x[int(rng.integers(len(x)))][None, None], size=(s, s), mode="bilinear",
                             align_corners=False)[0, 0]
        iy, ix = y0 + rng.integers(0, h - s + 1), x0 + rng.integers(0, w - s + 1)
        part = torch.zeros(size, size, dtype=torch.bool)
        part[iy:iy + s, ix:ix + s] = item > 0.15
        if part.sum() < 60:
            continue
        img[part] = 0.55 + 0.45 * F.pad(item, (ix, size - ix - s, iy, size - iy - s))[part]
        # subpart: a checkerboard square (2-pixel cells) lying entirely inside the item
        for q in (8, 6):
            ok = torch.nonzero(_fits(part, q))
            if len(ok):
                break
        else:
            continue  # the item is too thin for a square: draw another scene
        sy, sx = ok[int(rng.integers(len(ok)))].tolist()
        sub = torch.zeros(size, size, dtype=torch.bool)
        sub[sy:sy + q, sx:sx + q] = True
        checker = (((yy - sy) // 2 + (xx - sx) // 2) % 2).float()
        img[sub] = checker[sub]
        images[i, 0] = img
        masks[i] = torch.stack([whole, part, sub])
        i += 1
    return {"image": images, "masks": masks}


def point_regions(masks: torch.Tensor) -> torch.Tensor:
    """Where a point has 1, 2 or 3 valid masks: `[B, 3, H, W]` = (whole only, part not subpart, subpart)."""
    whole, part, sub = masks[:, 0], masks[:, 1], masks[:, 2]
    return torch.stack([whole & ~part, part & ~sub, sub], dim=1)


def sample_prompts(masks: torch.Tensor, level: torch.Tensor | int | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One point per scene, drawn uniformly in the region of `level` (random by default), and one target.

    A point in region `l` (0 whole only, 1 part, 2 subpart) has the `l + 1` valid masks 0..l; the
    target is one of them, uniformly, as when a human annotator picks one of the valid answers.
    Returns `point` float `[B, 2]` as (x, y) pixels, `level` `[B]`, `target` bool `[B, H, W]`,
    `target_level` `[B]`, `valid` bool `[B, 3]`.
    """
    b = masks.shape[0]
    if level is None:
        level = torch.randint(0, 3, (b,), generator=generator)
    level = torch.as_tensor(level).expand(b).clone() if torch.as_tensor(level).ndim == 0 else torch.as_tensor(level)
    if ((level < 0) | (level > 2)).any():
        raise ValueError("level must be 0 (whole), 1 (part) or 2 (subpart).")
    region = point_regions(masks)[torch.arange(b), level]  # [B, H, W]
    if not region.flatten(1).any(1).all():
        raise ValueError("some scene has an empty region for the requested level.")
    score = torch.rand(region.shape, generator=generator) * region  # uniform pixel inside the region
    flat = score.flatten(1).argmax(1)
    w = masks.shape[-1]
    point = torch.stack([flat % w, flat // w], dim=1).float()  # (x, y)
    target_level = (torch.rand(b, generator=generator) * (level + 1)).long()
    valid = torch.arange(3)[None] <= level[:, None]
    return {"point": point, "level": level, "target": masks[torch.arange(b), target_level],
            "target_level": target_level, "valid": valid}


def gaussian_bump(points: torch.Tensor, size: int, sigma: float = 2.0) -> torch.Tensor:
    """A dense point prompt: a Gaussian bump `[B, 1, size, size]` of height 1 at each (x, y)."""
    r = torch.arange(size, dtype=torch.float, device=points.device)
    dx = (r[None, :] - points[:, 0:1]) ** 2  # [B, W]
    dy = (r[None, :] - points[:, 1:2]) ** 2  # [B, H]
    return torch.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * sigma ** 2))[:, None]


def mask_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of boolean (or 0/1) masks over the last two dimensions."""
    p, t = pred.bool(), target.bool()
    inter = (p & t).flatten(-2).sum(-1).float()
    union = (p | t).flatten(-2).sum(-1).float()
    return inter / (union + eps)


# ----------------------------------------------------------------------------------------------
# the promptable segmenter: image encoder + prompt encoder + mask decoder with K outputs and IoU head
# ----------------------------------------------------------------------------------------------

def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class PromptEncoder(nn.Module):
    """A point -> a dense Gaussian bump (for the image) and a learned embedding of its Fourier features."""

    def __init__(self, *, dim: int, size: int, sigma: float = 2.0, n_freq: int = 8) -> None:
        super().__init__()
        self.size, self.sigma = size, sigma
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freq) * math.pi, persistent=False)
        self.embed = nn.Sequential(nn.Linear(4 * n_freq, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`points [B, 2]` (x, y) pixels -> (bump `[B, 1, S, S]`, embedding `[B, dim]`)."""
        u = points / self.size  # [B, 2] in [0, 1)
        ang = u[:, :, None] * self.freqs  # [B, 2, n_freq]
        fourier = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(1)  # [B, 4 n_freq]
        return gaussian_bump(points, self.size, self.sigma), self.embed(fourier)


class PromptableSegmenter(nn.Module):
    """A small U-Net that takes an image and a point and returns K mask logits and K predicted IoUs."""

    def __init__(self, *, k: int = 3, widths: tuple[int, int, int] = (8, 24, 48), size: int = 48,
                 sigma: float = 2.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k={k}: the number of mask outputs must be at least 1.")
        if size % 8:
            raise ValueError(f"size={size} must be a multiple of 8 (three poolings).")
        self.k, self.size = k, size
        c1, c2, c3 = widths  # channels at full, 1/2 and 1/4 resolution (the bottleneck, 1/8, has c3)
        self.prompt_encoder = PromptEncoder(dim=c3, size=size, sigma=sigma)
        # image encoder (the prompt's bump enters as a second input channel)
        self.enc1, self.enc2, self.enc3 = _conv_block(2, c1), _conv_block(c1, c2), _conv_block(c2, c3)
        self.mid = _conv_block(c3, c3)
        # mask decoder
        self.dec3, self.dec2, self.dec1 = _conv_block(2 * c3, c3), _conv_block(c3 + c2, c2), _conv_block(c2 + c1, c1)
        self.mask_head = nn.Conv2d(c1, k, 1)  # K mask outputs
        if k > 1:  # break the outputs' symmetry: they start as "big", ..., "small" masks
            with torch.no_grad():
                self.mask_head.bias.copy_(torch.linspace(2.0, -4.0, k))
        self.iou_head = nn.Sequential(nn.Linear(c3 + k * (c1 + 1), 64), nn.ReLU(), nn.Linear(64, k))

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`image [B, 1, S, S]`, `points [B, 2]` -> (mask logits `[B, K, S, S]`, predicted IoU `[B, K]`)."""
        if image.ndim != 4 or image.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"image must be [B, 1, {self.size}, {self.size}], got {tuple(image.shape)}.")
        if points.shape != (image.shape[0], 2):
            raise ValueError(f"points must be [B, 2] (x, y), got {tuple(points.shape)}.")
        bump, emb = self.prompt_encoder(points)
        e1 = self.enc1(torch.cat([image, bump], dim=1))  # [B, c1, S, S]
        e2 = self.enc2(F.max_pool2d(e1, 2))  # [B, c2, S/2, S/2]
        e3 = self.enc3(F.max_pool2d(e2, 2))  # [B, c3, S/4, S/4]
        z = self.mid(F.max_pool2d(e3, 2) + emb[:, :, None, None])  # [B, c3, S/8, S/8]
        d3 = self.dec3(torch.cat([F.interpolate(z, scale_factor=2.0), e3], dim=1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], dim=1))  # [B, c1, S, S]
        logits = self.mask_head(d1)  # [B, K, S, S]
        # IoU head: global image-prompt summary + each mask's area and its mask-pooled features
        p = torch.sigmoid(logits).detach()
        area = p.mean((2, 3))  # [B, K]
        pooled = torch.einsum("bkhw,bchw->bkc", p, d1) / (p.sum((2, 3))[..., None] + 1.0)  # [B, K, c1]
        feats = torch.cat([z.mean((2, 3)), pooled.flatten(1), area], dim=1)
        return logits, torch.sigmoid(self.iou_head(feats))


@torch.no_grad()
def predict_masks(model: PromptableSegmenter, image: torch.Tensor, points: torch.Tensor,
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask probabilities `[N, K, S, S]` and predicted IoUs `[N, K]`, batch by batch, in eval mode."""
    model.eval()
    probs, ious = [], []
    for i in range(0, len(image), batch_size):
        logits, iou = model(image[i: i + batch_size], points[i: i + batch_size])
        probs.append(torch.sigmoid(logits))
        ious.append(iou)
    return torch.cat(probs), torch.cat(ious)


# ----------------------------------------------------------------------------------------------
# training: the minimum loss over masks, the warm-up, the recipe
# ----------------------------------------------------------------------------------------------

def nested_scene_sets(n_train: int, n_test: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Training scenes from Fashion-MNIST's train items, test scenes from its test items (`SCENES`' size, seeds)."""
    from .data import load_fashion_mnist

    x_train, _ = load_fashion_mnist("train")
    x_test, _ = load_fashion_mnist("test")
    size = SCENES["size"]
    return (make_nested_scenes(x_train, n_train, size=size, seed=SCENES["seed_train"]),
            make_nested_scenes(x_test, n_test, size=size, seed=SCENES["seed_test"]))


def per_mask_loss(logits: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """`l_k = BCE + Dice` of every mask logit `[B, K, H, W]` against the target `m [B, H, W]` -> `[B, K]`."""
    t = m[:, None].float().expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((2, 3))
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * t).sum((2, 3)) + 1) / (p.sum((2, 3)) + t.sum((2, 3)) + 1)
    return bce + dice


def sam_loss(logits: torch.Tensor, s_hat: torch.Tensor, m: torch.Tensor, eps: float = 0.05, lam: float = 1.0,
             rule: str = "min") -> tuple[torch.Tensor, torch.Tensor]:
    """The lecture's loss: `min_k l_k` + `eps` x mean of the others + `lam` x MSE(s_hat, IoU) -> (L, k* `[B]`).

    `rule="mean"` is the baseline without the minimum: every mask learns every target (`mean_k l_k`).
    """
    if rule not in ("min", "mean"):
        raise ValueError(f"rule={rule!r}: use 'min' (the lecture's) or 'mean'.")
    k = logits.shape[1]
    l = per_mask_loss(logits, m)
    l_min, k_star = l.min(dim=1)
    iou = mask_iou(logits.detach() > 0, m[:, None])
    l_iou = ((s_hat - iou) ** 2).mean(dim=1)
    if rule == "mean":
        return (l.mean(dim=1) + lam * l_iou).mean(), k_star
    l_rest = (l.sum(dim=1) - l_min) / max(k - 1, 1)
    return (l_min + eps * l_rest + lam * l_iou).mean(), k_star


def warmup_loss(logits: torch.Tensor, s_hat: torch.Tensor, prompt: dict[str, torch.Tensor],
                lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The warm-up: output k learns the target only when the annotator chose level k -> (L, the level `[B]`)."""
    level = prompt["target_level"]
    l_level = per_mask_loss(logits, prompt["target"])[torch.arange(len(level)), level]
    iou = mask_iou(logits.detach() > 0, prompt["target"][:, None])
    return (l_level + lam * ((s_hat - iou) ** 2).mean(dim=1)).mean(), level


LossRule = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


def make_training_step(warmup: int, loss: LossRule = sam_loss, **loss_kw: Any
                       ) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    """A step for `fit`: a random point and a random valid target per scene; the warm-up for `warmup` steps
    (K > 1), then `loss(logits, s_hat, target, **loss_kw)`. Logs `wins_k`, the share of the batch won by output k."""
    calls = [0]

    def training_step(model: PromptableSegmenter, image: torch.Tensor, masks: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        calls[0] += 1
        prompt = sample_prompts(masks)
        logits, s_hat = model(image, prompt["point"])
        if model.k > 1 and calls[0] <= warmup:
            out, k_star = warmup_loss(logits, s_hat, prompt, lam=loss_kw.get("lam", 1.0))
        else:
            out, k_star = loss(logits, s_hat, prompt["target"], **loss_kw)
        return out, {f"wins_{k}": (k_star == k).float().mean().item() for k in range(logits.shape[1])}

    return training_step


def new_segmenter(variant: str, seed: int) -> PromptableSegmenter:
    """The network of `variant` (`VARIANTS`) for `SCENES`' size, with the initial weights that `seed` gives."""
    torch.manual_seed(seed)
    return PromptableSegmenter(k=VARIANTS[variant]["k"], widths=RECIPE["widths"], size=SCENES["size"])


def train_segmenter(model: PromptableSegmenter, train: dict[str, torch.Tensor], steps: int, *, seed: int,
                    loss: LossRule = sam_loss, seconds: float | None = None, desc: str = "train",
                    progress: bool = True, **loss_kw: Any) -> dict[str, Any]:
    """`RECIPE` for `steps` steps on the scenes `train` with the rule `loss(..., **loss_kw)`; the history as a dict."""
    from .training import fit

    step = make_training_step(RECIPE["level_warmup"], loss, lam=RECIPE["lam"], **loss_kw)
    hist = fit(model, [train["image"], train["masks"]], step, steps=steps, seconds=seconds,
               batch_size=RECIPE["batch_size"], lr=RECIPE["lr"], warmup=RECIPE["warmup"], seed=seed, desc=desc,
               progress=progress)
    return hist.to_dict()


# ----------------------------------------------------------------------------------------------
# evaluation: best of K, the blend, the ranking by predicted IoU
# ----------------------------------------------------------------------------------------------

def eval_prompts(masks: torch.Tensor, seed: int = 1) -> dict[int, dict[str, torch.Tensor]]:
    """One point per test scene in each region (0: whole only, 1: part, 2: subpart), drawn with `seed`."""
    g = torch.Generator().manual_seed(seed)
    return {level: sample_prompts(masks, level=level, generator=g) for level in range(3)}


@torch.no_grad()
def evaluate_segmenter(model: PromptableSegmenter, test: dict[str, torch.Tensor],
                       prompts: dict[int, dict[str, torch.Tensor]]) -> dict[int, dict[str, torch.Tensor]]:
    """Per region `level` of the point: `iou [N, K, 3]` of each output (> 0.5) with each level's mask,
    `s_hat [N, K]`, `drawn [N, K]` (IoU with the annotator's drawn target) and `blend [N, 2]`: the mean
    |p - average of the valid masks| and the smallest mean |p - one valid mask| of output 1's probabilities,
    over the whole's pixels."""
    out = {}
    masks = test["masks"]
    inside = masks[:, 0].float()
    for level, pr in prompts.items():
        probs, s_hat = predict_masks(model, test["image"], pr["point"])
        valid = masks[:, : level + 1].float()  # [N, l + 1, H, W]
        p = probs[:, :1]
        dist = ((p - valid).abs() * inside[:, None]).sum((2, 3)) / inside.sum((1, 2))[:, None]  # [N, l + 1]
        to_avg = ((probs[:, 0] - valid.mean(1)).abs() * inside).sum((1, 2)) / inside.sum((1, 2))
        out[level] = {"iou": mask_iou(probs[:, :, None] > 0.5, masks[:, None]), "s_hat": s_hat,
                      "drawn": mask_iou(probs > 0.5, pr["target"][:, None]),
                      "blend": torch.stack([to_avg, dist.min(1).values], 1)}
    return out


def best_of_k(ev: dict[int, dict[str, torch.Tensor]], level: int) -> torch.Tensor:
    """Mean IoU of the closest output with each valid mask of points in region `level` -> `[level + 1]`."""
    return ev[level]["iou"].max(dim=1).values[:, : level + 1].mean(0)


def ranking(ev: dict[int, dict[str, torch.Tensor]], levels: tuple[int, ...] = (0, 1, 2)) -> dict[str, torch.Tensor]:
    """How well a choice of one output answers the annotator, over points of the regions `levels` (equal shares).

    The score of an output on a point is its IoU with the intended mask, averaged over the annotator's uniform
    choice among the valid masks. Returns `top1` (the output with the highest predicted IoU), `always [K]`
    (always output k), `oracle` (the best output for each point), `top1_valid` and `always_valid [K]` (share
    of points where the chosen output is a valid mask, IoU >= VALID with one of them).
    """
    score, s_hat, valid = [], [], []
    for level in levels:
        iou = ev[level]["iou"][:, :, : level + 1]  # [N, K, valid masks]
        score.append(iou.mean(2))
        valid.append((iou.max(2).values >= VALID).float())
        s_hat.append(ev[level]["s_hat"])
    score, s_hat, valid = torch.cat(score), torch.cat(s_hat), torch.cat(valid)
    top = s_hat.argmax(1)
    rows = torch.arange(len(top))
    return {"top1": score[rows, top].mean(), "always": score.mean(0), "oracle": score.max(1).values.mean(),
            "top1_valid": valid[rows, top].mean(), "always_valid": valid.mean(0)}


def sam_loss_loop(logits: torch.Tensor, s_hat: torch.Tensor, m: torch.Tensor, eps: float = 0.05,
                  lam: float = 1.0) -> torch.Tensor:
    """`sam_loss` written a second way, for checks: PyTorch's loss modules, loops over prompts and masks, `min`."""
    bce, mse, total = nn.BCEWithLogitsLoss(), nn.MSELoss(), torch.zeros(())
    for b in range(logits.shape[0]):
        t = m[b].float()
        ls = []
        for k in range(logits.shape[1]):
            p = logits[b, k].sigmoid()
            ls.append(bce(logits[b, k], t) + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
        best = min(range(len(ls)), key=lambda k: ls[k].item())
        rest = sum(ls[k] for k in range(len(ls)) if k != best) / max(len(ls) - 1, 1)
        iou = torch.stack([((logits[b, k] > 0) & m[b]).sum() / (((logits[b, k] > 0) | m[b]).sum() + 1e-6)
                           for k in range(logits.shape[1])])
        total = total + ls[best] + eps * rest + lam * mse(s_hat[b], iou.float())
    return total / logits.shape[0]


# ----------------------------------------------------------------------------------------------
# the shipped networks and the command that makes them
# ----------------------------------------------------------------------------------------------

def shipped_path(variant: str, seed: int) -> Path:
    """`checkpoints/sam_toy_<variant>_seed<seed>.pt`."""
    from .setup import repo_root

    return repo_root() / "checkpoints" / f"sam_toy_{variant}_seed{seed}.pt"


def shipped_config(variant: str, seed: int, steps: int) -> dict[str, Any]:
    """What a shipped network was trained with (stored in the file and checked on load)."""
    return {"variant": variant, **VARIANTS[variant], "scenes": SCENES, "recipe": RECIPE, "steps": steps,
            "seed": seed}


def load_shipped(variant: str, seed: int, steps: int = SHIPPED_STEPS) -> tuple[PromptableSegmenter, dict[str, Any]]:
    """The shipped network of `variant` and `seed`, in eval mode (float32), and its metadata."""
    from .checkpoints import load_checkpoint

    path = shipped_path(variant, seed)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with "
                                f"`python -m aria_utils.sam_toy --variants {variant} --seeds {seed}`.")
    model = new_segmenter(variant, seed).half()  # stored in float16 (half the file), used in float32
    meta = load_checkpoint(path, model, shipped_config(variant, seed, steps))
    return model.float().eval(), meta


def main(argv: list[str] | None = None) -> int:
    """Train the networks of `--variants` for `--seeds` and save them in `checkpoints/`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=SHIPPED_STEPS)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be at least 1 (got {args.steps}).")
    from .checkpoints import save_checkpoint

    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    train, _ = nested_scene_sets(SCENES["n_train"], 0)
    for variant in args.variants:
        for seed in args.seeds:
            spec = VARIANTS[variant]
            model = new_segmenter(variant, seed)
            hist = train_segmenter(model, train, args.steps, seed=seed, desc=f"{variant}, seed {seed}",
                                   eps=spec["eps"], rule=spec["rule"])
            meta = {"history": {k: v for k, v in hist.items() if k not in ("loss", "logs")},
                    "loss_every_10": hist["loss"][::10],
                    "wins_every_10": {k: w[::10] for k, w in hist["logs"].items()},
                    "command": ("python -m aria_utils.sam_toy "
                                + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
                    "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {hist['steps']} "
                                  f"steps in {hist['seconds']:.0f} s wall",
                    "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__)}
            path = save_checkpoint(shipped_path(variant, seed), model.half(),
                                   shipped_config(variant, seed, hist["steps"]), meta)
            print(f"[sam_toy] {variant}, seed {seed}: {hist['steps']} steps in {hist['seconds']:.0f} s, final loss "
                  f"{hist['loss'][-1]:.4f} -> {path} ({Path(path).stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

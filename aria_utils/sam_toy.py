"""SAM's ambiguity in miniature: nested-object scenes, point prompts, a small promptable segmenter,
and the plumbing for the real Segment Anything predictor (weights, a tiny random SAM for tests).

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
SAM_VIT_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
SAM_VIT_B_SHA256 = "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"


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
# figures and widgets of notebook 09
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# the real Segment Anything: weights, predictor plumbing, a tiny random SAM for offline tests
# ----------------------------------------------------------------------------------------------

def host_reachable(url: str, timeout: float = 1.5) -> bool:
    """True when the host of `url` answers a TCP connection on 443; `ARIA_OFFLINE=1` gives False without trying."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("ARIA_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((urlparse(url).hostname, 443), timeout=timeout):
            return True
    except OSError:
        return False


def download_with_progress(url: str, sha256: str, dest: Path, timeout: float = 120.0) -> Path:
    """Download `url` by chunks of 1 MB with a progress display, check its sha256, then write `dest` atomically."""
    import hashlib
    import urllib.request

    from .io import atomic_write_bytes
    from .progress import Progress

    h, chunks = hashlib.sha256(), []
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            size = int(r.headers.get("Content-Length") or 0)
            bar = Progress(total=-(-size // 2 ** 20) if size else None, desc=f"downloading {Path(url).name}", unit="MB")
            while chunk := r.read(2 ** 20):
                h.update(chunk)
                chunks.append(chunk)
                bar.update(1)
            bar.close()
    except OSError as e:
        raise ConnectionError(f"Could not download {url} ({e}). Place the file at {dest} by hand.") from e
    if h.hexdigest() != sha256:
        raise ValueError(f"Checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}. "
                         "Nothing was written.")
    return atomic_write_bytes(dest, b"".join(chunks))


def sam_vit_b_weights(folder: str | Path | None = None, download: bool = True) -> Path:
    """The official SAM ViT-B checkpoint: found in `folder` (default `cache/`) or downloaded from SAM's own host
    with a progress display (sha256-checked)."""
    from .checkpoints import cache_dir
    from .io import sha256_of

    dest = Path(folder or cache_dir()) / Path(SAM_VIT_B_URL).name
    if dest.exists() and sha256_of(dest) == SAM_VIT_B_SHA256:
        return dest
    if not download or not host_reachable(SAM_VIT_B_URL):
        raise ConnectionError(f"no SAM ViT-B weights at {dest} and no network to fetch them "
                              f"(download {SAM_VIT_B_URL}, 375 MB, and place it there).")
    return download_with_progress(SAM_VIT_B_URL, SAM_VIT_B_SHA256, dest)


def load_sam(path: str | Path, variant: str = "vit_b") -> nn.Module:
    """Build segment-anything's `sam_model_registry[variant]` and load a checkpoint (`weights_only=True`)."""
    from segment_anything import sam_model_registry

    if variant not in sam_model_registry:
        raise ValueError(f"variant={variant!r}: use one of {sorted(sam_model_registry)}.")
    sam = sam_model_registry[variant](checkpoint=None)  # random weights, then the checkpoint
    sam.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return sam.eval()


def tiny_sam(img_size: int = 64, embed_dim: int = 32, seed: int = 0) -> nn.Module:
    """A SAM with random weights built from segment_anything's own modules, small enough for tests."""
    patch = 16
    if img_size % patch:
        raise ValueError(f"img_size={img_size} must be a multiple of the patch size {patch}.")
    grid = img_size // patch
    with torch.random.fork_rng():  # leave the caller's random stream untouched
        torch.manual_seed(seed)
        sam = _tiny_sam(img_size, embed_dim, patch, grid)
    return sam.eval()


def _tiny_sam(img_size: int, embed_dim: int, patch: int, grid: int) -> nn.Module:
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder as SamPromptEncoder, Sam, \
        TwoWayTransformer

    return Sam(
        image_encoder=ImageEncoderViT(img_size=img_size, patch_size=patch, embed_dim=embed_dim, depth=1, num_heads=2,
                                      out_chans=embed_dim, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                      use_rel_pos=True, window_size=0),
        prompt_encoder=SamPromptEncoder(embed_dim=embed_dim, image_embedding_size=(grid, grid),
                                        input_image_size=(img_size, img_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=embed_dim, iou_head_depth=2,
                                 iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=embed_dim, mlp_dim=64,
                                                               num_heads=2)),
    )


def sam_point_masks(predictor: "segment_anything.SamPredictor", point: tuple[float, float],  # noqa: F821
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One foreground point -> SAM's three masks `bool [3, H, W]` and scores `[3]`, best score first."""
    masks, scores, _ = predictor.predict(point_coords=np.array([point], dtype=np.float32),
                                         point_labels=np.array([1]), multimask_output=True)
    order = np.argsort(-scores)
    return masks[order], scores[order]



if __name__ == "__main__":
    raise SystemExit(main())

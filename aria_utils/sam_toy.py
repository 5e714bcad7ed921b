"""SAM's ambiguity in miniature: nested-object scenes, point prompts, a small promptable segmenter,
and the plumbing for the real Segment Anything predictor (weights, a tiny random SAM for tests).

A scene is a 48 x 48 grey image holding three nested objects, the lecture's "whole, part, and
subpart": a striped rectangle (whole) holding a Fashion-MNIST item (part) holding a small
checkerboard square (subpart). A point inside the subpart has three valid masks.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = ("whole", "part", "subpart")
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
# the real Segment Anything: weights, predictor plumbing, a tiny random SAM for offline tests
# ----------------------------------------------------------------------------------------------

def sam_vit_b_weights(folder: str | Path | None = None, download: bool = True) -> Path:
    """The official SAM ViT-B checkpoint: found in `folder` (default `cache/`) or downloaded (sha256-checked)."""
    from .checkpoints import cache_dir
    from .io import download_checked, sha256_of
    from .setup import hub_reachable

    dest = Path(folder or cache_dir()) / Path(SAM_VIT_B_URL).name
    if dest.exists() and sha256_of(dest) == SAM_VIT_B_SHA256:
        return dest
    if not download or not hub_reachable():
        raise ConnectionError(f"no SAM ViT-B weights at {dest} and no network to fetch them "
                              f"(download {SAM_VIT_B_URL}, 375 MB, and place it there).")
    return download_checked(SAM_VIT_B_URL, SAM_VIT_B_SHA256, dest, timeout=120.0)


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


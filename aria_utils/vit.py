"""Patches (the package's one patch cutter; MAE builds on it), a small Vision Transformer (the lecture's
figure) and its hybrid, attention rollout, and attention maps of timm ViTs.

Notebook 07 writes the ViT's forward pass step by step and the rollout by hand, and shows that they
equal these. Shapes: B batch, C channels, S image side, P patch side, N = (S/P)^2 patches,
n = N + 1 tokens (class token first), d width, H heads, L layers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer import TransformerBlock


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Images `[B, C, H, W]` -> patches `[B, L, p*p*C]`, row-major over the patch grid."""
    B, C, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not a multiple of the patch size p={p}.")
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(B, h * w, p * p * C)  # (B, L, p*p*C)


def unpatchify(patches: torch.Tensor, p: int, C: int = 1) -> torch.Tensor:
    """Patches `[B, L, p*p*C]` -> images `[B, C, H, W]` (square grid), the inverse of `patchify`."""
    B, L, D = patches.shape
    h = int(round(math.sqrt(L)))
    if h * h != L or D != p * p * C:
        raise ValueError(f"cannot unpatchify {tuple(patches.shape)} with p={p}, C={C} (need a square grid).")
    x = patches.reshape(B, h, h, p, p, C)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(B, C, h * p, h * p)


class ViT(nn.Module):
    """ViT (Dosovitskiy et al., 2021): patches -> linear embedding E -> [x_class; ...] + E_pos ->
    L pre-norm transformer blocks (GELU) -> LayerNorm -> linear head on the class token's output."""

    def __init__(self, *, image_size: int, patch: int, in_channels: int = 1, d: int = 64, depth: int = 4,
                 H: int = 4, m: int | None = None, n_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} is not a multiple of patch={patch}.")
        if d % H:
            raise ValueError(f"d={d} is not a multiple of H={H}.")
        self.image_size, self.P, self.in_channels = image_size, patch, in_channels
        self.grid = image_size // patch  # patches per side
        self.N = self.grid ** 2
        self.E = nn.Linear(in_channels * patch * patch, d)  # linear projection of flattened patches
        self.x_class = nn.Parameter(torch.zeros(1, 1, d))  # learnable classification token
        self.E_pos = nn.Parameter(torch.randn(1, self.N + 1, d) * 0.02)  # learnable position embeddings
        self.blocks = nn.ModuleList([
            TransformerBlock(d, H, m or 2 * d, norm_first=True, activation="gelu", bias=True, dropout=dropout)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)  # MLP head (one linear layer)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, S, S]` -> one embedded patch per token `[B, N, d]`: x_p^i E."""
        return self.E(patchify(x, self.P))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, S, S]` -> input tokens `[B, N + 1, d]` (class token first, positions added)."""
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(f"expected images [B, {self.in_channels}, {self.image_size}, {self.image_size}], "
                             f"got {tuple(x.shape)}.")
        z = self.embed(x)  # (B, N, d)
        cls = self.x_class.expand(len(x), -1, -1)  # (B, 1, d)
        return torch.cat([cls, z], dim=1) + self.E_pos  # (B, N + 1, d)

    def forward(self, x: torch.Tensor,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Images -> logits `[B, n_classes]` (and alpha `[B, L, H, n, n]` with `return_attention=True`)."""
        z = self.tokens(x)
        alphas = []
        for blk in self.blocks:
            if return_attention:
                z, alpha = blk(z, return_attention=True)  # alpha: (B, H, n, n)
                alphas.append(alpha)
            else:
                z = blk(z)
        logits = self.head(self.norm(z)[:, 0])  # class token's output -> (B, n_classes)
        return (logits, torch.stack(alphas, dim=1)) if return_attention else logits

    @torch.no_grad()
    def get_attention_maps(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """All attention matrices alpha `[B, L, H, n, n]`, in eval mode, batch by batch (on CPU)."""
        self.eval()
        device = next(self.parameters()).device
        return torch.cat([self(x[i: i + batch_size].to(device), return_attention=True)[1].cpu()
                          for i in range(0, len(x), batch_size)])


class HybridViT(ViT):
    """The ViT paper's hybrid (section 3.1): the tokens are the cells of a small CNN's feature map
    instead of linearly embedded patches. Here `E` is that CNN: log2(P) convolutions 3 x 3 with
    stride 2 (BatchNorm and ReLU between), so each of the N = (S/P)^2 tokens sits on one P x P patch
    and sees it with a margin of neighbouring pixels. Everything after the tokens is the ViT's."""

    def __init__(self, *, image_size: int, patch: int = 8, in_channels: int = 1, d: int = 64, depth: int = 4,
                 H: int = 4, m: int | None = None, n_classes: int = 10, dropout: float = 0.0,
                 width: int = 16) -> None:
        k = patch.bit_length() - 1
        if patch < 2 or 2 ** k != patch:
            raise ValueError(f"patch={patch} must be a power of two (one stride-2 convolution per halving).")
        super().__init__(image_size=image_size, patch=patch, in_channels=in_channels, d=d, depth=depth, H=H, m=m,
                         n_classes=n_classes, dropout=dropout)
        chans = [in_channels] + [width * 2 ** i for i in range(k - 1)]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.E = nn.Sequential(*layers, nn.Conv2d(chans[-1], d, 3, stride=2, padding=1))  # (B, d, S/P, S/P)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, S, S]` -> `[B, N, d]`: the CNN's feature map read row by row (then as in the ViT)."""
        return self.E(x).flatten(2).transpose(1, 2)


def attention_rollout(alphas: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): per layer, average the heads, mix with the identity
    (`residual` weight, for the skip connection), renormalise rows, multiply through the layers.

    alphas `[B, L, H, n, n]` -> rollout `[B, n, n]`; each row sums to one.
    """
    if alphas.ndim != 5 or alphas.shape[-1] != alphas.shape[-2]:
        raise ValueError(f"expected alphas [B, L, H, n, n], got {tuple(alphas.shape)}.")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual={residual} must lie in [0, 1].")
    B, L, _, n, _ = alphas.shape
    eye = torch.eye(n, dtype=alphas.dtype, device=alphas.device)
    R = eye.expand(B, n, n)
    for layer in range(L):
        A = (1 - residual) * alphas[:, layer].mean(dim=1) + residual * eye  # (B, n, n)
        A = A / A.sum(dim=-1, keepdim=True)
        R = A @ R  # later layers on the left: R = A_L ... A_1
    return R


def cls_to_patches(attn: torch.Tensor, grid: int | None = None) -> torch.Tensor:
    """The class token's row without itself, renormalised over the patches, as maps `[..., g, g]`.

    attn `[..., n, n]` (raw alpha or rollout) -> `[..., g, g]` summing to one over the patches.
    """
    row = attn[..., 0, 1:]  # (..., N)
    row = row / row.sum(dim=-1, keepdim=True)
    N = row.shape[-1]
    g = grid or int(round(N ** 0.5))
    if g * g != N:
        raise ValueError(f"{N} patch tokens do not form a square grid.")
    return row.reshape(*row.shape[:-1], g, g)


def object_share(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of attention mass on object pixels, and share of object pixels, per image.

    maps `[B, g, g]` (summing to one) are spread evenly over each patch's pixels; masks `[B, S, S]` bool.
    Returns `(attention_on_object [B], object_pixel_share [B])`; uniform attention gives equal values.
    """
    if maps.ndim != 3 or masks.ndim != 3 or len(maps) != len(masks):
        raise ValueError(f"expected maps [B, g, g] and masks [B, S, S], got {tuple(maps.shape)}, {tuple(masks.shape)}.")
    g, S = maps.shape[-1], masks.shape[-1]
    if S % g:
        raise ValueError(f"mask side {S} is not a multiple of the map side {g}.")
    m = masks.float()
    frac = F.avg_pool2d(m[:, None], S // g)[:, 0]  # (B, g, g): share of each patch's pixels on the object
    return (maps * frac).sum(dim=(-2, -1)), m.mean(dim=(-2, -1))


def timm_attention_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All attention matrices `[B, L, H, n, n]` of a timm VisionTransformer (fused attention turned off).

    Hooks each block's `attn.attn_drop`, whose input is softmax(q k^T / sqrt(k)) once the fused
    kernel is off; hooks are removed afterwards and the `fused_attn` flags restored.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b, "attn") and hasattr(b.attn, "attn_drop") for b in blocks):
        raise TypeError("timm_attention_maps needs a timm VisionTransformer (blocks[i].attn.attn_drop).")
    found: list[torch.Tensor] = []
    saved = [b.attn.fused_attn for b in blocks]
    handles = [b.attn.attn_drop.register_forward_hook(lambda mod, inp, out: found.append(inp[0].detach()))
               for b in blocks]
    try:
        for b in blocks:
            b.attn.fused_attn = False
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for b, s in zip(blocks, saved):
            b.attn.fused_attn = s
    if len(found) != len(blocks):
        raise RuntimeError(f"captured {len(found)} attention matrices for {len(blocks)} blocks.")
    return torch.stack(found, dim=1)


def upsample_maps(maps: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Patch maps `[..., g, g]` -> pixel maps `[..., S, S]` (nearest: each patch keeps its square)."""
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=size, mode="nearest")
    return out.reshape(*lead, *out.shape[-2:])


@torch.no_grad()
def cls_attention(model: ViT, x: torch.Tensor, batch_size: int = 250,
                  residual: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-token maps over the patches, batch by batch (never holding every alpha at once):
    per layer and head `[B, L, H, g, g]`, and of the rollout `[B, g, g]`; each map sums to one."""
    layers, rolled = [], []
    for i in range(0, len(x), batch_size):
        alphas = model.get_attention_maps(x[i: i + batch_size], batch_size)  # (b, L, H, n, n)
        layers.append(cls_to_patches(alphas, model.grid))
        rolled.append(cls_to_patches(attention_rollout(alphas, residual), model.grid))
    return torch.cat(layers), torch.cat(rolled)


def content_maps(foreground: torch.Tensor, grid: int) -> torch.Tensor:
    """The content baseline: attention spread evenly over the non-empty patches (those with any foreground
    pixel), nothing on empty ones. foreground `[B, S, S]` bool -> maps `[B, g, g]` summing to one
    (uniform over all patches for an empty image)."""
    if foreground.ndim != 3 or foreground.shape[-1] % grid:
        raise ValueError(f"expected foreground [B, S, S] with S a multiple of {grid}, got {tuple(foreground.shape)}.")
    occupied = F.max_pool2d(foreground.float()[:, None], foreground.shape[-1] // grid)[:, 0]  # (B, g, g) in {0, 1}
    occupied = torch.where(occupied.sum((-2, -1), keepdim=True) > 0, occupied, torch.ones_like(occupied))
    return occupied / occupied.sum((-2, -1), keepdim=True)

"""The lecture's transformer block, equations (1)-(6), for reuse by notebooks 07-09.

Notebook 06 writes the same block by hand, equation by equation, and shows that it equals this one.
Shapes: B batch, n tokens, d model width, H heads, k per-head width, m hidden width of the MLP.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    """Equations (1)-(3): per-head projections W_{h,q}, W_{h,k}, W_{h,v} (stacked over h), softmax
    attention alpha, and the output projections W_{c,h} (stacked over h).

    The softmax is its own module (`self.attend`), so a forward hook can record alpha. With
    `return_attention=False` and `use_sdpa=True`, PyTorch's fused kernel computes the same thing faster.
    """

    def __init__(self, d: int, H: int, k: int | None = None, bias: bool = False, use_sdpa: bool = True) -> None:
        super().__init__()
        self.d, self.H, self.k = d, H, k or d // H
        self.W_q = nn.Linear(d, H * self.k, bias=bias)  # (1), all heads
        self.W_k = nn.Linear(d, H * self.k, bias=bias)  # (1)
        self.W_v = nn.Linear(d, H * self.k, bias=bias)  # (1)
        self.W_c = nn.Linear(H * self.k, d, bias=bias)  # (3), sum over heads of W_{c,h}^T
        self.attend = nn.Softmax(dim=-1)  # (2)
        self.use_sdpa = use_sdpa

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x `[B, n, d]` -> u' `[B, n, d]` (and alpha `[B, H, n, n]`). `mask` `[n, n]` or `[B, 1, n, n]`,
        bool, True where attention is allowed."""
        B, n, _ = x.shape
        q, k, v = (W(x).view(B, n, self.H, self.k).transpose(1, 2) for W in (self.W_q, self.W_k, self.W_v))
        # q, k, v: (B, H, n, k)
        if self.use_sdpa and not return_attention:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, n, k)
            alpha = None
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.k)  # (B, H, n, n)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            alpha = self.attend(scores)  # (2) softmax over j
            out = alpha @ v  # (B, H, n, k)
        u = self.W_c(out.transpose(1, 2).reshape(B, n, self.H * self.k))  # (3)  (B, n, d)
        return (u, alpha) if return_attention else u


class TransformerBlock(nn.Module):
    """Equations (1)-(6). `norm_first=False` is the lecture's (post-norm) block; `norm_first=True`
    is the pre-norm variant used by ViT. `activation` is ReLU in the lecture, GELU in ViT."""

    def __init__(self, d: int, H: int, m: int, k: int | None = None, *, norm_first: bool = False,
                 activation: str = "relu", bias: bool = False, dropout: float = 0.0, use_sdpa: bool = True) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation={activation!r}: use 'relu' or 'gelu'.")
        self.attn = MultiHeadAttention(d, H, k, bias=bias, use_sdpa=use_sdpa)
        self.norm1 = nn.LayerNorm(d)  # gamma_1, beta_1
        self.W_1 = nn.Linear(d, m, bias=bias)  # (5)
        self.W_2 = nn.Linear(m, d, bias=bias)  # (5)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.norm2 = nn.LayerNorm(d)  # gamma_2, beta_2
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def mlp(self, u: torch.Tensor) -> torch.Tensor:
        """z' = W_2^T ReLU(W_1^T u), equation (5)."""
        return self.drop(self.W_2(self.act(self.W_1(u))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x `[B, n, d]` -> z `[B, n, d]` (and alpha `[B, H, n, n]`)."""
        if self.norm_first:
            a = self.attn(self.norm1(x), mask, return_attention)
            u_prime, alpha = a if return_attention else (a, None)
            u = x + self.drop(u_prime)
            z = u + self.mlp(self.norm2(u))
        else:
            a = self.attn(x, mask, return_attention)
            u_prime, alpha = a if return_attention else (a, None)
            u = self.norm1(x + self.drop(u_prime))  # (4)
            z = self.norm2(u + self.mlp(u))  # (6)
        return (z, alpha) if return_attention else z


def sinusoidal_positions(n: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """The sinusoidal positional codes of "Attention is all you need": `[n, d]`."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float32)[None, :]
    angle = pos / base ** (i / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe

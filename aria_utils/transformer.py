"""The lecture's transformer block, equations (1)-(6), for reuse by notebooks 07-09, with the decoder's two
additions (a causal mask, cross-attention) and the copies of the lecture-shaped weights into PyTorch's layers.

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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False,
                memory: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x `[B, n, d]` -> u' `[B, n, d]` (and alpha `[B, H, n, n']`). `mask` `[n, n']` or `[B, 1, n, n']`,
        bool, True where attention is allowed. `memory` `[B, n', d]`: cross-attention, keys and values from it."""
        B, n, _ = x.shape
        src = x if memory is None else memory  # cross-attention: the only change
        q = self.W_q(x).view(B, n, self.H, self.k).transpose(1, 2)
        k, v = (W(src).view(B, src.shape[1], self.H, self.k).transpose(1, 2) for W in (self.W_k, self.W_v))
        # q: (B, H, n, k); k, v: (B, H, n', k)
        if self.use_sdpa and not return_attention:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, n, k)
            alpha = None
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.k)  # (B, H, n, n')
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


def causal_mask(n: int) -> torch.Tensor:
    """`[n, n]` bool, True where token i may look at token j, i.e. j <= i (the decoder's self-attention)."""
    return torch.ones(n, n, dtype=torch.bool).tril()


class DecoderBlock(nn.Module):
    """The decoder block of "Attention is all you need" (post-norm, ReLU, no biases): equations (1)-(4) with a
    causal mask, the same (1)-(4) again with keys and values from the encoder's output (cross-attention),
    then (5)-(6). The same computation as `nn.TransformerDecoderLayer(norm_first=False)`."""

    def __init__(self, d: int, H: int, m: int, k: int | None = None, use_sdpa: bool = True) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d, H, k, use_sdpa=use_sdpa)
        self.cross_attn = MultiHeadAttention(d, H, k, use_sdpa=use_sdpa)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.W_1 = nn.Linear(d, m, bias=False)
        self.W_2 = nn.Linear(m, d, bias=False)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """y `[B, n, d]` (the output so far), memory `[B, n', d]` -> z `[B, n, d]` (and the cross-attention
        alpha `[B, H, n, n']`)."""
        u = self.norm1(y + self.self_attn(y, causal_mask(y.shape[1]).to(y.device)))  # (1)-(4), causal
        c = self.cross_attn(u, memory=memory, return_attention=return_attention)     # (1)-(3), cross
        c, alpha = c if return_attention else (c, None)
        v = self.norm2(u + c)                                                          # (4)
        z = self.norm3(v + self.W_2(torch.relu(self.W_1(v))))                          # (5), (6)
        return (z, alpha) if return_attention else z


def stack_heads(W: torch.Tensor) -> torch.Tensor:
    """The lecture's H matrices `[H, d, k]` -> `[H*k, d]`, side by side and transposed as nn.Linear keeps them."""
    H, d, k = W.shape
    return W.permute(1, 0, 2).reshape(d, H * k).T


def _copy_attention(attn: nn.Module, P: dict[str, torch.Tensor]) -> None:
    """Copy W_q, W_k, W_v `[H, d, k]` and W_c `[H, k, d]` into a MultiHeadAttention or nn.MultiheadAttention."""
    H, d, k = P["W_q"].shape
    W_c = P["W_c"].reshape(H * k, d).T
    if isinstance(attn, MultiHeadAttention):
        for name in ("W_q", "W_k", "W_v"):
            getattr(attn, name).weight.copy_(stack_heads(P[name]))
        attn.W_c.weight.copy_(W_c)
        return
    attn.in_proj_weight.copy_(torch.cat([stack_heads(P[name]) for name in ("W_q", "W_k", "W_v")]))
    attn.out_proj.weight.copy_(W_c)
    for bias in (attn.in_proj_bias, attn.out_proj.bias):
        if bias is not None:
            bias.zero_()


@torch.no_grad()
def load_lecture_params(module: nn.Module, P: dict[str, torch.Tensor],
                        cross: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Copy the lecture-shaped weights `P` (W_q, W_k, W_v `[H, d, k]`, W_c `[H, k, d]`, gamma_1, beta_1,
    W_1 `[d, m]`, W_2 `[m, d]`, gamma_2, beta_2) into `module`, in eval mode, and return it.

    `module`: `nn.MultiheadAttention`, `MultiHeadAttention`, `nn.TransformerEncoderLayer`, `TransformerBlock`;
    with `cross` (the cross-attention's W_q, W_k, W_v, W_c and its LayerNorm's gamma, beta),
    `nn.TransformerDecoderLayer` or `DecoderBlock`. The linear layers' biases, where PyTorch has them, are set to zero.
    """
    if isinstance(module, (nn.MultiheadAttention, MultiHeadAttention)):
        _copy_attention(module, P)
        return module.eval()
    decoder = isinstance(module, (nn.TransformerDecoderLayer, DecoderBlock))
    if decoder and cross is None:
        raise ValueError("a decoder layer needs the cross-attention's weights: pass cross=...")
    _copy_attention(module.self_attn if hasattr(module, "self_attn") else module.attn, P)
    norms = [module.norm1, module.norm2] + ([module.norm3] if decoder else [])
    pairs = [(P["gamma_1"], P["beta_1"])] + ([(cross["gamma"], cross["beta"])] if decoder else [])
    pairs.append((P["gamma_2"], P["beta_2"]))
    for norm, (gamma, beta) in zip(norms, pairs):
        norm.weight.copy_(gamma)
        norm.bias.copy_(beta)
    if decoder:
        _copy_attention(module.multihead_attn if hasattr(module, "multihead_attn") else module.cross_attn, cross)
    lin1, lin2 = (module.linear1, module.linear2) if hasattr(module, "linear1") else (module.W_1, module.W_2)
    lin1.weight.copy_(P["W_1"].T)
    lin2.weight.copy_(P["W_2"].T)
    for lin in (lin1, lin2):
        if lin.bias is not None:
            lin.bias.zero_()
    return module.eval()

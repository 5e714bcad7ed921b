"""aria_utils.transformer: the block equals PyTorch's own layer, attention is a proper softmax, masks work."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aria_utils.transformer import (DecoderBlock, MultiHeadAttention, TransformerBlock, causal_mask,
                                    load_lecture_params, sinusoidal_positions, stack_heads)

D, H, M = 32, 4, 64


def _random_block(norm_first: bool = False, activation: str = "relu", seed: int = 0) -> TransformerBlock:
    """A float64 block with random weights, including non-trivial LayerNorm gamma/beta."""
    torch.manual_seed(seed)
    block = TransformerBlock(D, H, M, norm_first=norm_first, activation=activation).double().eval()
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.normal_(1.0, 0.1)
            norm.bias.normal_(0.0, 0.1)
    return block


def _pytorch_twin(block: TransformerBlock, norm_first: bool, activation: str) -> nn.TransformerEncoderLayer:
    """nn.TransformerEncoderLayer holding the block's weights (linear biases zero, LayerNorm betas copied)."""
    ref = nn.TransformerEncoderLayer(D, H, dim_feedforward=M, dropout=0.0, activation=activation, batch_first=True,
                                     norm_first=norm_first, dtype=torch.float64).eval()
    a = block.attn
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.W_q.weight, a.W_k.weight, a.W_v.weight]))
        ref.self_attn.in_proj_bias.zero_()
        ref.self_attn.out_proj.weight.copy_(a.W_c.weight)
        ref.self_attn.out_proj.bias.zero_()
        ref.linear1.weight.copy_(block.W_1.weight)
        ref.linear1.bias.zero_()
        ref.linear2.weight.copy_(block.W_2.weight)
        ref.linear2.bias.zero_()
        for mine, theirs in ((block.norm1, ref.norm1), (block.norm2, ref.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return ref


@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "relu"), (True, "gelu")])
def test_block_equals_pytorch_encoder_layer(norm_first: bool, activation: str) -> None:
    block = _random_block(norm_first, activation)
    ref = _pytorch_twin(block, norm_first, activation)
    x = torch.randn(3, 11, D, dtype=torch.float64)
    with torch.no_grad():
        expected = ref(x)
        fused = block(x)
        explicit, alpha = block(x, return_attention=True)
    assert fused.shape == explicit.shape == x.shape
    assert alpha.shape == (3, H, 11, 11)
    assert (fused - expected).abs().max() < 1e-10
    assert (explicit - expected).abs().max() < 1e-10


def test_pre_norm_differs_from_post_norm() -> None:
    x = torch.randn(2, 7, D, dtype=torch.float64)
    post, pre = _random_block(False), _random_block(True)
    with torch.no_grad():
        z_post, z_pre = post(x), pre(x)
    assert torch.isfinite(z_pre).all()
    assert (z_post - z_pre).abs().max() > 1e-3  # same weights, another block
    # post-norm ends with a LayerNorm: undoing gamma_2, beta_2 leaves rows of mean 0 and variance ~1
    v = (z_post - post.norm2.bias) / post.norm2.weight
    assert v.mean(-1).abs().max() < 1e-10
    assert (v.var(-1, unbiased=False) - 1).abs().max() < 1e-3


def test_attention_rows_sum_to_one_and_match_multihead_attention() -> None:
    torch.manual_seed(1)
    mha = MultiHeadAttention(D, H).double()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    ref = nn.MultiheadAttention(D, H, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.W_q.weight, mha.W_k.weight, mha.W_v.weight]))
        ref.out_proj.weight.copy_(mha.W_c.weight)
        u, alpha = mha(x, return_attention=True)
        u_ref, alpha_ref = ref(x, x, x, average_attn_weights=False)
    assert torch.allclose(alpha.sum(-1), torch.ones(2, H, 9, dtype=torch.float64))
    assert (alpha >= 0).all()
    assert (u - u_ref).abs().max() < 1e-10
    assert (alpha - alpha_ref).abs().max() < 1e-12


def test_causal_mask_blocks_the_future() -> None:
    torch.manual_seed(2)
    mha = MultiHeadAttention(D, H).double()
    n = 8
    allowed = torch.tril(torch.ones(n, n, dtype=torch.bool))  # True where attention is allowed
    x = torch.randn(2, n, D, dtype=torch.float64)
    with torch.no_grad():
        u, alpha = mha(x, mask=allowed, return_attention=True)
        u_fused = mha(x, mask=allowed)
        x2 = x.clone()
        x2[:, -1] += 5.0  # changing the last token must not change earlier outputs
        u2 = mha(x2, mask=allowed)
    assert alpha[:, :, ~allowed].abs().max() == 0
    assert torch.allclose(alpha.sum(-1), torch.ones(2, H, n, dtype=torch.float64))
    assert (u - u_fused).abs().max() < 1e-10
    assert (u[:, :-1] - u2[:, :-1]).abs().max() < 1e-12
    assert (u[:, -1] - u2[:, -1]).abs().max() > 1e-3


def test_per_example_mask_in_block() -> None:
    torch.manual_seed(3)
    block = TransformerBlock(D, H, M).double().eval()
    n = 6
    keep = torch.ones(2, 1, n, n, dtype=torch.bool)
    keep[1, :, :, 3:] = False  # second sequence: the last 3 tokens are padding, nobody attends to them
    x = torch.randn(2, n, D, dtype=torch.float64)
    with torch.no_grad():
        z, alpha = block(x, mask=keep, return_attention=True)
        z_fused = block(x, mask=keep)
        z_short = block(x[1:, :3])  # the unpadded part alone
    assert alpha[1, :, :, 3:].abs().max() == 0
    assert (z - z_fused).abs().max() < 1e-10
    assert (z[1, :3] - z_short[0]).abs().max() < 1e-10


def test_permutation_equivariance() -> None:
    block = _random_block()
    x = torch.randn(1, 10, D, dtype=torch.float64)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (block(x[:, perm]) - block(x)[:, perm]).abs().max() < 1e-10


def test_sinusoidal_positions() -> None:
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    assert torch.allclose(pe[0, 0::2], torch.zeros(8)) and torch.allclose(pe[0, 1::2], torch.ones(8))
    assert math.isclose(pe[3, 0].item(), math.sin(3.0), abs_tol=1e-6)
    assert math.isclose(pe[3, 3].item(), math.cos(3.0 / 10000 ** (2 / 16)), abs_tol=1e-6)
    assert torch.cdist(pe, pe).add(torch.eye(50)).min() > 0.1  # every position has its own code
    assert sinusoidal_positions(5, 7).shape == (5, 7)  # odd d works


def test_bad_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        TransformerBlock(D, H, M, activation="tanh")


def _lecture_params(d: int = D, H: int = H, m: int = M, seed: int = 0) -> dict:
    """Random weights in the lecture's shapes (float64), LayerNorms away from 1 and 0."""
    g = torch.Generator().manual_seed(seed)
    k = d // H
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64) / math.sqrt(s[-2] if len(s) > 1 else 1)
    return {"W_q": r(H, d, k), "W_k": r(H, d, k), "W_v": r(H, d, k), "W_c": r(H, k, d),
            "gamma_1": 1 + 0.1 * r(d), "beta_1": 0.1 * r(d), "W_1": r(d, m), "W_2": r(m, d),
            "gamma_2": 1 + 0.1 * r(d), "beta_2": 0.1 * r(d)}


def test_causal_mask_matches_sdpa_is_causal() -> None:
    mask = causal_mask(5)
    assert mask.dtype == torch.bool and mask[2, :3].all() and not mask[2, 3:].any()
    q, k, v = (torch.randn(2, 4, 7, 8, dtype=torch.float64) for _ in range(3))
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(7))
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (ours - theirs).abs().max() < 1e-12


def test_cross_attention_matches_multihead_attention() -> None:
    P = _lecture_params()
    mha = load_lecture_params(MultiHeadAttention(D, H, use_sdpa=False).double(), P)
    ref = load_lecture_params(nn.MultiheadAttention(D, H, bias=False, batch_first=True, dtype=torch.float64), P)
    y, mem = torch.randn(2, 5, D, dtype=torch.float64), torch.randn(2, 9, D, dtype=torch.float64)
    with torch.no_grad():
        u, alpha = mha(y, memory=mem, return_attention=True)
        u_ref, alpha_ref = ref(y, mem, mem, average_attn_weights=False)
        u_fused = load_lecture_params(MultiHeadAttention(D, H).double(), P)(y, memory=mem)
    assert (u_fused - u_ref).abs().max() < 1e-10
    assert alpha.shape == (2, H, 5, 9) and u.shape == (2, 5, D)
    assert (u - u_ref).abs().max() < 1e-10 and (alpha - alpha_ref).abs().max() < 1e-12


def test_decoder_block_equals_pytorch_decoder_layer() -> None:
    P, C = _lecture_params(seed=1), _lecture_params(seed=2)
    cross = {"W_q": C["W_q"], "W_k": C["W_k"], "W_v": C["W_v"], "W_c": C["W_c"], "gamma": C["gamma_1"],
             "beta": C["beta_1"]}
    ours = load_lecture_params(DecoderBlock(D, H, M).double(), P, cross)
    ref = load_lecture_params(nn.TransformerDecoderLayer(D, H, M, dropout=0.0, batch_first=True,
                                                         dtype=torch.float64), P, cross)
    y, mem = torch.randn(3, 6, D, dtype=torch.float64), torch.randn(3, 4, D, dtype=torch.float64)
    with torch.no_grad():
        z, alpha = ours(y, mem, return_attention=True)
        z_ref = ref(y, mem, tgt_mask=~causal_mask(6), tgt_is_causal=True)
        z_fused = ours(y, mem)
        y2 = y.clone()
        y2[:, -1] += 3.0  # the future does not change the past
        z2 = ours(y2, mem)
    assert (z - z_ref).abs().max() < 1e-10 and (z_fused - z_ref).abs().max() < 1e-10
    assert alpha.shape == (3, H, 6, 4)
    assert (z[:, :-1] - z2[:, :-1]).abs().max() < 1e-12
    with pytest.raises(ValueError, match="cross"):
        load_lecture_params(DecoderBlock(D, H, M).double(), P)


def test_lecture_params_into_encoder_layer_and_block() -> None:
    P = _lecture_params(seed=3)
    block = load_lecture_params(TransformerBlock(D, H, M).double(), P)
    ref = load_lecture_params(nn.TransformerEncoderLayer(D, H, M, dropout=0.0, batch_first=True,
                                                         dtype=torch.float64), P)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    with torch.no_grad():
        assert (block(x) - ref(x)).abs().max() < 1e-10
    assert torch.equal(stack_heads(P["W_q"])[:D // H], P["W_q"][0].T)  # head 0 first, as nn.Linear keeps W^T

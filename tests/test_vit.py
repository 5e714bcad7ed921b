"""Tests for aria_utils.vit: patches, the ViT, attention rollout, object share, timm attention hooks."""
import math

import pytest
import torch

from aria_utils import vit as V


def test_patchify_order_and_shape():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float).reshape(2, 1, 8, 8)
    p = V.patchify(x, 4)
    assert p.shape == (2, 4, 16)
    assert torch.equal(p[:, 0], x[:, :, :4, :4].flatten(1))  # top-left first
    assert torch.equal(p[:, 1], x[:, :, :4, 4:].flatten(1))  # then to the right
    assert torch.equal(p[:, 2], x[:, :, 4:, :4].flatten(1))  # then the next row
    with pytest.raises(ValueError):
        V.patchify(x, 3)


def test_vit_shapes_attention_and_sdpa_agree():
    torch.manual_seed(0)
    m = V.ViT(image_size=16, patch=4, d=32, depth=3, H=4).eval()
    x = torch.rand(5, 1, 16, 16)
    logits, alphas = m(x, return_attention=True)
    assert logits.shape == (5, 10) and alphas.shape == (5, 3, 4, 17, 17)
    assert torch.allclose(alphas.sum(-1), torch.ones(5, 3, 4, 17), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(m(x), logits, atol=1e-5)  # fused kernel == explicit softmax path
    assert torch.allclose(m.get_attention_maps(x, batch_size=2), alphas.detach(), atol=1e-6)
    with pytest.raises(ValueError):
        m(torch.rand(2, 1, 12, 12))
    with pytest.raises(ValueError):
        V.ViT(image_size=15, patch=4)


def test_vit_learns_where_the_bright_square_is():
    """A tiny check that the model trains: left vs right bright square."""
    torch.manual_seed(0)
    n = 128
    y = torch.randint(0, 2, (n,))
    x = torch.zeros(n, 1, 8, 8)
    for i in range(n):
        c = 4 * int(y[i]) + int(torch.randint(0, 3, (1,)))
        x[i, 0, 2:5, c:c + 2] = 1.0
    m = V.ViT(image_size=8, patch=2, d=16, depth=1, H=2, n_classes=2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(50):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (m(x).argmax(-1) == y).float().mean() > 0.95


def test_rollout_rows_sum_to_one_and_small_cases():
    torch.manual_seed(0)
    alphas = torch.rand(2, 3, 4, 6, 6).softmax(-1)
    R = V.attention_rollout(alphas)
    assert R.shape == (2, 6, 6)
    assert torch.allclose(R.sum(-1), torch.ones(2, 6), atol=1e-6)
    # one layer, no residual: the head average
    assert torch.allclose(V.attention_rollout(alphas[:, :1], residual=0.0), alphas[:, 0].mean(1), atol=1e-6)
    # two layers by hand: later layer on the left
    A1 = 0.5 * alphas[:, 0].mean(1) + 0.5 * torch.eye(6)
    A2 = 0.5 * alphas[:, 1].mean(1) + 0.5 * torch.eye(6)
    assert torch.allclose(V.attention_rollout(alphas[:, :2]), A2 @ A1, atol=1e-6)
    with pytest.raises(ValueError):
        V.attention_rollout(alphas[0])


def test_cls_to_patches_and_object_share():
    attn = torch.rand(3, 5, 5).softmax(-1)
    maps = V.cls_to_patches(attn)
    assert maps.shape == (3, 2, 2)
    assert torch.allclose(maps.sum((-2, -1)), torch.ones(3), atol=1e-6)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True  # the object fills the top-left patch
    masks[1, 4:6, 4:8] = True  # and half of the bottom-right one
    uniform = torch.full((2, 2, 2), 0.25)
    on, share = V.object_share(uniform, masks)
    assert torch.allclose(on, share)  # uniform attention: attention share == pixel share
    assert torch.allclose(share, torch.tensor([0.25, 0.375]))
    focused = torch.zeros(2, 2, 2)
    focused[:, 0, 0] = 1.0
    on, _ = V.object_share(focused, masks)
    assert torch.allclose(on, torch.ones(2))
    with pytest.raises(ValueError):
        V.object_share(uniform, torch.zeros(2, 7, 7, dtype=torch.bool))


def test_timm_attention_maps_with_random_weights():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224.dino", pretrained=False, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    captured = {}
    blk = model.blocks[5]
    h = blk.attn.qkv.register_forward_hook(lambda mod, inp, out: captured.update(qkv=out.detach()))
    alphas = V.timm_attention_maps(model, x)
    h.remove()
    L, H, n = len(model.blocks), model.blocks[0].attn.num_heads, 1 + (64 // 16) ** 2
    assert alphas.shape == (2, L, H, n, n)
    assert torch.allclose(alphas.sum(-1), torch.ones(2, L, H, n), atol=1e-5)
    # the hooked matrix is softmax(q k^T / sqrt(k)) recomputed from the block's own q, k
    q, k, _ = captured["qkv"].reshape(2, n, 3, H, -1).permute(2, 0, 3, 1, 4)
    alpha = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    assert torch.allclose(alphas[:, 5], alpha, atol=1e-5)
    assert all(b.attn.fused_attn == model.blocks[0].attn.fused_attn for b in model.blocks)
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-4)  # hooks gone, output unchanged
    with pytest.raises(TypeError):
        V.timm_attention_maps(torch.nn.Linear(3, 3), x)


def test_upsample_maps():
    maps = torch.arange(4.0).reshape(1, 2, 2)
    up = V.upsample_maps(maps, 4)
    assert up.shape == (1, 4, 4) and up[0, 0, 1] == 0 and up[0, 3, 3] == 3


def test_cls_attention_matches_rollout_and_layers():
    torch.manual_seed(0)
    m = V.ViT(image_size=16, patch=4, d=16, depth=2, H=2)
    x = torch.rand(5, 1, 16, 16)
    layers, rolled = V.cls_attention(m, x, batch_size=2)
    assert layers.shape == (5, 2, 2, 4, 4) and rolled.shape == (5, 4, 4)
    alphas = m.get_attention_maps(x)
    assert torch.allclose(layers, V.cls_to_patches(alphas), atol=1e-6)
    assert torch.allclose(rolled, V.cls_to_patches(V.attention_rollout(alphas)), atol=1e-6)


def test_content_maps_spread_evenly_over_non_empty_patches():
    fg = torch.zeros(3, 8, 8, dtype=torch.bool)
    fg[0, 0, 0] = True  # one pixel in the top-left patch
    fg[1, 5, 1] = fg[1, 6, 6] = True  # one pixel in each bottom patch
    maps = V.content_maps(fg, 2)
    assert maps.shape == (3, 2, 2) and torch.allclose(maps.sum((-2, -1)), torch.ones(3))
    assert torch.equal(maps[0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(maps[1], torch.tensor([[0.0, 0.0], [0.5, 0.5]]))
    assert torch.equal(maps[2], torch.full((2, 2), 0.25))  # an empty image: uniform
    # with the object's mask, the baseline scores the object's pixels over the non-empty patches' pixels
    on, _ = V.object_share(maps[:2], fg[:2])
    assert torch.allclose(on, torch.tensor([1 / 16, 1 / 16]))
    with pytest.raises(ValueError):
        V.content_maps(fg, 3)

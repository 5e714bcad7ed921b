"""Tests for aria_utils.sam_toy: nested scenes, prompts, the promptable segmenter, SAM plumbing offline."""
import numpy as np
import pytest
import torch

from aria_utils import sam_toy as S


@pytest.fixture(scope="module")
def scenes():
    g = torch.Generator().manual_seed(0)
    items = torch.zeros(20, 28, 28, dtype=torch.uint8)  # solid blobs on black, like Fashion-MNIST items
    items[:, 4:24, 6:22] = (100 + torch.rand(20, 20, 16, generator=g) * 155).to(torch.uint8)
    return S.make_nested_scenes(items, 12, seed=3)


def test_scenes_are_nested(scenes):
    img, m = scenes["image"], scenes["masks"]
    assert img.shape == (12, 1, 48, 48) and m.shape == (12, 3, 48, 48) and m.dtype == torch.bool
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert (m[:, 1] <= m[:, 0]).all() and (m[:, 2] <= m[:, 1]).all()  # subpart in part in whole
    area = m.flatten(2).sum(-1)
    assert (area[:, 0] > area[:, 1]).all() and (area[:, 1] > area[:, 2]).all() and (area[:, 2] >= 36).all()
    items = torch.full((2, 28, 28), 200, dtype=torch.uint8)
    a, b = S.make_nested_scenes(items, 2, seed=3), S.make_nested_scenes(items, 2, seed=3)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])  # same seed, same scenes


def test_bad_items_raise():
    with pytest.raises(ValueError, match="28, 28"):
        S.make_nested_scenes(torch.zeros(3, 32, 32, dtype=torch.uint8), 1)
    with pytest.raises(ValueError, match="too thin"):
        S.make_nested_scenes(torch.zeros(3, 28, 28, dtype=torch.uint8), 1)  # black items: no part at all


def test_prompts_lie_in_their_region(scenes):
    m = scenes["masks"]
    g = torch.Generator().manual_seed(1)
    for level in range(3):
        pr = S.sample_prompts(m, level=level, generator=g)
        x, y = pr["point"][:, 0].long(), pr["point"][:, 1].long()
        region = S.point_regions(m)[torch.arange(len(m)), level]
        assert region[torch.arange(len(m)), y, x].all()
        assert (pr["target_level"] <= level).all()
        assert pr["valid"].sum(1).eq(level + 1).all()
        assert torch.equal(pr["target"], m[torch.arange(len(m)), pr["target_level"]])
    with pytest.raises(ValueError, match="level"):
        S.sample_prompts(m, level=3)


def test_gaussian_bump_peaks_at_point():
    bump = S.gaussian_bump(torch.tensor([[5.0, 9.0], [40.0, 2.0]]), 48)
    assert bump.shape == (2, 1, 48, 48)
    flat = bump.flatten(1).argmax(1)
    assert flat.tolist() == [9 * 48 + 5, 2 * 48 + 40] and torch.allclose(bump.amax((1, 2, 3)), torch.ones(2))


def test_mask_iou():
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True
    b = torch.zeros(4, 4, dtype=torch.bool)
    b[1:3] = True
    assert S.mask_iou(a, b).item() == pytest.approx(4 / 12, abs=1e-4)
    assert S.mask_iou(a, a).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_segmenter_shapes_and_gradients(scenes, k):
    torch.manual_seed(0)
    net = S.PromptableSegmenter(k=k)
    pts = torch.tensor([[10.0, 20.0], [30.0, 31.0]])
    logits, iou = net(scenes["image"][:2], pts)
    assert logits.shape == (2, k, 48, 48) and iou.shape == (2, k)
    assert ((0 <= iou) & (iou <= 1)).all()
    (logits.mean() + iou.mean()).backward()
    assert net.enc1[0].weight.grad.abs().sum() > 0 and net.prompt_encoder.embed[0].weight.grad.abs().sum() > 0
    probs, ious = S.predict_masks(net, scenes["image"][:3], torch.full((3, 2), 24.0), batch_size=2)
    assert probs.shape == (3, k, 48, 48) and ious.shape == (3, k)


def test_segmenter_uses_the_prompt(scenes):
    torch.manual_seed(0)
    net = S.PromptableSegmenter(k=3).eval()
    img = scenes["image"][:1]
    a, _ = net(img, torch.tensor([[5.0, 5.0]]))
    b, _ = net(img, torch.tensor([[40.0, 40.0]]))
    assert not torch.allclose(a, b)


def test_segmenter_rejects_bad_shapes(scenes):
    net = S.PromptableSegmenter(k=3)
    with pytest.raises(ValueError, match="image"):
        net(torch.zeros(2, 3, 48, 48), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="points"):
        net(scenes["image"][:2], torch.zeros(2, 3))
    with pytest.raises(ValueError):
        S.PromptableSegmenter(k=0)


def test_sam_predictor_plumbing_gives_three_masks():
    from segment_anything import SamPredictor

    predictor = SamPredictor(S.tiny_sam())
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    predictor.set_image(image)
    masks, scores = S.sam_point_masks(predictor, (20.0, 10.0))
    assert masks.shape == (3, 40, 56) and masks.dtype == bool
    assert scores.shape == (3,) and np.all(np.diff(scores) <= 0)


def test_sam_weights_offline_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="no network"):
        S.sam_vit_b_weights(tmp_path)
    with pytest.raises(ValueError, match="variant"):
        S.load_sam(tmp_path / "x.pth", variant="vit_xxl")


def test_sam_weights_found_locally_only_when_checksum_matches(tmp_path, monkeypatch):
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"not the real weights")
    with pytest.raises(ConnectionError):
        S.sam_vit_b_weights(tmp_path)
    monkeypatch.setattr(S, "SAM_VIT_B_SHA256", __import__("hashlib").sha256(b"not the real weights").hexdigest())
    assert S.sam_vit_b_weights(tmp_path) == tmp_path / "sam_vit_b_01ec64.pth"

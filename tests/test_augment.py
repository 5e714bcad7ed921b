"""Tests for aria_utils.augment: resized crops, flips, erasing and SimCLR's views (small and fast)."""
import pytest
import torch

from aria_utils import augment as A


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_resize_keeps_a_right_sized_batch_and_resizes_others():
    x = torch.rand(2, 1, 28, 28)
    assert A.resize(x, 28) is x
    assert A.resize(x, 32).shape == (2, 1, 32, 32)
    assert A.light_augment((x * 255).to(torch.uint8)[:, 0], 20).shape == (2, 1, 20, 20)


def test_crop_with_full_scale_and_no_flip_is_identity():
    x = torch.rand(4, 1, 28, 28)
    out = A.random_resized_crop(x, 28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-5)


def test_crop_flip_gives_identity_or_mirror():
    x = torch.rand(16, 1, 28, 28)
    out = A.random_resized_crop(x, 28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True,
                                generator=torch.Generator().manual_seed(1))
    same = [(torch.allclose(o, a, atol=1e-5), torch.allclose(o, a.flip(-1), atol=1e-5)) for o, a in zip(out, x)]
    assert all(s or m for s, m in same)
    assert any(m and not s for s, m in same) and any(s and not m for s, m in same)


@pytest.mark.parametrize("side, size", [(28, 20), (32, 32)])
def test_simclr_augment_shapes_range_and_randomness(side, size):
    x = (torch.rand(8, side, side) * 255).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    v1, v2 = A.simclr_augment(x, size, generator=g), A.simclr_augment(x, size, generator=g)
    assert v1.shape == (8, 1, size, size) and v1.dtype == torch.float32
    assert v1.min() >= 0 and v1.max() <= 1
    assert not torch.allclose(v1, v2)
    again = A.simclr_augment(x, size, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v1, again)


def test_simclr_augment_crops_only_is_the_resized_crop():
    """With strength, noise and erase 0 the view draws nothing beyond the crop's own numbers."""
    x = (torch.rand(16, 32, 32) * 255).to(torch.uint8)
    crops = A.simclr_augment(x, 24, (0.3, 1.0), strength=0, noise=0, erase=0,
                             generator=torch.Generator().manual_seed(3))
    ref = A.random_resized_crop(x.float().unsqueeze(1) / 255, 24, (0.3, 1.0),
                                generator=torch.Generator().manual_seed(3))
    assert torch.equal(crops, ref)


def test_random_erase_blanks_some_pixels():
    x = torch.ones(32, 1, 20, 20)
    out = A.random_erase(x, p=1.0, scale=(0.1, 0.1))
    frac = (out == 0).float().mean(dim=(1, 2, 3))
    assert torch.all(frac > 0.03) and torch.all(frac < 0.2)

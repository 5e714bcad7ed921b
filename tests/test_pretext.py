"""Tests for aria_utils.pretext: rotation prediction as a pretext task."""
import pytest
import torch

from aria_utils import pretext as PT


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("ARIA_CACHE", str(tmp_path / "cache"))


def test_rotate_batch_turns_each_image_by_its_label():
    x = torch.rand(32, 1, 8, 8)
    out, k = PT.rotate_batch(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and k.shape == (32,) and set(k.tolist()) == {0, 1, 2, 3}
    for i in range(32):
        assert torch.equal(out[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
    again, k2 = PT.rotate_batch(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, out) and torch.equal(k2, k)


def test_rotate_batch_needs_square_images():
    with pytest.raises(ValueError, match="square"):
        PT.rotate_batch(torch.rand(2, 1, 8, 6))


def test_rotation_is_learnable_and_cached(capsys):
    """An asymmetric image (bright top rows) makes the rotation easy to see; training beats chance and caches."""
    x = torch.zeros(256, 16, 16, dtype=torch.uint8)
    x[:, :4] = 255
    x[:, 4:, :3] = 120
    cfg = PT.RotationConfig(dim=16, width=4, size=16, epochs=6, batch_size=64, lr=5e-3, speed="test")
    net, meta = PT.train_rotation(cfg, x, progress=False)
    assert meta["loaded"] is False and sum(meta["history"]["logs"]["acc"][-3:]) / 3 > 0.5
    net2, meta2 = PT.train_rotation(cfg, x, progress=False)
    assert meta2["loaded"] is True and "[cache] loaded" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))

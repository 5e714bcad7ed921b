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


def test_grid_patch_cuts_the_cell_at_its_offset():
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32).repeat(2, 1, 1, 1)
    off = torch.tensor([[0, 0], [2, 1]])
    p = PT.grid_patch(x, 2, 0, 8, 10, off)
    assert p.shape == (2, 1, 8, 8)
    assert torch.equal(p[0, 0], x[0, 0, 21:29, 1:9]) and torch.equal(p[1, 0], x[1, 0, 23:31, 2:10])


def test_relative_position_batch_labels_the_neighbour_it_cut():
    """Each neighbour equals the patch of the cell its label names, at some offset inside that cell."""
    x = torch.rand(64, 1, 32, 32)
    c, n, y = PT.relative_position_batch(x, generator=torch.Generator().manual_seed(0))
    assert c.shape == n.shape == (64, 1, 8, 8) and set(y.tolist()) == set(range(8))
    for i in range(64):
        dr, dc = PT.NEIGHBOURS[int(y[i])]
        cands = [PT.grid_patch(x[i: i + 1], 1 + dr, 1 + dc, 8, 10, torch.tensor([[a, b]]))[0]
                 for a in range(3) for b in range(3)]
        assert any(torch.equal(n[i], q) for q in cands)
        assert any(torch.equal(c[i], PT.grid_patch(x[i: i + 1], 1, 1, 8, 10, torch.tensor([[a, b]]))[0])
                   for a in range(3) for b in range(3))
    with pytest.raises(ValueError, match="does not fit"):
        PT.relative_position_batch(torch.rand(2, 1, 24, 24))


def test_grid_features_concatenate_the_nine_patch_codes():
    enc = PT.RelativePositionNet(dim=8, width=4).encoder.eval()
    x = torch.rand(3, 1, 32, 32)
    f = PT.GridFeatures(enc)(x)
    assert f.shape == (3, 72)
    off = torch.ones(3, 2, dtype=torch.long)
    assert torch.allclose(f[:, 8:16], enc(PT.grid_patch(x, 0, 1, 8, 10, off)), atol=1e-6)


def test_relative_position_is_learnable_and_cached(capsys):
    """Cells of distinct brightness make the position easy to see; training beats twice chance (1/8) and caches."""
    g = torch.Generator().manual_seed(0)
    levels = torch.arange(9, dtype=torch.float32).reshape(3, 3) * 28
    base = levels.repeat_interleave(10, 0).repeat_interleave(10, 1)                         # [30, 30]
    x = torch.zeros(512, 32, 32)
    x[:, 1:31, 1:31] = base
    x = (x + 10 * torch.rand(x.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    cfg = PT.RelativePositionConfig(dim=16, width=4, epochs=8, batch_size=64, lr=5e-3, speed="test")
    net, meta = PT.train_relative_position(cfg, x, progress=False)
    assert meta["loaded"] is False and PT.relative_position_accuracy(net, x[:256]) > 0.25   # chance 0.125
    net2, meta2 = PT.train_relative_position(cfg, x, progress=False)
    assert meta2["loaded"] is True and "[cache] loaded" in capsys.readouterr().out

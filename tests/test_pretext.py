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


# ----------------------------------------------------------------------------- 04's protocol plumbing, unrelated pretext

def test_frozen_eval_matches_the_protocol_caches_and_spreads(capsys):
    from test_protocol import tiny_data
    from aria_utils import protocol as P

    data = tiny_data(100, 10)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 16)).eval()
    fe = PT.FrozenEval(data)
    s = fe.scores(enc)
    ref = P.evaluate_representation(enc, data)
    assert {k: s[k] for k in ref} == ref                                   # the protocol's figures, unchanged
    assert {"probe_n10_d1", "probe_n10_d2", "knn_n100_d2"} <= set(s)
    assert fe.scores(enc) == s and "[cache] loaded" in capsys.readouterr().out
    mean, sd = fe.spread(s, "probe_n10")
    vals = torch.tensor([s["probe_n10"], s["probe_n10_d1"], s["probe_n10_d2"]])
    assert abs(mean - vals.mean().item()) < 1e-6 and abs(sd - vals.std(unbiased=False).item()) < 1e-6
    few = fe.scores(enc, few=True)
    assert "probe_all" not in few and few["probe_n10"] == s["probe_n10"]
    assert PT.weights_tag(enc) != PT.weights_tag(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 16)))


def test_evaluate_features_needs_every_pool_encoded():
    from test_protocol import tiny_data
    from aria_utils import protocol as P

    data = tiny_data(20, 4)
    feats = P.frozen_features(P.pixels, data)
    with pytest.raises(ValueError, match="not encoded"):
        P.evaluate_features({**feats, "index": feats["index"][:5], "train": feats["train"][:5]}, data)
    draws = P.pool_draws(data, 10)
    assert torch.equal(draws["n10_d0"], data.pools["n10"]) and not torch.equal(draws["n10_d1"], draws["n10_d0"])


def test_scene_backgrounds_name_the_photograph_behind_each_scene():
    """The photograph scene_backgrounds names, cropped where make_scenes crops, is the scene's background."""
    from aria_utils import protocol as P
    from aria_utils.data import load_fashion_mnist, per_class_subset
    from aria_utils.scenes import background_photos, make_scenes

    which = P.scene_backgrounds("test", 2)
    x, y = load_fashion_mnist("test")
    idx = per_class_subset(y, 2, seed=P.POOL_SEED)
    d = make_scenes(x[idx], y[idx], canvas=32, scale=P.SCENE_SCALE, clutter=P.SCENE_CLUTTER, seed=P.SCENE_SEEDS["test"])
    g = torch.Generator().manual_seed(P.SCENE_SEEDS["test"] + 1)
    torch.randint(0, 8, (len(idx),), generator=g)
    u = torch.rand(len(idx), 2, generator=g)
    photos = background_photos()
    assert len(which) == len(idx) == 20 and len(set(which.tolist())) > 3
    for i in range(len(idx)):
        p = photos[int(which[i])]
        y0, x0 = int(u[i, 0] * (p.shape[0] - 31)), int(u[i, 1] * (p.shape[1] - 31))
        bg = P.SCENE_CLUTTER * p[y0:y0 + 32, x0:x0 + 32]
        off = ~d["mask"][i]
        assert torch.allclose(d["image"][i, 0][off], bg[off])


def test_background_pretext_learns_a_label_that_comes_with_the_data():
    g = torch.Generator().manual_seed(0)
    photo = torch.randint(0, 4, (256,), generator=g)
    x = (photo.float()[:, None, None] * 60 + 20 * torch.rand(256, 16, 16, generator=g)).to(torch.uint8)
    cfg = PT.BackgroundConfig(dim=16, width=4, size=16, n_photos=4, epochs=8, batch_size=64, lr=5e-3, speed="test")
    net, meta = PT.train_background(cfg, x, photo, progress=False)
    with torch.no_grad():
        assert (net(x.float()[:, None] / 255).argmax(1) == photo).float().mean() > 0.6     # chance 0.25


@pytest.mark.parametrize("name", ["pretext_relpos_20ep", "pretext_background_3ep", "simclr_finetune_seeds"])
def test_shipped_networks_load_with_their_records(name):
    if not PT.shipped_path(name).exists():
        pytest.skip(f"{name} not made yet")
    net, meta = PT.load_shipped(name)
    assert not net.training and {"command", "seconds", "cpu", "torch"} <= set(meta)
    if name == "simclr_finetune_seeds":
        assert len(meta["results"]["finetune"]["10"]) == 3 and set(meta["results"]["scratch"]["10"]) == {"150", "300"}

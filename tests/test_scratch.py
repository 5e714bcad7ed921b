"""Tests for 01's offline "very similar" target (photo crops) and the from-scratch reference."""
import pytest
import torch

from aria_utils import data, scratch as S
from aria_utils.checkpoints import CheckpointError, save_checkpoint


def test_photo_crops_shapes_labels_and_determinism():
    x, y = data.photo_crops(3, "train")
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [3] * len(data.PHOTO_CLASSES)
    x2, _ = data.photo_crops(3, "train")
    assert torch.equal(x, x2)
    xt, _ = data.photo_crops(3, "test")
    assert not torch.equal(x, xt)
    with pytest.raises(ValueError, match="split"):
        data.photo_crops(3, "val")


def test_photo_crops_come_from_their_bands(monkeypatch):
    """Train crops lie in even bands, test crops in odd ones: on a photo whose rows encode their band, a train
    crop sees only even band values and a test crop only odd ones."""
    H, W, stripes = 600, 400, 6
    band = (torch.arange(H) // (H // stripes)).view(H, 1).expand(H, W)
    photo = (band * 40).to(torch.uint8)[..., None].expand(H, W, 3).numpy()
    monkeypatch.setattr(data, "load_photo", lambda name: photo)
    for split, parity in (("train", 0), ("test", 1)):
        x, _ = data.photo_crops(4, split, side=32)
        vals = set((x[:, 0].float() / 40).round().int().unique().tolist())
        assert vals and all(v % 2 == parity for v in vals), (split, vals)


def test_scratch_cnn_and_train_scratch_run():
    torch.manual_seed(0)
    for c, size in ((1, 28), (3, 32)):
        m = S.scratch_cnn(c, 10)
        x = torch.randint(0, 255, (16, size, size) if c == 1 else (16, c, size, size), dtype=torch.uint8)
        y = torch.randint(0, 10, (16,))
        h = S.train_scratch(m, x, y, steps=3, progress=False)
        assert h.steps == 3 and all(torch.isfinite(torch.tensor(h.loss)))
        assert m(torch.rand(2, c, size, size)).shape == (2, 10)


def test_load_shipped_scratch_checks_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "shipped_path", lambda target, n=1000: tmp_path / f"{target}_{n}.pt")
    with pytest.raises(FileNotFoundError, match="aria_utils.scratch"):
        S.load_shipped_scratch("fashion_mnist", 1, 10)
    save_checkpoint(tmp_path / "fashion_mnist_1000.pt", S.scratch_cnn(1, 10), S.scratch_config("photo_crops", 5, 0))
    with pytest.raises(CheckpointError, match="another network"):
        S.load_shipped_scratch("fashion_mnist", 1, 10)
    save_checkpoint(tmp_path / "fashion_mnist_100.pt", S.scratch_cnn(1, 10), S.scratch_config("fashion_mnist", 5, 0))
    with pytest.raises(CheckpointError, match="another network"):  # trained on 1000 per class, not 100
        S.load_shipped_scratch("fashion_mnist", 1, 10, n=100)
    with pytest.raises(ValueError, match="No network is shipped"):
        S.load_shipped_scratch("fashion_mnist", 1, 10, n=20)


@pytest.mark.parametrize("n", sorted(S.SHIPPED_EPOCHS))
@pytest.mark.parametrize("target,channels", [("fashion_mnist", 1), ("photo_crops", 3)])
def test_shipped_scratch_networks_load(target, channels, n):
    m, meta = S.load_shipped_scratch(target, channels, 10, n)
    assert meta["config"]["n"] == n and "command" in meta and len(meta["loss"]) == meta["config"]["steps"]
    assert meta["config"]["steps"] == S.SHIPPED_EPOCHS[n] * (n * 10 // S.RECIPE["batch_size"])


def test_cli_rejects_a_training_of_no_epochs():
    with pytest.raises(SystemExit):
        S.main(["--n", "100", "--epochs", "0"])


@pytest.mark.parametrize("target", sorted(S.TUNED))
def test_shipped_grid_results_load(target):
    for draw in range(3):
        res, meta = S.load_grid(target, draw)
        assert res["target"] == target and res["draw"] == draw and "command" in meta
        assert set(res["n20"]["tune"]) == {str(s) for s in S.TUNED[target]}
        assert set(res["n1000"]["tune"]) == {str(s) for s in S.TUNED[target]}
        assert 0 < res["n20"]["scratch"] <= 1 and res["n20"]["chosen"] in res["n20"]["stages"]
    assert "head" in S.load_grid(target, 0)[0]["n1000"]["stages"]


def test_load_grid_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "grid_path", lambda target, draw: tmp_path / f"{target}_{draw}.pt")
    with pytest.raises(FileNotFoundError, match="--grid fashion_mnist --draws 1"):
        S.load_grid("fashion_mnist", 1)

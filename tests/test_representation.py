"""Tests for aria_utils.representation: augmentations, NT-Xent, models, protocol, trainers (small and fast)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aria_utils import representation as R


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("ARIA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ARIA_SPEED", "fast")


def tiny_data(n_train_per_class: int = 100, n_test_per_class: int = 10, seed: int = 0) -> R.EvalData:
    """Ten classes of 28x28 images: a bright bar at a class-dependent position, plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(10).repeat_interleave(n)
        x = torch.rand(len(y), 28, 28, generator=g) * 60
        for i, c in enumerate(y.tolist()):
            x[i, 2 + 2 * c: 5 + 2 * c, 4:24] += 180
        return x.clamp(0, 255).to(torch.uint8), y

    x_tr, y_tr = make(n_train_per_class)
    x_te, y_te = make(n_test_per_class)
    pools = {f"n{n}": R.per_class_subset(y_tr, min(n, n_train_per_class)) for n in (10, 100)}
    pools["all"] = torch.arange(len(y_tr))
    return R.EvalData(x_tr, y_tr, x_te, y_te, pools)


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent straight from the SimCLR paper's formula, one term l(i, j) at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        num = torch.exp(z[i] @ z[j] / tau)
        den = sum(torch.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        total = total - torch.log(num / den)
    return total / n2


def test_crop_with_full_scale_and_no_flip_is_identity():
    x = torch.rand(4, 1, 28, 28)
    out = R.random_resized_crop(x, 28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-5)


def test_crop_flip_gives_identity_or_mirror():
    x = torch.rand(16, 1, 28, 28)
    out = R.random_resized_crop(x, 28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True,
                                generator=torch.Generator().manual_seed(1))
    same = [(torch.allclose(o, a, atol=1e-5), torch.allclose(o, a.flip(-1), atol=1e-5)) for o, a in zip(out, x)]
    assert all(s or m for s, m in same)
    assert any(m and not s for s, m in same) and any(s and not m for s, m in same)


def test_simclr_augment_shapes_range_and_randomness():
    x = (torch.rand(8, 28, 28) * 255).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    v1, v2 = R.simclr_augment(x, 20, generator=g), R.simclr_augment(x, 20, generator=g)
    assert v1.shape == (8, 1, 20, 20) and v1.dtype == torch.float32
    assert v1.min() >= 0 and v1.max() <= 1
    assert not torch.allclose(v1, v2)
    again = R.simclr_augment(x, 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v1, again)


def test_random_erase_blanks_some_pixels():
    x = torch.ones(32, 1, 20, 20)
    out = R.random_erase(x, p=1.0, scale=(0.1, 0.1))
    frac = (out == 0).float().mean(dim=(1, 2, 3))
    assert torch.all(frac > 0.03) and torch.all(frac < 0.2)


def test_nt_xent_matches_the_formula_term_by_term():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    for tau in (0.1, 0.5, 1.0):
        assert torch.allclose(R.nt_xent(z1, z2, tau), nt_xent_loop(z1, z2, tau), atol=1e-5)


def test_nt_xent_small_when_views_agree_and_others_differ():
    z = torch.eye(6) * 3
    low = R.nt_xent(z, z, tau=0.1)
    high = R.nt_xent(z, z.roll(1, dims=0), tau=0.1)
    assert low < 0.01 < high
    assert math.isclose(R.nt_xent(torch.ones(4, 3), torch.ones(4, 3), 0.5).item(), math.log(7), rel_tol=1e-5)


def test_encoder_decoder_shapes():
    phi, psi = R.ConvEncoder(dim=16, width=8), R.ConvDecoder(dim=16, width=8)
    for side in (28, 20):
        z = phi(torch.rand(3, 1, side, side))
        assert z.shape == (3, 16)
    x_hat = psi(z)
    assert x_hat.shape == (3, 1, 20, 20) and x_hat.min() >= 0 and x_hat.max() <= 1
    with pytest.raises(ValueError, match="multiple of 4"):
        R.ConvEncoder(size=22)


def test_reconstruction_loss_is_squared_norm_per_image():
    x = torch.zeros(2, 1, 4, 4)
    x_hat = torch.ones(2, 1, 4, 4)
    assert R.reconstruction_loss(x_hat, x).item() == 16.0


def test_evaluate_representation_protocol_keys_and_sanity():
    data = tiny_data()
    res = R.evaluate_representation(R.pixels, data)
    assert list(res) == ["probe_n10", "probe_n100", "probe_all", "knn_n10", "knn_n100", "knn_all"]
    assert all(0.0 <= v <= 1.0 for v in res.values())
    assert res["probe_all"] > 0.9 and res["knn_all"] > 0.9       # the classes are easy for pixels
    constant = R.evaluate_representation(lambda x: torch.zeros(len(x), 4), tiny_data(10, 10))
    assert constant["knn_all"] < 0.3                              # no information, near chance


def test_evaluate_representation_rejects_bad_encoders():
    data = tiny_data(12, 2)
    with pytest.raises(ValueError, match="encode"):
        R.evaluate_representation(lambda x: torch.zeros(3), data)


def test_default_pools_are_fixed_and_nested_sizes():
    data = R.load_eval_data()
    assert len(data.pools["n10"]) == 100 and len(data.pools["n100"]) == 1000
    assert len(data.pools["all"]) == 10000 and len(data.y_test) == 2000       # fast speed
    assert torch.equal(data.pools["n10"], R.load_eval_data().pools["n10"])
    assert torch.bincount(data.y_train[data.pools["n100"]]).tolist() == [100] * 10


def test_supervised_baseline_learns_and_caches(capsys):
    data = tiny_data()
    make = lambda: R.ConvEncoder(dim=16, width=8)  # noqa: E731
    acc = R.supervised_baseline(make, 10, data, steps=60, batch_size=50, augment_size=None,
                                config={"encoder": "tiny"}, progress=False)
    assert acc > 0.5
    again = R.supervised_baseline(make, 10, data, steps=60, batch_size=50, augment_size=None,
                                  config={"encoder": "tiny"}, progress=False)
    assert "[cache] loaded" in capsys.readouterr().out and again == acc


def test_train_autoencoder_reduces_loss_and_is_cached(capsys):
    images = tiny_data(20, 1).x_train
    cfg = R.AEConfig(dim=8, width=8, epochs=3, batch_size=50, speed="test")
    model, meta = R.train_autoencoder(cfg, images=images, progress=False)
    losses = meta["history"]["loss"]
    assert not meta["loaded"] and losses[-1] < losses[0]
    model2, meta2 = R.train_autoencoder(cfg, images=images, progress=False)
    assert meta2["loaded"]
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model(x), model2(x))


def test_train_simclr_runs_and_shipped_checkpoint_roundtrip(tmp_path, monkeypatch):
    images = tiny_data(10, 1).x_train
    cfg = R.SimCLRConfig(dim=16, width=8, proj_dim=8, epochs=1, batch_size=25, speed="test")
    steps = []
    model, meta = R.train_simclr(cfg, images=images, progress=False, cache=False,
                                 on_step=lambda m, s: steps.append(s))
    assert steps == [0, 1, 2, 3] and all(math.isfinite(v) for v in meta["history"]["loss"])
    monkeypatch.setattr(R, "CHECKPOINT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="train-simclr"):
        R.load_shipped_simclr(3)
    R.save_checkpoint(R.shipped_simclr_path(3), model, cfg.to_dict(), {"note": "test"})
    loaded, info = R.load_shipped_simclr(3)
    assert info["config"] == cfg and info["note"] == "test"
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    assert torch.allclose(loaded(x), model(x))


def test_cli_writes_a_checkpoint_that_loads_with_weights_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "CHECKPOINT_DIR", tmp_path)
    assert R._cli(["train-simclr", "--epochs", "0.004"]) == 0           # one step on Fashion-MNIST
    model, info = R.load_shipped_simclr(0.004)
    assert info["history"]["steps"] == 1 and isinstance(info["torch"], str)
    assert "saved" in capsys.readouterr().out

"""Tests for aria_utils.representation: NT-Xent, models, trainers, shipped checkpoint and CLI (small and fast)."""
import math

import pytest
import torch
import torch.nn.functional as F

from aria_utils import protocol as P
from aria_utils import representation as R
from test_protocol import tiny_data


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("ARIA_SPEED", "fast")


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
    for side in (32, 28, 20):
        z = phi(torch.rand(3, 1, side, side))
        assert z.shape == (3, 16)
    x_hat = psi(z)
    assert x_hat.shape == (3, 1, 32, 32) and x_hat.min() >= 0 and x_hat.max() <= 1
    assert R.ConvDecoder(dim=16, width=8, size=20)(z).shape == (3, 1, 20, 20)
    with pytest.raises(ValueError, match="multiple of 4"):
        R.ConvEncoder(size=22)


def test_reconstruction_loss_is_squared_norm_per_image():
    x = torch.zeros(2, 1, 4, 4)
    x_hat = torch.ones(2, 1, 4, 4)
    assert R.reconstruction_loss(x_hat, x).item() == 16.0


def test_simclr_loss_crops_only_runs_and_bad_augment_raises():
    cfg = R.SimCLRConfig(dim=16, width=8, proj_dim=8)
    loss = R.simclr_loss_fn(24, 0.2, augment="crops")(R.make_simclr(cfg), tiny_data(2, 1).x_train)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    with pytest.raises(ValueError, match="augment"):
        R.simclr_loss_fn(24, 0.2, augment="colour")


def test_train_autoencoder_reduces_loss_and_is_cached():
    images = tiny_data(20, 1).x_train
    cfg = R.AEConfig(dim=8, width=8, epochs=3, batch_size=50, speed="test")
    model, meta = R.train_autoencoder(cfg, images, progress=False)
    losses = meta["history"]["loss"]
    assert not meta["loaded"] and losses[-1] < losses[0]
    model2, meta2 = R.train_autoencoder(cfg, images, progress=False)
    assert meta2["loaded"]
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(model(x), model2(x))


def test_train_simclr_runs_and_shipped_checkpoint_roundtrip(tmp_path, monkeypatch):
    images = tiny_data(10, 1).x_train
    cfg = R.SimCLRConfig(dim=16, width=8, proj_dim=8, epochs=1, batch_size=25, augment="crops", speed="test")
    model, meta = R.train_simclr(cfg, images, progress=False, cache=False)
    assert meta["history"]["steps"] == 4 and all(math.isfinite(v) for v in meta["history"]["loss"])
    monkeypatch.setattr(R, "CHECKPOINT_DIR", tmp_path)
    assert R.shipped_simclr_path(3) == tmp_path / "simclr_scenes_3ep.pt"
    with pytest.raises(FileNotFoundError, match="train-simclr"):
        R.load_shipped_simclr(3)
    R.save_checkpoint(R.shipped_simclr_path(3), model, cfg.to_dict(), {"note": "test"})
    loaded, info = R.load_shipped_simclr(3)
    assert info["config"] == cfg and info["note"] == "test"
    x = torch.rand(4, 1, 32, 32)
    model.eval()
    assert torch.allclose(loaded(x), model(x))


def test_cli_trains_on_train_scenes_and_writes_a_loadable_checkpoint(tmp_path, monkeypatch, capsys):
    calls, real = [], P.scene_images

    def few_scenes(split, per_class):
        calls.append((split, per_class))
        return real(split, 3)

    monkeypatch.setattr(R, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(P, "scene_images", few_scenes)
    monkeypatch.setenv("ARIA_THREADS", "1")
    assert R._cli(["train-simclr", "--epochs", "0.004"]) == 0                # one step
    assert calls == [("train", P.SCENE_TRAIN_PER_CLASS)]
    assert (tmp_path / "simclr_scenes_0.004ep.pt").exists()
    model, info = R.load_shipped_simclr(0.004)
    assert info["history"]["steps"] == 1 and info["threads"] == 1 and isinstance(info["torch"], str)
    assert info["config"].speed == "checkpoint"
    assert "saved" in capsys.readouterr().out


def test_spatial_autoencoder_shapes_and_code():
    m = R.make_autoencoder(R.AEConfig(spatial=4, width=8))
    x = torch.rand(3, 1, 32, 32)
    assert m.phi(x).shape == (3, 4, 8, 8) and m(x).shape == (3, 1, 32, 32)
    assert isinstance(m.phi, R.SpatialEncoder) and isinstance(m.psi, R.SpatialDecoder)
    assert R.make_autoencoder(R.AEConfig(dim=8, width=8)).phi(x).shape == (3, 8)


def test_train_ae_cli_ships_float16_checkpoints_that_load(tmp_path, monkeypatch, capsys):
    real = P.scene_images
    monkeypatch.setattr(R, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.setattr(P, "scene_images", lambda split, per_class: real(split, 3))
    monkeypatch.setenv("ARIA_THREADS", "1")
    assert R._cli(["train-ae", "--dim", "8", "16", "--epochs", "2", "--batch-size", "10"]) == 0
    assert R._cli(["train-ae", "--spatial", "4", "--noise", "0.1", "--epochs", "1", "--batch-size", "10"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae_scenes_d16.pt", "ae_scenes_d8.pt", "ae_scenes_dae_c4.pt"]
    model, info = R.load_shipped_autoencoder(16)
    assert info["config"].dim == 16 and info["config"].speed == "checkpoint" and info["seed"] == 0
    assert len(info["history"]["mse_per_pixel"]) == info["history"]["steps"] == 6
    assert "train-ae --dim 16" in info["command"] and info["threads"] == 1
    assert next(model.parameters()).dtype == torch.float32
    dae, dinfo = R.load_shipped_autoencoder(spatial=4, noise=0.1)
    assert dinfo["config"].noise == 0.1 and dae.phi(torch.rand(2, 1, 32, 32)).shape == (2, 4, 8, 8)
    with pytest.raises(FileNotFoundError, match="train-ae --dim 32"):
        R.load_shipped_autoencoder(32)
    assert "saved" in capsys.readouterr().out


@pytest.mark.parametrize("kw", [{"dim": 16}, {"dim": 32}, {"dim": 64}, {"dim": 128}, {"spatial": 16, "noise": 0.15}])
def test_shipped_autoencoders_load_with_their_recipe_and_curve(kw):
    model, info = R.load_shipped_autoencoder(**kw)
    cfg = info["config"]
    assert (cfg.spatial, cfg.noise) == (kw.get("spatial", 0), kw.get("noise", 0.0)) and cfg.seed == 0
    assert cfg.epochs == R.AE_RECIPE["epochs"] and cfg.batch_size == R.AE_RECIPE["batch_size"]
    assert len(info["history"]["mse_per_pixel"]) == info["history"]["steps"] > 0
    assert "train-ae" in info["command"] and info["seconds"] > 0
    assert R.shipped_ae_path(**kw).stat().st_size < 2e6

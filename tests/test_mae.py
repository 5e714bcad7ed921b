"""Tests of the miniature MAE: patches, masking, loss, the encoder on visible patches, training, checkpoints."""
import pytest
import torch

from aria_utils import mae as M


def test_patchify_round_trip_exact_and_layout():
    x = torch.rand(3, 1, 28, 28)
    p = M.patchify(x, 4)
    assert p.shape == (3, 49, 16)
    assert torch.equal(M.unpatchify(p, 4, 1), x)
    # patch 1 is the second patch of the first row: rows 0-3, columns 4-7
    assert torch.equal(p[0, 1], x[0, 0, 0:4, 4:8].reshape(-1))
    xc = torch.rand(2, 3, 8, 8)
    assert torch.equal(M.unpatchify(M.patchify(xc, 2), 2, 3), xc)
    with pytest.raises(ValueError):
        M.patchify(torch.rand(1, 1, 28, 28), 5)


def test_random_masking_keeps_lowest_noise_and_restores_order():
    z = torch.arange(2 * 8, dtype=torch.float).reshape(2, 8, 1).expand(-1, -1, 3).contiguous()
    noise = torch.rand(2, 8)
    vis, mask, ids_restore = M.random_masking(z, 0.75, noise)
    assert vis.shape == (2, 2, 3) and mask.shape == (2, 8)
    assert mask.sum(1).tolist() == [6.0, 6.0]
    for b in range(2):
        kept = noise[b].argsort()[:2]
        assert torch.equal(vis[b, :, 0], z[b, kept, 0])
        assert mask[b, kept].sum() == 0
    # un-shuffling with ids_restore puts tokens back in image order
    shuffled = torch.gather(z, 1, noise.argsort(1).unsqueeze(-1).expand(-1, -1, 3))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 3)), z)
    with pytest.raises(ValueError):
        M.random_masking(z, 1.0)


def test_masked_mse_ignores_visible_patches():
    pred, target = torch.zeros(1, 4, 2), torch.ones(1, 4, 2)
    target[0, 0] = 5.0  # a huge error on a visible patch must not count
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert M.masked_mse(pred, target, mask).item() == pytest.approx(1.0)


def test_encoder_sees_only_visible_patches_and_decoder_outputs_all():
    torch.manual_seed(0)
    model = M.MAE(p=4, d=32, depth=2, H=2, d_dec=16, depth_dec=1, H_dec=2)
    x = torch.randn(2, 1, 28, 28)
    latent, mask, ids = model.encode(x, 0.75)
    assert latent.shape == (2, 1 + 12, 32)  # class token + 12 of 49 patches
    pred = model.decode(latent, ids)
    assert pred.shape == (2, 49, 16)
    loss, pred2, mask2 = model(x)
    assert loss.ndim == 0 and torch.isfinite(loss) and mask2.sum().item() == 2 * 37
    # the visible patches' content reaches the loss only through the encoder: changing a masked patch
    # of the input changes the target, not the encoder's output
    noise = torch.rand(2, 49)
    lat_a, mask_a, _ = model.encode(x, 0.75, noise)
    j = int(mask_a[0].argmax())  # a masked patch of image 0
    x2 = M.unpatchify(M.patchify(x, 4).index_put((torch.tensor([0]), torch.tensor([j])), torch.full((16,), 9.0)), 4)
    lat_b, _, _ = model.encode(x2, 0.75, noise)
    assert torch.allclose(lat_a, lat_b)


def test_features_and_flops():
    model = M.MAE(d=32, depth=2, H=2, d_dec=16, depth_dec=1, H_dec=2).eval()
    imgs = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert model.get_features(imgs).shape == (3, 32)
    assert model.get_features(imgs, pool="both").shape == (3, 64)
    assert model.get_features(imgs, layer=0).shape == (3, 32)
    assert model.get_features(imgs, layer="all").shape == (3, 64)
    f = M.MAEFeatures(model)(imgs.float() / 255)
    assert f.requires_grad and torch.allclose(f, model.get_features(imgs), atol=1e-5)
    assert M.MAEFeatures(model)(imgs).shape == (3, 32)
    with pytest.raises(ValueError):
        model.get_features(imgs, pool="max")
    cfg = M.MAEConfig(p=4)
    assert M.encoder_flops(cfg, 1 + 49) > 3.5 * M.encoder_flops(cfg, 1 + 12)
    assert M.MAE(M.MAEConfig()).L == 16  # the default: 7 x 7 patches


def test_training_lowers_loss_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    imgs = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    imgs[:, :, :10] = 0
    model = M.MAE(d=32, depth=1, H=2, d_dec=16, depth_dec=1, H_dec=2)
    hist = M.train_mae(model, imgs, steps=30, batch_size=32, lr=3e-3, warmup=5, progress=False)
    assert hist["steps"] == 30
    assert sum(hist["loss"][-5:]) < sum(hist["loss"][:5])
    from aria_utils.checkpoints import save_checkpoint
    cfg = {"mae": M.asdict(model.cfg)}
    save_checkpoint(tmp_path / "m.pt", model.half(), cfg)
    loaded, info = M.load_mae(tmp_path / "m.pt")
    assert info["config"] == cfg
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_standardise_uses_the_model_statistics():
    x = torch.full((2, 32, 32), 51, dtype=torch.uint8)            # 0.2 in [0, 1]
    assert torch.allclose(M.standardise(x, 0.2, 0.5), torch.zeros(2, 1, 32, 32))
    cfg = M.MAEConfig(img=32, p=4, d=32, depth=1, H=2, d_dec=16, depth_dec=1, H_dec=2, mean=M.SCENE_MEAN, std=M.SCENE_STD)
    model = M.MAE(cfg).eval()
    xf = torch.rand(3, 1, 32, 32)
    z, _, _ = model.encode(M.standardise(xf, M.SCENE_MEAN, M.SCENE_STD))
    assert model.L == 64 and torch.allclose(model.features(xf, pool="cls"), z[:, 0], atol=1e-6)


def test_cli_trains_on_scenes(tmp_path, monkeypatch):
    from aria_utils import protocol as P
    monkeypatch.setenv("ARIA_THREADS", "1")
    small = P.scene_images("train", 3)
    monkeypatch.setattr(P, "scene_images", lambda split, per_class: small)
    out = tmp_path / "mae_scenes.pt"
    assert M.main(["--data", "scenes", "--epochs", "0.5", "--batch-size", "8", "--out", str(out)]) == 0
    model, info = M.load_mae(out)
    assert (model.cfg.img, model.cfg.p, model.cfg.mean) == (32, 4, M.SCENE_MEAN)
    assert M.asdict(model.cfg) == M.asdict(M.scene_config())      # the notebook's model, 2-block decoder
    assert "--data scenes" in info["meta"]["command"]


def test_shipped_checkpoint_is_the_notebook_model():
    if not M.SHIPPED_CHECKPOINT.exists():
        pytest.skip("no shipped MAE checkpoint")
    model, info = M.load_mae(M.SHIPPED_CHECKPOINT)
    assert M.asdict(model.cfg) == M.asdict(M.scene_config())
    assert "--data scenes" in info["meta"]["command"]


def test_masked_error_and_finetune_vit_tiny():
    torch.manual_seed(0)
    cfg = M.scene_config(d=32, depth=1, H=2, d_dec=16, depth_dec=1, H_dec=2)
    x = torch.randint(0, 256, (40, 32, 32), dtype=torch.uint8)
    y = torch.arange(40) % 4
    assert M.masked_error(M.MAE(cfg), x, 0.75, batch_size=16) > 0
    model = M.vit_classifier(M.MAE(cfg), n_classes=4)
    assert model(x[:3].float()[:, None] / 255).shape == (3, 4)
    out = M.finetune_vit(model, x, y, x, y, steps=6, batch_size=8, warmup=2, eval_every=3, n_curve=16,
                         progress=False)
    assert out["curve_steps"] == [3, 6] and len(out["loss"]) == 6 and 0 <= out["acc"] <= 1


def test_sweep_and_finetune_cli_write_results(tmp_path, monkeypatch):
    from aria_utils import protocol as P
    monkeypatch.setenv("ARIA_THREADS", "1")
    small = P.scene_images("train", 3)
    monkeypatch.setattr(P, "scene_images", lambda split, per_class: small)
    out = tmp_path / "sweep.pt"
    assert M.main(["sweep", "--ratios", "0.5", "0.9", "--epochs", "1", "--draws", "2", "--per-class", "2",
                   "--out", str(out)]) == 0
    res = M.load_results(out)
    assert set(res["meta"]["results"]) == {"0.5", "0.9"} and len(res["meta"]["results"]["0.5"]["probe_n100"]) == 2
    out = tmp_path / "ft.pt"
    assert M.main(["finetune", "--arm", "scratch", "--steps", "2", "--seeds", "0", "1", "--per-class", "2",
                   "--out", str(out)]) == 0
    model, info = M.load_finetuned(out)
    assert set(info["meta"]["runs"]) == {"0", "1"} and "--arm scratch" in info["meta"]["command"]
    assert model(small[0][:2]).shape == (2, 10)

"""Tests for aria_utils.sam_toy, sam_figures and sam_real: nested scenes, prompts, the promptable segmenter, SAM plumbing offline."""
import numpy as np
import pytest
import torch

from aria_utils import sam_figures as SF, sam_real as SR, sam_toy as S


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

    predictor = SamPredictor(SR.tiny_sam())
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    predictor.set_image(image)
    masks, scores = SR.sam_point_masks(predictor, (20.0, 10.0))
    assert masks.shape == (3, 40, 56) and masks.dtype == bool
    assert scores.shape == (3,) and np.all(np.diff(scores) <= 0)


def test_sam_weights_offline_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="no network"):
        SR.sam_vit_b_weights(tmp_path)
    with pytest.raises(ValueError, match="variant"):
        SR.load_sam(tmp_path / "x.pth", variant="vit_xxl")


def test_sam_weights_found_locally_only_when_checksum_matches(tmp_path, monkeypatch):
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"not the real weights")
    with pytest.raises(ConnectionError):
        SR.sam_vit_b_weights(tmp_path)
    monkeypatch.setattr(SR, "SAM_VIT_B_SHA256", __import__("hashlib").sha256(b"not the real weights").hexdigest())
    assert SR.sam_vit_b_weights(tmp_path) == tmp_path / "sam_vit_b_01ec64.pth"


# ---- training, evaluation and the shipped networks of notebook 09 ------------------------------

def _square_case():
    m = torch.zeros(1, 16, 16, dtype=torch.bool)
    m[0, 4:10, 4:10] = True
    logits = torch.stack([torch.full((16, 16), 6.0), torch.where(m[0], 6.0, -6.0), torch.full((16, 16), -6.0)])[None]
    return logits, m


def test_sam_loss_min_reaches_the_best_mask_only_and_mean_reaches_all():
    logits, m = _square_case()
    for rule, reached in (("min", [False, True, False]), ("mean", [True, True, True])):
        x = logits.clone().requires_grad_(True)
        loss, k_star = S.sam_loss(x, torch.full((1, 3), 0.5), m, eps=0.0, lam=0.0, rule=rule)
        loss.backward()
        assert k_star.item() == 1
        assert [bool(x.grad[0, k].abs().max() > 0) for k in range(3)] == reached
    with pytest.raises(ValueError, match="rule"):
        S.sam_loss(logits, torch.zeros(1, 3), m, rule="max")


def test_sam_loss_matches_the_loop_formulation(scenes):
    g = torch.Generator().manual_seed(0)
    lg, sh = torch.randn(4, 3, 48, 48, generator=g), torch.rand(4, 3, generator=g)
    tg = scenes["masks"][:4, 1]
    for eps, lam in ((0.0, 0.0), (0.05, 1.0)):
        assert S.sam_loss(lg, sh, tg, eps, lam)[0].item() == pytest.approx(S.sam_loss_loop(lg, sh, tg, eps, lam).item(),
                                                                           abs=1e-5)


def test_warmup_loss_trains_the_annotators_level():
    logits, m = _square_case()
    x = logits.clone().requires_grad_(True)
    prompt = {"target": m, "target_level": torch.tensor([2])}
    loss, level = S.warmup_loss(x, torch.full((1, 3), 0.5), prompt, lam=0.0)
    loss.backward()
    assert level.tolist() == [2] and x.grad[0, 2].abs().max() > 0 and x.grad[0, :2].abs().max() == 0


def test_training_step_and_short_training(scenes):
    torch.manual_seed(0)
    net = S.PromptableSegmenter(k=3, widths=(4, 8, 8))
    step = S.make_training_step(1, S.sam_loss, eps=0.0)
    for _ in range(2):  # the warm-up step, then the minimum
        loss, logs = step(net, scenes["image"][:4], scenes["masks"][:4])
        assert torch.isfinite(loss) and sorted(logs) == ["wins_0", "wins_1", "wins_2"]
        assert sum(logs.values()) == pytest.approx(1.0)
    hist = S.train_segmenter(net, scenes, 3, seed=0, progress=False, eps=0.05, rule="mean")
    assert hist["steps"] == 3 and len(hist["logs"]["wins_0"]) == 3


def test_evaluation_of_a_perfect_and_a_blending_network(scenes):
    class Oracle(S.PromptableSegmenter):  # answers whole, part, subpart exactly; the score prefers the part
        def forward(self, image, points):
            masks = scenes["masks"][: len(image)].float()
            return (masks * 2 - 1) * 20, torch.tensor([[0.5, 0.9, 0.2]]).expand(len(image), 3)

    class Blend(S.PromptableSegmenter):  # one output: the average of the three valid masks
        def forward(self, image, points):
            p = scenes["masks"][: len(image)].float().mean(1, keepdim=True).clamp(1e-4, 1 - 1e-4)
            return torch.log(p / (1 - p)), torch.ones(len(image), 1)

    test = {"image": scenes["image"], "masks": scenes["masks"]}
    prompts = S.eval_prompts(scenes["masks"])
    ev = S.evaluate_segmenter(Oracle(k=3, size=48), test, prompts)
    assert ev[2]["iou"].shape == (12, 3, 3) and ev[2]["s_hat"].shape == (12, 3) and ev[2]["drawn"].shape == (12, 3)
    assert torch.allclose(S.best_of_k(ev, 2), torch.ones(3), atol=1e-4)
    r = S.ranking(ev, (0, 1, 2))
    assert r["always"].shape == (3,) and r["oracle"] >= r["top1"] and r["oracle"] >= r["always"].max()
    assert r["top1"].item() == pytest.approx(r["always"][1].item())  # the score always picks output 2
    assert S.ranking(ev, (0,))["top1_valid"].item() == 0.0 and S.ranking(ev, (0,))["always_valid"][0] == 1.0
    blend = S.evaluate_segmenter(Blend(k=1, size=48), test, prompts)[2]["blend"]
    assert (blend[:, 0] < 1e-3).all() and (blend[:, 1] > 0.1).all()  # at the average, far from each single mask


def test_cli_writes_a_checkpoint_that_loads(scenes, tmp_path, monkeypatch):
    monkeypatch.setattr(S, "nested_scene_sets", lambda n_train, n_test: (scenes, scenes))
    monkeypatch.setattr(S, "shipped_path", lambda variant, seed: tmp_path / f"sam_toy_{variant}_seed{seed}.pt")
    monkeypatch.setattr(S, "SCENES", {**S.SCENES, "size": 48})
    assert S.main(["--variants", "K3_mean", "--seeds", "1", "--steps", "2"]) == 0
    model, meta = S.load_shipped("K3_mean", 1, steps=2)
    assert model.k == 3 and next(model.parameters()).dtype == torch.float32 and not model.training
    assert meta["command"].endswith("--steps 2") and meta["history"]["steps"] == 2 and "trained_on" in meta
    with pytest.raises(FileNotFoundError, match="python -m aria_utils.sam_toy"):
        S.load_shipped("K1", 1)
    with pytest.raises(SystemExit):
        S.main(["--steps", "0"])


def test_figures_draw_headless(scenes):
    import matplotlib
    matplotlib.use("Agg")
    torch.manual_seed(0)
    one, three = S.PromptableSegmenter(k=1, size=48).eval(), S.PromptableSegmenter(k=3, size=48).eval()
    prompts = S.eval_prompts(scenes["masks"])
    SF.plot_ambiguous_points(scenes, prompts[2], one, three, rows=[0, 1])
    SF.draw_toy_prompt(scenes["image"][0], SF.subpart_centre(scenes["masks"][0]), one, three)
    x, y = SF.subpart_centre(scenes["masks"][0])
    assert scenes["masks"][0, 2, round(y * 47), round(x * 47)]
    ev = S.evaluate_segmenter(three, scenes, prompts)
    SF.plot_best_of_k({(v, lvl): torch.stack([S.best_of_k(ev, lvl)] * 2) for v in ("a", "b") for lvl in (1, 2)},
                     {"a": "A", "b": "B"})
    SF.plot_ranking({(g, s): S.ranking(ev, g) for g in [(0,), (0, 1, 2)] for s in (0, 1)}, {(0,): "one", (0, 1, 2): "all"})
    corr = SF.plot_score_vs_iou(ev)
    assert sorted(corr) == ["ambiguous", "ambiguous_expected", "unambiguous"]
    hist = {"loss": [1.0] * 30, "logs": {f"wins_{k}": [1 / 3] * 30 for k in range(3)}}
    meta = {"loss_every_10": [1.0] * 12, "wins_every_10": {f"wins_{k}": [1 / 3] * 12 for k in range(3)}}
    SF.plot_training({1: hist, 3: hist}, {1: meta, 3: meta}, warmup=5)


def test_download_with_progress_checks_before_writing(tmp_path, monkeypatch):
    import hashlib

    src = tmp_path / "weights.bin"
    src.write_bytes(b"x" * (3 * 2 ** 20 + 5))
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="Checksum"):
        SR.download_with_progress(src.as_uri(), "0" * 64, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    out = SR.download_with_progress(src.as_uri(), good, tmp_path / "good.bin")
    assert out.read_bytes() == src.read_bytes()
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    assert not SR.host_reachable(SR.SAM_VIT_B_URL)

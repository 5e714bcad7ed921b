"""Tests for aria_utils.multitask (scenes, label flags, batched multi-head prediction)."""
import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn as nn

from aria_utils import multitask as M


def _items(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 6:22, 8:20] = 200  # a bright rectangle: its mask and box are known
    return x, torch.randint(0, 10, (n,), generator=g)


def _photos() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(80, 90, generator=g) * 0.5, torch.rand(64, 64, generator=g) * 0.5]


def test_scenes_keep_mask_and_box_and_fill_background() -> None:
    x, y = _items()
    black = M.make_scenes(x, y, canvas=48, clutter=0.0, seed=3)
    d = M.make_scenes(x, y, canvas=48, clutter=0.8, seed=3, backgrounds=_photos())
    assert d["image"].shape == (12, 1, 48, 48) and d["mask"].dtype == torch.bool
    assert torch.equal(d["mask"], black["mask"]) and torch.equal(d["box"], black["box"])
    assert torch.equal(d["label"], y)
    m = d["mask"][:, None]
    assert torch.equal(d["image"][m], black["image"][m])  # the item itself is untouched
    assert (d["image"][~m] > 0).float().mean() > 0.9  # the background is no longer black
    assert (black["image"][~m] <= 0.1).all()  # make_canvas: outside the mask is dark
    # boxes enclose the masks exactly
    for i in range(12):
        ys, xs = torch.nonzero(d["mask"][i], as_tuple=True)
        assert d["box"][i].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_scenes_are_deterministic_and_check_inputs() -> None:
    x, y = _items()
    a = M.make_scenes(x, y, seed=5, backgrounds=_photos())
    b = M.make_scenes(x, y, seed=5, backgrounds=_photos())
    assert torch.equal(a["image"], b["image"])
    with pytest.raises(ValueError, match="clutter"):
        M.make_scenes(x, y, clutter=1.5)
    with pytest.raises(ValueError, match="at least"):
        M.make_scenes(x, y, canvas=48, backgrounds=[torch.rand(30, 30)])


def test_label_flags_counts_and_independence() -> None:
    f = M.label_flags(1000, [100, None, 50], seed=0)
    assert f.shape == (1000, 3)
    assert f.sum(0).tolist() == [100.0, 1000.0, 50.0]
    assert not torch.equal(f[:, 0][:50], f[:, 2][:50]) or f[:, 0].sum() != f[:, 2].sum()
    assert torch.equal(f, M.label_flags(1000, [100, None, 50], seed=0))
    with pytest.raises(ValueError, match="between 0 and n"):
        M.label_flags(10, [20])


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), x.sum(1)


def test_predict_heads_matches_one_big_batch() -> None:
    torch.manual_seed(0)
    model, x = _TwoHeads(), torch.randn(23, 4)
    a, b = M.predict_heads(model, x, batch_size=5)
    with torch.no_grad():
        ra, rb = model(x)
    assert torch.allclose(a, ra) and torch.allclose(b, rb)
    with pytest.raises(TypeError, match="tuple"):
        M.predict_heads(nn.Linear(4, 2), x)


def test_show_prediction_draws_two_boxes() -> None:
    ax = M.show_prediction(torch.rand(1, 48, 48), [2, 3, 20, 30], torch.rand(48, 48) > 0.5, "x",
                           true_box=[1, 1, 10, 10])
    assert len(ax.patches) == 2


def test_same_loss_and_grads_sees_a_changed_target() -> None:
    torch.manual_seed(0)
    model, x, y = nn.Linear(4, 3), torch.randn(5, 4), torch.randint(0, 3, (5,))
    masked = lambda mdl, yy: nn.functional.cross_entropy(mdl(x)[:2], yy[:2])  # only the first two labels count
    y_other = y.clone()
    y_other[2:] = (y_other[2:] + 1) % 3
    assert M.same_loss_and_grads(model, masked, (y,), (y_other,))
    y_other[0] = (y_other[0] + 1) % 3
    assert not M.same_loss_and_grads(model, masked, (y,), (y_other,))


def test_arm_flags_of_the_experiment() -> None:
    n = 600
    scarce = {"cls": 50, "box": 20, "mask": 10}
    assert M.arm_flags("single_mask", n, scarce).sum(0).tolist() == [0.0, 0.0, 10.0]
    assert M.arm_flags("multi_box", n, scarce).sum(0).tolist() == [n, 20.0, n]
    assert torch.equal(M.arm_flags("shuffled_mask", n, scarce), M.arm_flags("multi_mask", n, scarce))
    assert M.arm_flags("balanced", n, scarce).sum(0).tolist() == [50.0] * 3
    pre, fine = M.arm_flags("pretrain", n, scarce), M.arm_flags("transfer", n, scarce)
    assert torch.equal(pre + fine, M.arm_flags("multi_mask", n, scarce))  # the same scenes, split in two stages


def test_shuffle_other_tasks_keeps_the_scarce_labels() -> None:
    g = torch.Generator().manual_seed(0)
    train = {"image": torch.rand(50, 1, 4, 4, generator=g), "label": torch.arange(50),
             "box": torch.rand(50, 4, generator=g), "mask": torch.rand(50, 4, 4, generator=g) > 0.5}
    out = M.shuffle_other_tasks(train, "mask")
    assert torch.equal(out["mask"], train["mask"]) and torch.equal(out["image"], train["image"])
    assert not torch.equal(out["label"], train["label"]) and sorted(out["label"].tolist()) == list(range(50))
    perm = out["label"]
    assert torch.equal(out["box"], train["box"][perm])  # one permutation for every shuffled task


def test_multitask_loss_ignores_missing_labels() -> None:
    torch.manual_seed(0)
    net = M.MultiTaskNet().eval()
    x, y = torch.rand(4, 1, 48, 48), torch.randint(0, 10, (4,))
    box, mask = torch.rand(4, 4) * 48, torch.rand(4, 48, 48) > 0.5
    m = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0.]])
    out = net(x)
    ref = (nn.functional.cross_entropy(out[0][[0, 2]], y[[0, 2]]) + (out[1][[1, 2]] - box[[1, 2]] / 48).abs().mean()
           + nn.functional.binary_cross_entropy_with_logits(out[2][[0]], mask[[0]].float()))
    assert torch.allclose(M.multitask_loss(out, y, box, mask, m), ref, atol=1e-6)


def test_tiny_experiment_ships_and_reloads(tmp_path, monkeypatch) -> None:
    x, y = _items(40)
    scenes = M.make_scenes(x, y, canvas=48, seed=1, backgrounds=_photos())
    monkeypatch.setattr(M, "scene_sets", lambda n_train, n_test: (scenes, scenes))
    scarce = {"cls": 10, "box": 10, "mask": 5}
    runs = [("multi_mask", 2), ("single_mask", 3), ("pretrain", 2), ("transfer", 2)]
    res, first = M.run_experiment(runs, seeds=(0, 1), n_scarce=scarce)
    assert set(res["metrics"]) == {"multi_mask@2", "single_mask@3", "pretrain@2", "transfer@2"}
    assert set(res["metrics"]["transfer@2"]) == {"0", "1"} and len(res["loss"]["single_mask@3"]["0"]) == 1
    nets = nn.ModuleDict({k: first[f"{r}@2"] for k, r in zip(M.KEPT, ["multi_mask"] * 6)}).half()
    M.save_checkpoint(tmp_path / "r.pt", nets, {"x": 1}, {**res, "command": "test"})
    meta, loaded = M.load_shipped(tmp_path / "r.pt")
    assert meta["command"] == "test" and loaded["balanced"].psi_cls[2].weight.dtype == torch.float32
    assert meta["metrics"]["multi_mask@2"]["0"] == res["metrics"]["multi_mask@2"]["0"]


def test_seed_statistics_and_best_budget() -> None:
    r = {"single_mask": {"0": {"m": 0.5}, "1": {"m": 0.7}}, "single_mask@80": {"0": {"m": 0.65}, "1": {"m": 0.65}},
         "multi_mask": {"0": {"m": 0.9}}}
    assert M.seed_values(r, "single_mask", "m") == [0.5, 0.7]
    mean, sd = M.mean_sd(r, "single_mask", "m")
    assert abs(mean - 0.6) < 1e-9 and abs(sd - 0.1414213) < 1e-6 and M.mean_sd(r, "multi_mask", "m")[1] == 0.0
    assert M.budgets(r, "single_mask") == {80: "single_mask@80", 250: "single_mask"}
    assert M.best_budget(r, "single_mask", "m") == "single_mask@80"


def test_box_iou_counts_pixels() -> None:
    a = torch.tensor([[0, 0, 10, 10], [5, 5, 20, 30], [0, 0, 4, 4.]])
    b = torch.tensor([[5, 5, 15, 15], [5, 5, 20, 30], [6, 6, 9, 9.]])
    grid = lambda z: torch.zeros(40, 40, dtype=torch.bool).index_put_(
        (torch.arange(int(z[1]), int(z[3]))[:, None], torch.arange(int(z[0]), int(z[2]))[None]), torch.tensor(True))
    ref = [(grid(u) & grid(v)).sum() / (grid(u) | grid(v)).sum() for u, v in zip(a, b)]
    assert torch.allclose(M.box_iou(a, b), torch.stack(ref).float())

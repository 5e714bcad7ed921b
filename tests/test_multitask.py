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

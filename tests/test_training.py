import time

import pytest
import torch
import torch.nn as nn

import aria_utils as A


def _toy(n=512):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def test_fit_learns_and_stops_by_epochs():
    x, y = _toy()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    h = A.fit(model, (x, y), A.classification_loss, epochs=20, batch_size=64, lr=1e-2, progress=False)
    assert h.stopped_by == "epochs" and h.steps == 20 * 8 and abs(h.epochs - 20) < 1e-6
    assert h.images_per_s > 0 and len(h.logs["acc"]) == h.steps
    assert A.accuracy(model, x, y) > 0.9


def test_fit_stops_on_wall_clock_budget():
    x, y = _toy()
    model = nn.Sequential(nn.Linear(8, 256), nn.ReLU(), nn.Linear(256, 2))

    def slow_loss(m, xb, yb):
        time.sleep(0.01)
        return A.classification_loss(m, xb, yb)

    t = time.perf_counter()
    h = A.fit(model, (x, y), slow_loss, epochs=1000, seconds=0.5, batch_size=32, progress=False)
    # a busy machine makes fewer steps, but the loop must still stop soon after the budget
    assert h.stopped_by == "seconds" and time.perf_counter() - t < 5.0 and 1 <= h.steps < 1000 * 16


def test_fit_needs_a_budget_and_equal_lengths():
    model = nn.Linear(8, 2)
    with pytest.raises(ValueError, match="budget"):
        A.fit(model, _toy(), A.classification_loss)
    with pytest.raises(ValueError, match="lengths"):
        A.fit(model, (torch.zeros(4, 8), torch.zeros(3).long()), A.classification_loss, steps=1)


def test_fit_reports_divergence():
    x, y = _toy()
    model = nn.Linear(8, 2)
    with pytest.raises(FloatingPointError, match="learning rate"):
        A.fit(model, (x, y), lambda m, xb, yb: m(xb).sum() * float("inf"), steps=3, progress=False)


def test_linear_probe_and_knn_on_separable_features():
    x, y = _toy(2000)
    acc_probe = A.linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    acc_knn = A.knn_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], k=10)
    noise = torch.randn(2000, 8)
    assert acc_probe > 0.95 and acc_knn > 0.85
    assert A.linear_probe(noise[:1000], y[:1000], noise[1000:], y[1000:]) < 0.65


def test_extract_features_matches_direct_call():
    enc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    x = torch.randn(10, 1, 8, 8)
    f = A.extract_features(enc, x, batch_size=3)
    assert f.shape == (10, 4 * 6 * 6) and torch.allclose(f, enc(x).flatten(1), atol=1e-6)

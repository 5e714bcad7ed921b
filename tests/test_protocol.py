"""Tests for aria_utils.protocol: the benchmarks, the probe/k-NN protocol, PCA and k-means references."""
import pytest
import torch

from aria_utils import protocol as P
from aria_utils.data import per_class_subset


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("ARIA_SPEED", "fast")


def tiny_data(n_train_per_class: int = 100, n_test_per_class: int = 10, seed: int = 0) -> P.EvalData:
    """Ten classes of 28x28 images: a bright bar at a class-dependent position, plus noise
    (shared with test_finetune and test_representation)."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(10).repeat_interleave(n)
        x = torch.rand(len(y), 28, 28, generator=g) * 60
        for i, c in enumerate(y.tolist()):
            x[i, 2 + 2 * c: 5 + 2 * c, 4:24] += 180
        return x.clamp(0, 255).to(torch.uint8), y

    x_tr, y_tr = make(n_train_per_class)
    x_te, y_te = make(n_test_per_class)
    pools = {f"n{n}": per_class_subset(y_tr, min(n, n_train_per_class)) for n in (10, 100)}
    pools["all"] = torch.arange(len(y_tr))
    return P.EvalData(x_tr, y_tr, x_te, y_te, pools)


def test_evaluate_representation_protocol_keys_and_sanity():
    res = P.evaluate_representation(P.pixels, tiny_data())
    assert list(res) == ["probe_n10", "probe_n100", "probe_all", "knn_n10", "knn_n100", "knn_all"]
    assert all(0.0 <= v <= 1.0 for v in res.values())
    assert res["probe_all"] > 0.9 and res["knn_all"] > 0.9       # the classes are easy for pixels
    constant = P.evaluate_representation(lambda x: torch.zeros(len(x), 4), tiny_data(10, 10))
    assert constant["knn_all"] < 0.3                              # no information, near chance


def test_evaluate_representation_rejects_bad_encoders():
    with pytest.raises(ValueError, match="encode"):
        P.evaluate_representation(lambda x: torch.zeros(3), tiny_data(12, 2))


def test_default_pools_are_fixed_and_nested_sizes():
    data = P.load_eval_data()
    assert len(data.pools["n10"]) == 100 and len(data.pools["n100"]) == 1000
    assert len(data.pools["all"]) == 10000 and len(data.y_test) == 2000       # fast speed
    assert torch.equal(data.pools["n10"], P.load_eval_data().pools["n10"])
    assert torch.bincount(data.y_train[data.pools["n100"]]).tolist() == [100] * 10


def test_scene_images_are_balanced_deterministic_and_split_dependent():
    x, y = P.scene_images("train", 3)
    assert x.shape == (30, 32, 32) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [3] * 10
    x2, y2 = P.scene_images("train", 3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, P.scene_images("train", 3, seed=5)[0])        # same items, other placement
    assert not torch.equal(x, P.scene_images("test", 3)[0])
    with pytest.raises(ValueError, match="split"):
        P.scene_images("val", 3)


def test_load_scene_data_fast_sizes_and_pools():
    data = P.load_scene_data()
    assert data.x_train.shape == (20000, 32, 32) and data.x_test.shape == (500, 32, 32)
    assert torch.bincount(data.y_test).tolist() == [50] * 10
    assert {k: len(v) for k, v in data.pools.items()} == {"n10": 100, "n100": 1000, "all": 1000}
    assert torch.bincount(data.y_train[data.pools["all"]]).tolist() == [100] * 10


def test_pca_encoder_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    images = (torch.rand(200, 6, 8, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    x = images.float().flatten(1) / 255
    ours = P.pca_encoder(images, 5)(x.view(200, 1, 6, 8))
    ref = torch.from_numpy(PCA(n_components=5, svd_solver="full").fit_transform(x.double().numpy())).float()
    assert ours.shape == (200, 5)
    sign = torch.sign((ours * ref).sum(0))
    assert torch.allclose(ours * sign, ref, atol=1e-4)
    for d in (0, 49):
        with pytest.raises(ValueError, match="d="):
            P.pca_encoder(images, d)


def test_kmeans_scores_separable_and_random():
    y = torch.arange(10).repeat_interleave(30)
    g = torch.Generator().manual_seed(0)
    separable = torch.eye(10)[y] * 10 + 0.01 * torch.randn(len(y), 10, generator=g)
    s = P.kmeans_scores(separable, y)
    assert s["purity"] == pytest.approx(1.0) and s["nmi"] == pytest.approx(1.0)
    assert all(isinstance(v, float) for v in s.values())
    rand = P.kmeans_scores(torch.randn(len(y), 8, generator=g), y[torch.randperm(len(y), generator=g)])
    assert rand["nmi"] < 0.15 and rand["purity"] < 0.3

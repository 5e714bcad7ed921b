"""The evaluation protocol shared by notebooks 03 (autoencoders), 04 (SimCLR) and 05 (MAE), so that their
numbers compare.

Two benchmarks, the same measurements:

* `load_scene_data()`, the comparison table: Fashion-MNIST items at a random position and scale (side 50-90 %
  of the canvas) on crops of real photographs (clutter 0.6), 32 x 32 grey (`scene_images`). 2,000 scenes per
  class from the training split are the unlabelled set (20k); 400 per class from the test split are the
  test set (4k; 50 per class in `fast`). Train and test clutter are crops of the same eight photographs.
* `load_eval_data()`, the short first look: centred 28 x 28 Fashion-MNIST (60k / 10k).

Labelled pools from the training images, by `per_class_subset(..., seed=0)`: 10 and 100 labels per class
(`n10`, `n100`, identical in both speeds) and `all` (every training image in `full`, a fixed subset in `fast`).
An encoder is `encode(x) -> features` on float `[B, 1, H, W]` in [0, 1] (an `nn.Module` is put in eval mode);
features are flattened to `[B, D]` and frozen. `evaluate_representation` scores them with a linear probe
(standardised features, full-batch AdamW) and k-NN (cosine, k = 20); `kmeans_scores` clusters them without
labels and compares the clusters with the classes. References: `pixels`, `pca_encoder`, a random-weight twin,
and training from scratch (`finetune.train_classifier`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .data import load_fashion_mnist, per_class_subset, to_float
from .setup import by_speed
from .training import knn_accuracy, linear_probe

Encode = Callable[[torch.Tensor], torch.Tensor]
LABEL_COUNTS = (10, 100)
KNN_K = 20
POOL_SEED = 0
SCENE_CANVAS, SCENE_SCALE, SCENE_CLUTTER = 32, (0.5, 0.9), 0.6
SCENE_TRAIN_PER_CLASS, SCENE_TEST_PER_CLASS = 2000, 400
SCENE_SEEDS = {"train": 0, "test": 1}


@dataclass
class EvalData:
    """The images (uint8 `[N, H, W]`) and labels (int64 `[N]`) of a benchmark, and its pools' indices."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    pools: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> indices into x_train


def _pools(y_train: torch.Tensor, all_per_class: int | None) -> dict[str, torch.Tensor]:
    pools = {f"n{n}": per_class_subset(y_train, n, seed=POOL_SEED) for n in LABEL_COUNTS}
    pools["all"] = (torch.arange(len(y_train)) if all_per_class is None
                    else per_class_subset(y_train, all_per_class, seed=POOL_SEED))
    return pools


def eval_sizes() -> tuple[int | None, int | None]:
    """Centred benchmark: (labels per class for `all`, test images per class); `None` = every image."""
    return by_speed(fast=(1000, 200), full=(None, None))


def load_eval_data(all_per_class: int | None = -1, test_per_class: int | None = -1) -> EvalData:
    """Centred Fashion-MNIST and its pools; sizes default to `eval_sizes()` for the speed."""
    d_all, d_test = eval_sizes()
    all_per_class = d_all if all_per_class == -1 else all_per_class
    test_per_class = d_test if test_per_class == -1 else test_per_class
    x_tr, y_tr = load_fashion_mnist("train")
    x_te, y_te = load_fashion_mnist("test")
    if test_per_class is not None:
        keep = per_class_subset(y_te, test_per_class, seed=POOL_SEED)
        x_te, y_te = x_te[keep], y_te[keep]
    return EvalData(x_tr, y_tr, x_te, y_te, _pools(y_tr, all_per_class))


def scene_images(split: str, per_class: int, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` scenes per class from Fashion-MNIST `split`: uint8 `[N, 32, 32]`, labels `[N]`.

    Deterministic: the items are `per_class_subset(labels, per_class, seed=0)`, and `seed` (default: 0 for
    train, 1 for test) draws their position, scale and background crop.
    """
    from .scenes import make_scenes  # the photographs are loaded only for the scene benchmark

    if split not in SCENE_SEEDS:
        raise ValueError(f"split={split!r}: use 'train' or 'test'.")
    x, y = load_fashion_mnist(split)
    idx = per_class_subset(y, per_class, seed=POOL_SEED)
    d = make_scenes(x[idx], y[idx], canvas=SCENE_CANVAS, scale=SCENE_SCALE, clutter=SCENE_CLUTTER,
                    seed=SCENE_SEEDS[split] if seed is None else seed)
    return (d["image"][:, 0] * 255).round().clamp(0, 255).to(torch.uint8), d["label"]


def scene_backgrounds(split: str, per_class: int, seed: int | None = None) -> torch.Tensor:
    """Which photograph (index into `scenes.background_photos()`) lies behind each scene of
    `scene_images(split, per_class, seed)` (`scenes.background_draw`, without making the scenes)."""
    from .scenes import BACKGROUNDS, background_draw

    n = len(per_class_subset(load_fashion_mnist(split)[1], per_class, seed=POOL_SEED))
    return background_draw(n, len(BACKGROUNDS), SCENE_SEEDS[split] if seed is None else seed)[0]


def scene_sizes() -> tuple[int | None, int]:
    """Scene benchmark: (labels per class for `all`, test scenes per class) for the speed."""
    return by_speed(fast=(100, 50), full=(None, SCENE_TEST_PER_CLASS))


def load_scene_data() -> EvalData:
    """The scene benchmark (20k unlabelled training scenes, 4k test scenes) and its pools."""
    all_per_class, test_per_class = scene_sizes()
    x_tr, y_tr = scene_images("train", SCENE_TRAIN_PER_CLASS)
    x_te, y_te = scene_images("test", SCENE_TEST_PER_CLASS)
    if test_per_class != SCENE_TEST_PER_CLASS:
        keep = per_class_subset(y_te, test_per_class, seed=POOL_SEED)
        x_te, y_te = x_te[keep], y_te[keep]
    return EvalData(x_tr, y_tr, x_te, y_te, _pools(y_tr, all_per_class))


@torch.no_grad()
def encode_images(encode: Encode, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Frozen features `[N, D]` of uint8 `[N, H, W]` (or float) images, batch by batch."""
    module = encode if isinstance(encode, nn.Module) else None
    if module is not None:
        module.eval()
    params = list(module.parameters()) if module is not None else []
    device = params[0].device if params else torch.device("cpu")
    out = []
    for i in range(0, len(images), batch_size):
        xb = to_float(images[i: i + batch_size]).to(device)
        f = encode(xb)
        if not isinstance(f, torch.Tensor) or f.shape[0] != xb.shape[0]:
            raise ValueError(f"encode() must return a tensor [B, ...] for a batch of {xb.shape[0]} images, "
                             f"got {type(f).__name__} {getattr(f, 'shape', '')}.")
        out.append(f.float().flatten(1).cpu())
    return torch.cat(out)


def frozen_features(encode: Encode, data: EvalData, extra: tuple[torch.Tensor, ...] = (),
                    batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Frozen features, computed once: `{"index": the training images encoded (those of the pools and of
    `extra` index sets), "train": their features [len(index), D], "test": the test features}`."""
    index = torch.unique(torch.cat([*data.pools.values(), *extra]))
    return {"index": index, "train": encode_images(encode, data.x_train[index], batch_size),
            "test": encode_images(encode, data.x_test, batch_size)}


def evaluate_features(feats: dict[str, torch.Tensor], data: EvalData, pools: dict[str, torch.Tensor] | None = None,
                      k: int = KNN_K, seed: int = 0) -> dict[str, float]:
    """`evaluate_representation` on features from `frozen_features`, with `pools` (default: the data's)."""
    pools = data.pools if pools is None else pools
    where = torch.full((len(data.x_train),), -1, dtype=torch.long)
    where[feats["index"]] = torch.arange(len(feats["index"]))
    out = {}
    for name, idx in pools.items():
        if bool((where[idx] < 0).any()):
            raise ValueError(f"pool {name!r} has training images that were not encoded (pass it as `extra`).")
        f, y = feats["train"][where[idx]], data.y_train[idx]
        out[f"probe_{name}"] = linear_probe(f, y, feats["test"], data.y_test, seed=seed)
        out[f"knn_{name}"] = knn_accuracy(f, y, feats["test"], data.y_test, k=k)
    return {f"{m}_{name}": out[f"{m}_{name}"] for m in ("probe", "knn") for name in pools}


def pool_draws(data: EvalData, n: int, draws: int = 3) -> dict[str, torch.Tensor]:
    """`draws` labelled pools of `n` per class (`n<n>_d<i>`; draw 0 is the protocol's pool `n<n>`): the noise
    of a few-label score over which images happen to be labelled."""
    return {f"n{n}_d{i}": per_class_subset(data.y_train, n, seed=POOL_SEED + i) for i in range(draws)}


def evaluate_representation(encode: Encode, data: EvalData, k: int = KNN_K, seed: int = 0,
                            batch_size: int = 500) -> dict[str, float]:
    """Linear probe and k-NN on frozen features with each pool of labels.

    Returns `{"probe_<pool>", ..., "knn_<pool>", ...}` in the pools' order: with the protocol's pools,
    `probe_n10, probe_n100, probe_all, knn_n10, knn_n100, knn_all` (test accuracies).
    """
    return evaluate_features(frozen_features(encode, data, batch_size=batch_size), data, k=k, seed=seed)


def pixels(x: torch.Tensor) -> torch.Tensor:
    """The raw-pixel 'encoder' (a reference every learnt representation should beat)."""
    return x.flatten(1)


def pca_encoder(images: torch.Tensor, d: int) -> Encode:
    """The linear reference with a code of size `d`: projection on the top-`d` principal components of
    `images` (unlabelled, uint8 or float), fitted once by SVD. Returns `encode(x) -> [B, d]`."""
    x = to_float(images).flatten(1).double()
    if not 0 < d <= min(x.shape):
        raise ValueError(f"d={d}: a PCA code needs 0 < d <= min(N, pixels) = {min(x.shape)}.")
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    mean, basis = mean.float(), vh[:d].T.float()             # [P], [P, d]

    def encode(xb: torch.Tensor) -> torch.Tensor:
        return (xb.flatten(1) - mean) @ basis
    return encode


def kmeans_scores(features: torch.Tensor, labels: torch.Tensor, k: int = 10, seed: int = 0) -> dict[str, float]:
    """Cluster standardised features with k-means (no labels), then compare clusters and classes:
    `purity` (share of points in their cluster's majority class) and `nmi` (normalised mutual information)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    f = features.float()
    f = ((f - f.mean(0)) / (f.std(0) + 1e-6)).numpy()
    assign = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(f)
    y = np.asarray(labels)
    majority = sum(np.bincount(y[assign == c]).max() for c in np.unique(assign))
    return {"purity": float(majority / len(y)), "nmi": float(normalized_mutual_info_score(y, assign))}

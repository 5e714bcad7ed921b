"""Transfer-learning plumbing: split a timm EfficientNet into a frozen trunk and a trainable tail,
cache the trunk's activations once, and train/evaluate on them.

The EfficientNet's 16 blocks (7 stages) are numbered flat, 0..15. `split_efficientnet(model, k)`
returns `trunk` = stem + blocks 0..k-1 and `tail` = blocks k.. + head conv + pooling + classifier.
Both share their modules with `model` (no copy), so `tail(trunk(x)) == model(x)` and training the
tail trains the model.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .claims import Evidence
from .data import per_class_subset, to_imagenet
from .training import History, fit


def flat_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of a timm EfficientNet / MobileNet, flattened over stages."""
    if not hasattr(model, "blocks") or not hasattr(model, "conv_stem"):
        raise TypeError(f"{type(model).__name__} is not a timm EfficientNet-like model (no conv_stem / blocks).")
    return [b for stage in model.blocks for b in stage]


def stage_ends(model: nn.Module) -> list[int]:
    """Flat index just after each stage: `[1, 3, 5, 8, 11, 15, 16]` for EfficientNet-Lite0."""
    ends, n = [], 0
    for stage in model.blocks:
        n += len(stage)
        ends.append(n)
    return ends


def split_efficientnet(model: nn.Module, k: int) -> tuple[nn.Sequential, nn.Sequential]:
    """`(trunk, tail)`: trunk = stem + blocks[:k], tail = blocks[k:] + head (modules shared with `model`)."""
    blocks = flat_blocks(model)
    if not 0 <= k <= len(blocks):
        raise ValueError(f"split point k={k} outside 0..{len(blocks)} (the model has {len(blocks)} blocks).")
    trunk = nn.Sequential(model.conv_stem, model.bn1, *blocks[:k])
    tail = nn.Sequential(*blocks[k:], model.conv_head, model.bn2, model.global_pool, model.classifier)
    return trunk, tail


def freeze(module: nn.Module) -> nn.Module:
    """No gradients and eval mode (BatchNorm uses its ImageNet running statistics)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with `requires_grad` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def imagenet_batch(size: int, channels_last: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch transform: grey uint8 `[B, 28, 28]` -> normalised `[B, 3, size, size]` (EfficientNet-Lite)."""
    def transform(x: torch.Tensor) -> torch.Tensor:
        out = to_imagenet(x, size)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out
    return transform


@torch.no_grad()
def cache_stages(model: nn.Module, images: torch.Tensor, size: int, splits: Sequence[int],
                 batch_size: int = 256, grid: int = 1) -> tuple[dict[int, torch.Tensor], dict[str, torch.Tensor]]:
    """One frozen forward pass (eval mode) over `images`, keeping what the transfer strategies train on.

    Returns `(spatial, pooled)`: `spatial[k]` is the input of flat block k (the output of
    `split_efficientnet(model, k)[0]`) for each k in `splits`; `pooled` holds the output of every stage
    averaged over a `grid x grid` grid of cells and flattened (`grid=1`: global average, `[N, C]`;
    `grid=4`: `[N, 16 C]`, where in the image each feature was), and the globally averaged head conv
    output, `"head": [N, 1280]`.
    """
    blocks = flat_blocks(model)
    if any(not 0 < k <= len(blocks) for k in splits):
        raise ValueError(f"split points {list(splits)} must lie in 1..{len(blocks)}.")
    ends = stage_ends(model)
    model.eval()
    tf = imagenet_batch(size)
    spatial: dict[int, list[torch.Tensor]] = {k: [] for k in splits}
    pooled: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        h = model.bn1(model.conv_stem(tf(images[i: i + batch_size])))
        for j, block in enumerate(blocks):
            if j in spatial:
                spatial[j].append(h.contiguous())
            h = block(h)
            if j + 1 in ends:
                cells = F.adaptive_avg_pool2d(h, grid).flatten(1)  # [B, C * grid * grid]
                pooled.setdefault(f"stage {ends.index(j + 1) + 1}", []).append(cells)
        if len(blocks) in spatial:
            spatial[len(blocks)].append(h.contiguous())
        pooled.setdefault("head", []).append(model.global_pool(model.bn2(model.conv_head(h))))
    return {k: torch.cat(v) for k, v in spatial.items()}, {k: torch.cat(v) for k, v in pooled.items()}


@torch.no_grad()
def feature_maps(model: nn.Module, batch: torch.Tensor, stages: list[int]) -> dict[int, torch.Tensor]:
    """Outputs `[B, C, h, w]` of the given stages (0-based) for a preprocessed batch."""
    model.eval()
    h = model.bn1(model.conv_stem(batch))
    out = {}
    for s, stage in enumerate(model.blocks):
        h = stage(h)
        if s in stages:
            out[s] = h
    return out


def random_shift_flip(x: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch `[B, H, W]` / `[B, C, H, W]`: mirror each image with probability 1/2, then shift the
    whole batch by one random offset of up to `max_shift` pixels (zero padding)."""
    B = x.shape[0]
    flip = torch.rand(B, generator=generator) < 0.5
    x = torch.where(flip.view(B, *([1] * (x.ndim - 1))), x.flip(-1), x)
    if max_shift > 0:
        H, W = x.shape[-2:]
        p = max_shift
        pad = F.pad(x, (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=generator).tolist()
        x = pad[..., dy: dy + H, dx: dx + W]
    return x


TARGETS = ("fashion_mnist", "photo_crops", "oxford_pets")


def load_target(name: str = "fashion_mnist", size: int = 64) -> dict[str, object]:
    """A labelled target problem: `x_train, y_train, x_test, y_test` (uint8 images) and `classes`.

    Offline: `fashion_mnist` (grey `[N, 28, 28]`) and `photo_crops` (RGB `[N, 3, 32, 32]`, `data.photo_crops`:
    1000 training and 200 test crops per photo). Online: `oxford_pets` (37 breeds, about 100 training images
    per class), downloaded by torchvision and resized to RGB `[N, 3, size, size]`.
    """
    from .data import FASHION_CLASSES, PHOTO_CLASSES, DatasetNotFound, data_dir, load_fashion_mnist, photo_crops

    if name == "fashion_mnist":
        x_tr, y_tr = load_fashion_mnist("train")
        x_te, y_te = load_fashion_mnist("test")
        return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "classes": list(FASHION_CLASSES)}
    if name == "photo_crops":
        x_tr, y_tr = photo_crops(1000, "train")
        x_te, y_te = photo_crops(200, "test")
        return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "classes": list(PHOTO_CLASSES)}
    if name == "oxford_pets":
        import numpy as np
        from torchvision.datasets import OxfordIIITPet

        out: dict[str, object] = {}
        for split, key in (("trainval", "train"), ("test", "test")):
            try:
                ds = OxfordIIITPet(str(data_dir()), split=split, download=True)
            except Exception as e:  # torchvision raises several kinds when offline
                raise DatasetNotFound(f"Oxford-IIIT Pets needs internet for its first download "
                                      f"({type(e).__name__}: {str(e)[:150]}); use DATASET = 'fashion_mnist'.") from e
            imgs = [torch.from_numpy(np.asarray(img.convert("RGB").resize((size, size)))) for img, _ in ds]
            out[f"x_{key}"] = torch.stack(imgs).permute(0, 3, 1, 2).contiguous()  # [N, 3, size, size] uint8
            out[f"y_{key}"] = torch.tensor([int(lab) for _, lab in ds])
            out["classes"] = list(ds.classes)
        return out
    raise ValueError(f"Unknown target dataset {name!r}; use one of {TARGETS}.")


def labelled_pool(data: dict[str, object], budgets: Sequence[int], n_test: int, seed: int = 0,
                  draws: int = 1) -> dict[str, object]:
    """Nested label budgets and a fixed test set drawn from `load_target`'s output.

    Returns `x_lab, y_lab` (the largest budget, n per class), `pos[n]` (the rows of `x_lab` that form the
    n-per-class subset; the smaller budgets are inside the larger ones) and `x_test, y_test` (n_test per class).
    With `draws > 1`, `draws` also lists that many draws `(x, y)` of the smallest budget from the whole
    training split (seeds `seed, seed + 1, ...`; the first is `x_lab[pos[min(budgets)]]`), to measure how
    much a result depends on which few images were labelled.
    """
    lab_idx = per_class_subset(data["y_train"], max(budgets), seed=seed)
    test_idx = per_class_subset(data["y_test"], n_test, seed=seed + 1)
    pos = {n: torch.searchsorted(lab_idx, per_class_subset(data["y_train"], n, seed=seed)) for n in budgets}
    idx = [per_class_subset(data["y_train"], min(budgets), seed=seed + i) for i in range(draws)]
    return {"x_lab": data["x_train"][lab_idx], "y_lab": data["y_train"][lab_idx], "pos": pos,
            "x_test": data["x_test"][test_idx], "y_test": data["y_test"][test_idx],
            "draws": [(data["x_train"][i], data["y_train"][i]) for i in idx]}


class Standardised(nn.Module):
    """A linear classifier on standardised features: `linear((f - mean) / sd)`."""

    def __init__(self, mean: torch.Tensor, sd: torch.Tensor, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("sd", sd)
        self.linear = linear

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear((f - self.mean) / self.sd)


def logistic_regression(f: torch.Tensor, y: torch.Tensor, C: float = 0.01, max_iter: int = 100) -> Standardised:
    """L2-penalised multinomial logistic regression on standardised features, fitted by L-BFGS.

    Minimises `mean cross-entropy + |W|^2 / (2 C N)` over N rows: scikit-learn's `LogisticRegression(C=C)`
    objective, so a smaller C is a stronger penalty and the penalty fades as rows are added.
    Returns the fitted classifier (eval mode; call it on raw features for the class scores).
    """
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"features must be [N, D] with one label per row; got {tuple(f.shape)} and {len(y)} labels.")
    f = f.float()
    mean, sd = f.mean(0), f.std(0) + 1e-6
    z = (f - mean) / sd
    linear = nn.Linear(z.shape[1], int(y.max()) + 1)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-5)
    penalty = 1.0 / (C * len(z))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(z), y) + 0.5 * penalty * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Standardised(mean, sd, linear).eval()


@torch.no_grad()
def mirrored_accuracy(clf: nn.Module, f_test: torch.Tensor, f_test_mirror: torch.Tensor, y_test: torch.Tensor) -> float:
    """Accuracy when each test image is classified by its class probabilities averaged with its mirror's."""
    p = clf(f_test).softmax(-1) + clf(f_test_mirror).softmax(-1)
    return (p.argmax(-1) == y_test).float().mean().item()


class BatchNormFrozen(nn.Module):
    """Wrap a model so that `.train()` leaves its BatchNorm layers in eval mode (ImageNet running statistics
    kept, affine weights still trained): the usual way to fine-tune a pretrained network with small batches."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> "BatchNormFrozen":
        super().train(mode)
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def best_match_cosine(w: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """For each filter of `w` `[K, ...]`, its largest |cosine similarity| with a filter of `ref` `[M, ...]` (same
    size): how closely the bank `ref` holds it, up to sign (a filter and its negative detect one edge, or one
    colour contrast, of opposite polarity). Returns `[K]`."""
    if w.shape[1:] != ref.shape[1:]:
        raise ValueError(f"filters of different sizes: {tuple(w.shape[1:])} and {tuple(ref.shape[1:])}")
    a = F.normalize(w.detach().flatten(1).float(), dim=1)
    b = F.normalize(ref.detach().flatten(1).float(), dim=1)
    return (a @ b.T).abs().amax(1)


def remove_dc(w: torch.Tensor) -> torch.Tensor:
    """Filters `[K, ...]` minus each filter's mean (its DC part: the response to a flat patch), so that a cosine
    compares the patterns the filters detect, not their average brightness."""
    return w.detach() - w.detach().flatten(1).mean(1).view(-1, *([1] * (w.ndim - 1)))


def grey_filters(w: torch.Tensor) -> torch.Tensor:
    """RGB filters `[K, 3, k, k]` -> the `[K, 1, k, k]` filters they apply to a grey image copied into R, G and B."""
    return w.detach().sum(1, keepdim=True)


def loss_fall(loss: Sequence[float]) -> float:
    """How much a training loss still fell at its end: the mean over the last quarter of the steps against the
    quarter before, as a fraction of the latter (0: flat; 0.1: still 10 % lower)."""
    q = len(loss) // 4
    if q < 1:
        raise ValueError(f"need at least 4 steps of loss, got {len(loss)}")
    last = sum(loss[-q:]) / q
    before = sum(loss[-2 * q: -q]) / q
    return (before - last) / before


def plateau(label: str, loss: Sequence[float], epochs: float, tol: float = 0.1, min_epochs: float = 10) -> Evidence:
    """Whether a training run ended at a plateau: at least `min_epochs` passes over its labels, and a training
    loss less than `tol` (a fraction) lower over its last quarter than over the quarter before (`loss_fall`).
    Both are needed: a cosine schedule flattens the loss at its end even when the run was cut short, and lowers
    it a little even at a plateau."""
    fall = loss_fall(loss)
    return Evidence(epochs >= min_epochs and fall < tol,
                    f"{label}: {epochs:.2g} epochs, loss {100 * fall:.0f} % lower in its last quarter")


def linear_accuracy(f_lab: torch.Tensor, y_lab: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                    f_lab_mirror: torch.Tensor | None = None, f_test_mirror: torch.Tensor | None = None,
                    C: float = 0.01, max_iter: int = 100) -> float:
    """Test accuracy of `logistic_regression` (at most `max_iter` L-BFGS iterations) on frozen features. Given the
    mirror images' features too, it trains on both and scores each test image with its mirror's probabilities
    added (`mirrored_accuracy`)."""
    if f_lab_mirror is None:
        clf = logistic_regression(f_lab, y_lab, C, max_iter)
        with torch.no_grad():
            return (clf(f_test.float()).argmax(-1) == y_test).float().mean().item()
    clf = logistic_regression(torch.cat([f_lab, f_lab_mirror]), torch.cat([y_lab, y_lab]), C, max_iter)
    return mirrored_accuracy(clf, f_test.float(), f_test_mirror.float(), y_test)


def validation_scores(feats: dict[str, torch.Tensor], y: torch.Tensor, Cs: Sequence[float] = (0.01,),
                      cap: int = 25, repeats: int = 3) -> dict[tuple[str, float], float]:
    """Mean accuracy of a linear classifier on each feature set and penalty C, without test images: half of the
    labelled rows (at most `cap` per class) train it, the other half score it, both ways round, over `repeats`
    random halvings (seeded). `feats[name]` and `y` hold the labelled rows only."""
    g = torch.Generator().manual_seed(0)
    score = {(s, c): 0.0 for s in feats for c in Cs}
    for _ in range(repeats):
        a, b = [], []
        for c in y.unique():  # half of each class
            idx = torch.nonzero(y == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            k = min(len(idx) // 2, cap)
            a.append(idx[:k])
            b.append(idx[k: 2 * k])
        a, b = torch.cat(a), torch.cat(b)
        for (s, c) in score:
            f = feats[s]
            score[s, c] += (linear_accuracy(f[a], y[a], f[b], y[b], C=c)
                            + linear_accuracy(f[b], y[b], f[a], y[a], C=c)) / (2 * repeats)
    return score


def best_stage(feats: dict[str, torch.Tensor], y: torch.Tensor, cap: int = 25, repeats: int = 3) -> str:
    """The feature set (stage) whose linear classifier (C = 0.01) scores best in `validation_scores`."""
    score = validation_scores(feats, y, (0.01,), cap, repeats)
    return max(score, key=score.get)[0]


def new_head(model: nn.Module, n_classes: int) -> nn.Module:
    """A copy of an ImageNet network with its 1000-way classifier replaced by dropout 0.3 + a new n-way linear
    layer (random init), in channels_last layout."""
    net = copy.deepcopy(model)
    net.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(net.num_features, n_classes))
    return net.to(memory_format=torch.channels_last)


SPLITS_TUNED = {1: 15, 2: 11, 3: 8}  # stages fine-tuned -> first trainable flat block of EfficientNet-Lite0
TUNE_RECIPE = {"lr": 1e-3, "weight_decay": 1e-2, "batch_size": 64}  # AdamW, warm-up then cosine to 0


def finetune_tail(source: nn.Module, k: int, h_lab: torch.Tensor, y_lab: torch.Tensor, steps: int, *,
                  n_classes: int = 10, seed: int = 0, warmup: int = 10, desc: str = "fine-tune",
                  progress: bool = True) -> tuple[nn.Module, History]:
    """(b): a copy of `source` with a new head, frozen up to flat block k, its tail trained on the cached trunk
    outputs `h_lab` for `steps` steps (`TUNE_RECIPE`, label smoothing 0.1). Returns the model (eval mode; its
    tail is `split_efficientnet(model, k)[1]`) and the training history."""
    torch.manual_seed(seed)
    model = new_head(source, n_classes)
    trunk, tail = split_efficientnet(model, k)
    freeze(trunk)

    def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y, label_smoothing=0.1)

    hist = fit(tail, [h_lab, y_lab], loss_fn, steps=steps, seed=seed, warmup=warmup, desc=desc,
               progress=progress, **TUNE_RECIPE)
    return model.eval(), hist

"""A budgeted training loop, evaluation, feature extraction, linear probe and k-NN on frozen features.

Data are tensors held in memory: batches are slices of shuffled indices, and augmentations
(if any) are applied to whole batches on tensors, so the CPU spends its time in the model.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .progress import Progress

LossFn = Callable[..., "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


@dataclass(frozen=True)
class RunConfig:
    """What defines a training run of `fit` (its cache key: `to_dict()`): the recipe every run has. A subclass
    names its `KIND` and adds its model's fields (and `weight_decay` where its runs use one)."""

    KIND: ClassVar[str] = "run"
    epochs: float = 3.0
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0
    speed: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, **asdict(self)}


@dataclass
class History:
    """What a training run did: per-step losses and logs, and why it stopped."""

    loss: list[float] = field(default_factory=list)
    logs: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    images: int = 0
    stopped_by: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """Plain-Python form, for checkpoints."""
        return {"loss": self.loss, "logs": self.logs, "steps": self.steps, "epochs": self.epochs,
                "seconds": self.seconds, "images": self.images, "stopped_by": self.stopped_by}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)

    def summary(self) -> str:
        return (f"{self.steps} steps, {self.epochs:.2f} epochs in {self.seconds:.1f} s "
                f"({self.images_per_s:.0f} images/s), stopped by {self.stopped_by}, "
                f"final loss {self.loss[-1] if self.loss else float('nan'):.4f}")


def _to(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [b.to(device, non_blocking=True) for b in batch]


def fit(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: LossFn, *,
        epochs: float | None = None, steps: int | None = None, seconds: float | None = None,
        batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
        optimizer: torch.optim.Optimizer | None = None, schedule: str | None = "cosine", warmup: int = 0,
        device: torch.device | str | None = None, seed: int = 0, desc: str = "train",
        drop_last: bool = True, progress: bool = True) -> History:
    """Train `model` until `epochs`, `steps` or `seconds` runs out, whichever comes first.

    `tensors` are the training tensors of equal length (e.g. images, labels); each step slices a
    batch of them and calls `loss_fn(model, *batch)`, which returns a loss (or `(loss, logs)`).
    The learning rate follows a cosine from `lr` to 0 over the budget (`schedule=None`: constant),
    measured as the largest fraction used of any budget, so that a time budget anneals too.
    """
    if epochs is None and steps is None and seconds is None:
        raise ValueError("fit() needs a budget: epochs, steps and/or seconds.")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"fit(): tensors have different lengths {[len(t) for t in tensors]}.")
    batch_size = min(batch_size, n)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    g = torch.Generator().manual_seed(seed)
    hist = History()
    total = steps if steps is not None else (math.ceil(epochs * per_epoch) if epochs is not None else None)
    bar = Progress(total=total, desc=desc, unit="step", disable=not progress)
    start = time.perf_counter()
    order, pos = torch.randperm(n, generator=g), 0

    def used() -> float:
        fr = [0.0]
        if steps is not None:
            fr.append(hist.steps / steps)
        if epochs is not None:
            fr.append(hist.steps / (epochs * per_epoch))
        if seconds is not None:
            fr.append((time.perf_counter() - start) / seconds)
        return max(fr)

    while True:
        frac = used()
        if frac >= 1.0:
            hist.stopped_by = "seconds" if seconds is not None and time.perf_counter() - start >= seconds else (
                "steps" if steps is not None and hist.steps >= steps else "epochs")
            break
        if pos + batch_size > n or (not drop_last and pos >= n):
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos: pos + batch_size]
        pos += batch_size
        if schedule == "cosine" or warmup:
            scale = min(1.0, (hist.steps + 1) / warmup) if warmup else 1.0
            if schedule == "cosine":
                scale *= 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            for grp, base in zip(optimizer.param_groups, base_lrs):
                grp["lr"] = base * scale
        out = loss_fn(model, *_to([t[idx] for t in tensors], device))
        loss, logs = out if isinstance(out, tuple) else (out, {})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {hist.steps}: lower the learning rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        hist.steps += 1
        hist.images += len(idx)
        hist.loss.append(loss.item())
        for k, v in logs.items():
            hist.logs.setdefault(k, []).append(float(v))
        bar.update(1)
        if hist.steps % 10 == 0:
            bar.set_postfix(loss=f"{hist.loss[-1]:.4f}")
    hist.seconds = time.perf_counter() - start
    hist.epochs = hist.images / n
    if hist.loss:
        bar.set_postfix(loss=f"{hist.loss[-1]:.4f}")  # the final loss on the bar's last line
    bar.close()
    model.eval()
    return hist


def classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy, with the batch accuracy as a log: a ready `loss_fn` for `fit`."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    return loss, {"acc": (logits.argmax(-1) == y).float().mean().item()}


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512,
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Model outputs for all of `x`, batch by batch, in eval mode, on the model's device (returned on CPU)."""
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size]
        xb = transform(xb) if transform is not None else xb
        outs.append(model(xb.to(device)).float().cpu())
    return torch.cat(outs)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 accuracy of a classifier on `(x, y)`."""
    return (predict(model, x, batch_size, transform).argmax(-1) == y).float().mean().item()


def extract_features(encoder: nn.Module, x: torch.Tensor, batch_size: int = 512,
                     transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Frozen features `[N, D]` (flattened) of an encoder: compute them once, reuse them."""
    return predict(encoder, x, batch_size, transform).flatten(1)


def linear_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                 epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Accuracy of a linear classifier trained on frozen features (standardised, full-batch AdamW)."""
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    a, b = (f_train - mu) / sd, (f_test - mu) / sd
    torch.manual_seed(seed)
    n_cls = int(max(y_train.max(), y_test.max())) + 1
    clf = nn.Linear(a.shape[1], n_cls)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            for i in range(0, len(a), 4096):
                loss = F.cross_entropy(clf(a[i: i + 4096]), y_train[i: i + 4096])
                opt.zero_grad()
                loss.backward()
                opt.step()
    with torch.no_grad():
        return (clf(b).argmax(-1) == y_test).float().mean().item()


@torch.no_grad()
def knn_accuracy(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                 k: int = 20, batch_size: int = 1024) -> float:
    """Accuracy of a cosine-similarity k-NN classifier (majority vote) on frozen features."""
    k = min(k, len(f_train))
    a = F.normalize(f_train.float(), dim=1)
    n_cls = int(max(y_train.max(), y_test.max())) + 1
    correct = 0
    for i in range(0, len(f_test), batch_size):
        b = F.normalize(f_test[i: i + batch_size].float(), dim=1)
        idx = (b @ a.T).topk(k, dim=1).indices
        votes = F.one_hot(y_train[idx], n_cls).sum(1)
        correct += (votes.argmax(1) == y_test[i: i + batch_size]).sum().item()
    return correct / len(f_test)

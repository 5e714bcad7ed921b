"""Training an encoder + linear layer end to end on a few labels (notebooks 03-05): from scratch (random
initial weights, the reference) or from a pretrained encoder (fine-tuning), with the same recipe."""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from .augment import light_augment
from .checkpoints import train_or_load
from .data import per_class_subset, to_float
from .protocol import POOL_SEED, EvalData
from .training import History, accuracy, classification_loss, fit


class Classifier(nn.Module):
    """An encoder followed by a linear layer on its (flattened) features."""

    def __init__(self, encoder: nn.Module, dim: int, n_classes: int = 10) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).flatten(1))


def train_classifier(encoder: nn.Module, n_per_class: int, data: EvalData, *, steps: int,
                     batch_size: int = 128, lr: float = 2e-3, encoder_lr: float | None = None,
                     weight_decay: float = 1e-4, augment_size: int | None = None,
                     config: dict[str, Any] | None = None, seed: int = 0, progress: bool = True) -> float:
    """Test accuracy of `encoder` + a linear layer trained end to end (see `train_classifier_run`)."""
    return train_classifier_run(encoder, n_per_class, data, steps=steps, batch_size=batch_size, lr=lr,
                                encoder_lr=encoder_lr, weight_decay=weight_decay, augment_size=augment_size,
                                config=config, seed=seed, progress=progress)[0]


def train_classifier_run(encoder: nn.Module, n_per_class: int, data: EvalData, *, steps: int,
                         batch_size: int = 128, lr: float = 2e-3, encoder_lr: float | None = None,
                         weight_decay: float = 1e-4, augment_size: int | None = None,
                         config: dict[str, Any] | None = None, seed: int = 0,
                         progress: bool = True) -> tuple[float, History]:
    """Test accuracy of a copy of `encoder` + a new linear layer, trained end to end on `n_per_class`
    labels per class (the pool `n<n>` of `data`) for `steps` AdamW steps with a cosine learning rate and
    light augmentations (crops of 60-100 %, flips) at `augment_size` px (`None`: none).

    `encoder_lr` (default `lr`) is the encoder's learning rate: lower it to fine-tune gently.
    With `config` (a JSON-able description of the encoder and its weights) the result is cached
    (`classifier-n<n>-<hash>`). `encoder` itself is not modified. Returns the accuracy and the training
    history (per-step losses: whether the run still learnt at its end).
    """
    key = f"n{n_per_class}"
    idx = data.pools[key] if key in data.pools else per_class_subset(data.y_train, n_per_class, seed=POOL_SEED)
    x, y = data.x_train[idx], data.y_train[idx]
    enc = copy.deepcopy(encoder)
    with torch.no_grad():
        dim = enc.eval()(to_float(x[:2])).flatten(1).shape[1]
    torch.manual_seed(seed)
    model = Classifier(enc, dim, int(data.y_train.max()) + 1)
    groups = [{"params": model.head.parameters(), "lr": lr},
              {"params": model.encoder.parameters(), "lr": lr if encoder_lr is None else encoder_lr}]
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay)

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return classification_loss(m, light_augment(xb, augment_size) if augment_size else to_float(xb), yb)

    def train(m: nn.Module) -> dict[str, Any]:
        hist = fit(m, [x, y], loss_fn, steps=steps, batch_size=batch_size, optimizer=opt, seed=seed,
                   desc=f"classifier {key}", progress=progress)
        return {"history": hist.to_dict()}

    if config is not None:
        full_cfg = {"kind": "classifier", "n_per_class": n_per_class, "steps": steps, "batch_size": batch_size,
                    "lr": lr, "encoder_lr": encoder_lr, "weight_decay": weight_decay,
                    "augment_size": augment_size, "seed": seed, **config}
        meta = train_or_load(f"classifier-{key}", full_cfg, model, train)
    else:
        meta = train(model)
    return accuracy(model, data.x_test, data.y_test, 500, transform=to_float), History.from_dict(meta["history"])

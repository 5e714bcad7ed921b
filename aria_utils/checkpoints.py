"""Train-or-load: checkpoints keyed by a name, the config and the code that trains them, written atomically,
read safely; the same for expensive derived results (frozen features, embeddings)."""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn as nn

from .fingerprint import code_fingerprint
from .io import atomic_write_bytes
from .setup import repo_root

R = TypeVar("R")


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt or does not fit the model."""


def cache_dir() -> Path:
    """Where checkpoints live (`ARIA_CACHE` or `<repo>/cache`); ignored by git."""
    return Path(os.environ.get("ARIA_CACHE", repo_root() / "cache"))


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def checkpoint_path(name: str, config: dict[str, Any], code: str = "") -> Path:
    """`cache/<name>-<hash of config and code fingerprint>.pt`."""
    return cache_dir() / f"{name}-{config_key({'config': config, 'code': code} if code else config)}.pt"


def save_checkpoint(path: str | Path, model: nn.Module, config: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Save weights, config and metadata (plain Python only) atomically."""
    buf = io.BytesIO()
    plain = json.loads(json.dumps(meta or {}, default=str))  # only plain types load with weights_only=True
    torch.save({"state_dict": model.state_dict(), "config": json.loads(json.dumps(config, default=str)),
                "meta": plain}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, model: nn.Module, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load weights into `model` (`weights_only=True`, `strict=True`); return the metadata.

    Raises `CheckpointError` for an unreadable file, another config, or weights that do not fit.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state = blob["state_dict"]
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}). "
                              "Delete it to retrain.") from e
    if config is not None and blob.get("config") != json.loads(json.dumps(config, default=str)):
        raise CheckpointError(f"{path} was saved with another config: {blob.get('config')}.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit this model: {str(e)[:300]}. Delete it to retrain.") from e
    return blob.get("meta", {})


def train_or_load(name: str, config: dict[str, Any], model: nn.Module,
                  train: Callable[[nn.Module], dict[str, Any] | None], code: Sequence[object] = ()) -> dict[str, Any]:
    """Load `cache/<name>-<hash>.pt` into `model` if it is there and sound; otherwise call
    `train(model)` (which returns plain metadata, e.g. a history dict) and save the result.

    The hash covers `config` and the code: `train`, the model's classes, `code` (more functions or classes)
    and what they call in the notebook and the package (`code_fingerprint`), so that editing any of them
    retrains and the same code loads. A corrupt or mismatched file is reported and retrained, never used
    silently. Returns the metadata, with `meta["loaded"]` telling which happened.
    """
    path = checkpoint_path(name, config, code_fingerprint(train, model, *code))
    if path.exists():
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            meta = load_checkpoint(path, model, config)
            print(f"[cache] loaded {path.name} (same config and code)")
            return {**meta, "loaded": True}
        except CheckpointError as e:
            model.load_state_dict(initial)  # undo any partial load
            print(f"[cache] {e} -> retraining")
    meta = train(model) or {}
    save_checkpoint(path, model, config, meta)
    return {**meta, "loaded": False}


def compute_or_load(name: str, config: dict[str, Any], compute: Callable[[], R], code: Sequence[object] = ()) -> R:
    """A derived result (tensors, numbers, and dicts, lists or tuples of them) cached like a checkpoint:
    keyed by `config` and the fingerprint of `compute` and `code`; loaded with `weights_only=True`."""
    path = checkpoint_path(name, config, code_fingerprint(compute, *code))
    if path.exists():
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
            print(f"[cache] loaded {path.name} (same config and code)")
            return value
        except Exception as e:  # a torn or foreign file: recompute, never use it
            print(f"[cache] {path.name} is not readable ({type(e).__name__}) -> recomputing")
    value = compute()
    buf = io.BytesIO()
    torch.save(value, buf)
    atomic_write_bytes(path, buf.getvalue())
    return value

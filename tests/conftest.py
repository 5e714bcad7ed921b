import os

import pytest

# As aria_utils.setup does offline: before any test module imports timm / open_clip / huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Keep metrics and checkpoints written by tests out of the project's build/ and cache/."""
    monkeypatch.setenv("ARIA_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("ARIA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ARIA_NOTEBOOK", "test")

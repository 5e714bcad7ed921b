import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Keep metrics and checkpoints written by tests out of the project's build/ and cache/."""
    monkeypatch.setenv("ARIA_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("ARIA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ARIA_NOTEBOOK", "test")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

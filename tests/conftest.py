import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# As aria_utils.setup does offline: before any test module imports timm / open_clip / huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Keep metrics and checkpoints written by tests out of the project's build/ and cache/."""
    monkeypatch.setenv("ARIA_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("ARIA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ARIA_NOTEBOOK", "test")


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    """A stand-in for the repository: a README with the times table's markers and notebooks/98_tiny.ipynb (a header
    with the times markers, one setup cell); the runner's repo_root points at it, build/ beside it, fast, headless."""
    from aria_utils import runner

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "README.md").write_text("# Title\n\nBefore.\n\n<!-- times-table -->\nold table\n<!-- /times-table -->\n\nAfter.\n")
    header = "# 98 · Tiny\n\n**Time**: <!-- times -->typed by hand<!-- /times -->. Set `ARIA_SPEED=fast` for less.\n"
    nb = new_notebook(cells=[new_markdown_cell(header),
                             new_code_cell('import aria_utils as A\nA.setup("98_tiny", check_hub=False);')])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / "98_tiny.ipynb")
    monkeypatch.setattr(runner, "repo_root", lambda: root)
    for name, value in (("ARIA_BUILD", str(tmp_path / "build")), ("ARIA_SPEED", "fast"), ("ARIA_HEADLESS", "1")):
        monkeypatch.setenv(name, value)  # the runner sets them for its kernels; restored after the test
    return root

"""Every committed notebook has the series' shape and carries the outputs of one complete run."""
import re

import nbformat
import pytest

import aria_utils as A
from aria_utils.runner import notebook_paths

NOTEBOOKS = notebook_paths()


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1 and NOTEBOOKS[0].name == "00_start_here.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_come_from_one_complete_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: cells not executed once, in order: {counts}"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: stored error output {errors[0].get('ename')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.stem[:2]}")
    assert "google.colab" in code[0] and f'REPO_URL = "{A.REPO_URL}"' in code[0], "Colab cell differs from aria_utils.REPO_URL"
    assert re.search(rf'A\.setup\("{path.stem}"', code[1]), "second code cell must call A.setup with the notebook's name"
    checks = [s for s in code if s.startswith("# NBVAL_CHECK_OUTPUT")]
    assert len(checks) == 1, "exactly one check cell"
    assert "A.record(" in "\n".join(code)
    assert "## Exercises" in md and "<details>" in md

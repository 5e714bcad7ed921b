import json

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from aria_utils import runner


def _notebook(tmp_path, source):
    nb = new_notebook(cells=[new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "98_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_notebook_records_metrics_and_summary(tmp_path):
    build = tmp_path / "build"
    path = _notebook(tmp_path, 'import aria_utils as A\nA.setup("98_tiny", check_hub=False)\nA.record("answer", 42)')
    nb, seconds, error = runner.run_notebook(path, "fast", build)
    assert error == "" and seconds > 0
    assert "[metric] answer = 42" in "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert json.loads((build / "metrics" / "98_tiny.fast.json").read_text()) == {"answer": 42}
    (build / "runs").mkdir()
    (build / "runs" / "98_tiny.fast.json").write_text(json.dumps({"stem": "98_tiny", "seconds": 1.0, "status": "ok"}))
    assert "| 98_tiny | fast | 1 | ok | answer = 42 |" in runner.summary_table("fast", build)


def test_failing_cell_is_reported(tmp_path):
    path = _notebook(tmp_path, 'raise RuntimeError("boom")')
    _, _, error = runner.run_notebook(path, "fast", tmp_path / "build")
    assert "boom" in error

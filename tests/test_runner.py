"""The headless runner on tiny notebooks written here: failures, timeouts, dead kernels, widgets, build/ only."""
import json
import os
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from aria_utils import runner


def _notebook(folder, sources, name="98_tiny"):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _record(build, stem):
    return json.loads((build / "runs" / f"{stem}.fast.json").read_text())


def _kernels():
    """Kernel processes started by this process and still there (Linux: read from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"ipykernel_launcher" in cmd:
            out.append(int(stat.parent.name))
    return out


def test_run_notebook_records_metrics_and_summary(tmp_path):
    build = tmp_path / "build"
    path = _notebook(tmp_path, ['import aria_utils as A\nA.setup("98_tiny", check_hub=False)\nA.record("answer", 42)'])
    nb, seconds, error = runner.run_notebook(path, "fast", build)
    assert error == "" and seconds > 0
    assert "[metric] answer = 42" in "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert json.loads((build / "metrics" / "98_tiny.fast.json").read_text()) == {"answer": 42}
    (build / "runs").mkdir()
    (build / "runs" / "98_tiny.fast.json").write_text(json.dumps({"stem": "98_tiny", "seconds": 1.0, "status": "ok"}))
    assert "| 98_tiny | fast | 1 | ok | answer = 42 |" in runner.summary_table("fast", build)


def test_failing_cell_is_reported(tmp_path):
    path = _notebook(tmp_path, ["x = 1", 'raise RuntimeError("boom")'])
    _, _, error = runner.run_notebook(path, "fast", tmp_path / "build")
    assert error == 'cell[1] `raise RuntimeError("boom")`: RuntimeError: boom'


def test_a_cell_past_the_timeout_fails_its_notebook_and_the_next_one_runs(tiny_repo, tmp_path):
    build = tmp_path / "build"
    slow = _notebook(tmp_path, ['print("before")', "import time; time.sleep(60)", 'print("never")'], "96_slow")
    after = _notebook(tmp_path, ['print("after")'], "97_after")
    start = time.perf_counter()
    assert runner.main(["--speed", "fast", "--timeout", "3", str(slow), str(after)]) == 1
    assert time.perf_counter() - start < 20  # 3 s, two kernel starts and shutdowns: not the 60 s sleep
    status = _record(build, "96_slow")["status"]
    assert status == "FAILED: cell[1] `import time; time.sleep(60)`: timed out (no reply within 3 s)"
    assert _record(build, "96_slow")["seconds"] < 3 + 10
    copy = nbformat.read(build / "fast" / "96_slow.ipynb", as_version=4)
    assert copy.cells[0].outputs[0]["text"] == "before\n" and copy.cells[2].outputs == []
    assert _record(build, "97_after")["status"] == "ok"
    assert "after" in nbformat.read(build / "fast" / "97_after.ipynb", as_version=4).cells[0].outputs[0]["text"]
    if Path("/proc").exists():
        assert _kernels() == []


def test_a_cell_that_kills_its_kernel_fails_its_notebook_and_the_next_one_runs(tiny_repo, tmp_path):
    build = tmp_path / "build"
    dies = _notebook(tmp_path, ["x = 1", "import os; os._exit(1)"], "96_dies")
    after = _notebook(tmp_path, ['print("after")'], "97_after")
    assert runner.main(["--speed", "fast", str(dies), str(after)]) == 1
    assert _record(build, "96_dies")["status"] == "FAILED: cell[1] `import os; os._exit(1)`: the kernel died"
    assert (build / "fast" / "96_dies.ipynb").exists()
    assert _record(build, "97_after")["status"] == "ok"
    if Path("/proc").exists():
        assert _kernels() == []


def test_a_full_run_that_computes_nothing_new_is_kept_as_warm(tiny_repo, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ARIA_CACHE", str(cache))
    tiny = str(tiny_repo / "notebooks" / "98_tiny.ipynb")
    warm = tmp_path / "build" / "runs" / "98_tiny.full.warm.json"
    assert runner.main(["--speed", "full", tiny]) == 0 and not warm.exists()  # empty cache: a first run
    cache.mkdir()
    (cache / "model-abc.pt").write_bytes(b"x")  # what an earlier run left
    assert runner.main(["--speed", "full", tiny]) == 0 and warm.exists()


def test_interact_outputs_do_not_stall_the_run(tmp_path):
    """nbclient's Output-widget stand-in used to echo each captured output to the kernel on the shell socket while
    it awaited the reply there; the echo could swallow the reply's wake-up, and the cell then waited its whole
    timeout (about a third of such cells here, every run idle until --timeout; forever without one)."""
    cell = 'def f(n=1):\n    print(str(n) * 400_000)\nwidgets.interact(f, n=(1, 9));'
    path = _notebook(tmp_path, ["import ipywidgets as widgets"] + [cell] * 6)
    nb, seconds, error = runner.run_notebook(path, "fast", tmp_path / "build", timeout=15)
    assert error == "" and seconds < 15  # one stalled cell alone would take 15 s
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    outputs = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert len(outputs) == 6 and all(len(o[0]["text"]) == 400_001 for o in outputs)  # stored for the reading edition


def test_a_run_writes_under_build_only_and_without_a_kernel_warning(tiny_repo, tmp_path, capfd):
    before = {p: p.read_bytes() for p in tiny_repo.rglob("*") if p.is_file()}
    assert runner.main(["--speed", "fast", str(tiny_repo / "notebooks" / "98_tiny.ipynb")]) == 0
    assert {p: p.read_bytes() for p in tiny_repo.rglob("*") if p.is_file()} == before  # README and notebooks untouched
    table = (tmp_path / "build" / "times-table.md").read_text()
    assert table.startswith("| speed | 98 | all | measured on |") and "| `fast` | " in table
    out, err = capfd.readouterr()
    assert table.strip() in out
    assert "without encryption" not in err  # ipykernel's warning about kernels on TCP ports
    record = _record(tmp_path / "build", "98_tiny")
    assert record["status"] == "ok" and record["cpu_model"] and "gpu" in record
    if Path("/proc").exists():
        assert _kernels() == []  # killed once the last cell replied, not left running

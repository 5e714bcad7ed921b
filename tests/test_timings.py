"""Measured times: records -> header sentences and the README table (on temporary files)."""
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from aria_utils import runner, timings


def _record(build, stem, speed, seconds, cold=True, status="ok", suffix=""):
    r = {"stem": stem, "speed": speed, "seconds": seconds, "status": status, "cpus": 2, "device": "cpu",
         "threads": 2, "cold": cold}
    (build / "runs").mkdir(parents=True, exist_ok=True)
    (build / "runs" / f"{stem}.{speed}{suffix}.json").write_text(json.dumps(r))


def test_cold_runs_are_quoted_before_later_warm_ones(tmp_path):
    _record(tmp_path, "98_tiny", "full", 240.0, cold=True, suffix=".cold")
    _record(tmp_path, "98_tiny", "full", 12.0, cold=False)          # a later re-run that loaded from cache/
    _record(tmp_path, "98_tiny", "fast", 30.0, status="FAILED: boom")
    (tmp_path / "runs" / "97_old.full.json").write_text(json.dumps({"stem": "97_old", "speed": "full", "seconds": 9,
                                                                   "status": "ok"}))  # an older runner's record
    rec = timings.quoted_records(tmp_path)
    assert ("97_old", "full") not in rec
    assert rec[("98_tiny", "full")]["seconds"] == 240.0 and ("98_tiny", "fast") not in rec
    sentence = timings.header_sentence("98_tiny", rec)
    assert sentence == ("measured by the runner on a 2-core CPU, 2 threads, from an empty `cache/`: "
                        "`full` 4 min 0 s, `fast` not measured yet")


def test_warm_runs_say_so_and_machines_are_named():
    rec = {("98_tiny", "full"): {"seconds": 95.4, "cold": False, "cpus": 2, "device": "cpu", "threads": 1},
           ("98_tiny", "fast"): {"seconds": 20.0, "cold": True, "cpus": 16, "device": "cuda", "threads": 16}}
    s = timings.header_sentence("98_tiny", rec)
    assert "`full` 95 s on a 2-core CPU, 1 thread (trained models loaded from `cache/`)" in s
    assert "`fast` 20 s on cuda (host: 16 CPU cores, 16 threads)" in s and "empty" not in s
    assert timings.header_sentence("99_none", rec) == "not measured yet"


def test_gpu_runs_name_the_gpu_and_machine_facts_are_read_without_a_benchmark():
    r = {"seconds": 20.0, "cold": True, "cpus": 16, "device": "cuda", "threads": 16, "gpu": "NVIDIA H100 80GB HBM3"}
    assert timings.header_sentence("98_tiny", {("98_tiny", "fast"): r}).startswith(
        "measured by the runner on NVIDIA H100 80GB HBM3 (host: 16 CPU cores, 16 threads), from an empty `cache/`")
    assert timings.readme_table(["98_tiny"], {("98_tiny", "fast"): r}).splitlines()[3] == \
        "| `fast` | 20 | 20 | NVIDIA H100 80GB HBM3 (host: 16 CPU cores, 16 threads) |"
    facts = timings.machine_facts()
    assert set(facts) == {"cpu_model", "gpu"} and facts["cpu_model"]


def test_readme_table_totals_only_complete_rows():
    rec = {("98_a", "full"): {"seconds": 100.4, "cold": True, "cpus": 2, "device": "cpu", "threads": 2},
           ("99_b", "full"): {"seconds": 50.0, "cold": False, "cpus": 2, "device": "cpu", "threads": 2},
           ("98_a", "fast"): {"seconds": 9.0, "cold": True, "cpus": 2, "device": "cpu", "threads": 2}}
    table = timings.readme_table(["98_a", "99_b"], rec).splitlines()
    assert table[0] == "| speed | 98 | 99 | all | measured on |"
    assert table[2] == "| `full` | 100 | 50* | 150 | a 2-core CPU, 2 threads |"
    assert table[3] == "| `fast` | 9 | – | – | a 2-core CPU, 2 threads |"


def test_warm_full_runs_get_their_own_row(tmp_path):
    _record(tmp_path, "98_a", "full", 100.0, cold=True, suffix=".cold")
    _record(tmp_path, "98_a", "full", 8.4, cold=False, suffix=".warm")
    rec = timings.quoted_records(tmp_path)
    assert rec[("98_a", "full")]["seconds"] == 100.0 and rec[("98_a", "warm")]["seconds"] == 8.4
    table = timings.readme_table(["98_a"], rec).splitlines()
    assert table[3] == "| `fast` | – | – | – |"
    assert table[4] == "| `full`, warm `cache/` | 8 | 8 | a 2-core CPU, 2 threads |"
    assert "warm" not in timings.header_sentence("98_a", rec)


def test_replace_marked_keeps_the_rest_and_refuses_missing_markers():
    assert timings.replace_marked("a <!-- times -->x<!-- /times --> b", timings.HEADER_MARKS, "y") == \
        "a <!-- times -->y<!-- /times --> b"
    with pytest.raises(ValueError, match="not found"):
        timings.replace_marked("no markers", timings.HEADER_MARKS, "y")


def test_run_facts_read_the_setup_line_and_cache_loads():
    nb = new_notebook(cells=[new_code_cell("")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "[aria] 98_tiny | speed=fast | device=cpu | threads=2 | seed=0 | hub=offline\n"))]
    assert timings.run_facts(nb, {"x.pt"}) == {"device": "cpu", "threads": 2, "cold": True}
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", name="stdout", text="[cache] loaded x.pt (delete...)\n"))
    assert timings.run_facts(nb, {"x.pt"})["cold"] is False  # it was there before the runner started
    assert timings.run_facts(nb, set())["cold"] is True  # an earlier notebook of the same run trained it


def test_store_writes_measured_times_into_header_and_readme(tiny_repo):
    path = tiny_repo / "notebooks" / "98_tiny.ipynb"
    assert runner.main(["--speed", "fast", "--store", str(path)]) == 0
    header = nbformat.read(path, as_version=4).cells[0].source
    assert "typed by hand" not in header and header.endswith(". Set `ARIA_SPEED=fast` for less.\n")
    assert "`full` not measured yet, `fast` " in header and "from an empty `cache/`" in header
    readme = (tiny_repo / "README.md").read_text()
    assert readme.startswith("# Title\n\nBefore.\n") and readme.endswith("<!-- /times-table -->\n\nAfter.\n")
    assert "| `fast` | " in readme and "old table" not in readme
    assert json.loads((tiny_repo.parent / "build" / "runs" / "98_tiny.fast.cold.json").read_text())["threads"] > 0


def test_times_option_rewrites_without_running(tiny_repo):
    _record(tiny_repo.parent / "build", "98_tiny", "full", 61.0, suffix=".cold")
    assert runner.main(["--times"]) == 0
    header = nbformat.read(tiny_repo / "notebooks" / "98_tiny.ipynb", as_version=4).cells[0].source
    assert "<!-- times -->measured by the runner on a 2-core CPU, 2 threads, from an empty `cache/`: `full` 61 s, " \
           "`fast` not measured yet<!-- /times -->" in header
    assert "| `full` | 61 | 61 | a 2-core CPU, 2 threads |" in (tiny_repo / "README.md").read_text()


def test_the_machine_kind_is_named_from_its_speed():
    slow = {"seconds": 280.0, "cold": True, "cpus": 2, "device": "cpu", "threads": 2, "matmul_gflops": 69.0}
    fast = {**slow, "seconds": 120.0, "matmul_gflops": 152.4}
    assert "on a 2-core CPU of the slower kind, 2 threads" in timings.header_sentence("98_t", {("98_t", "full"): slow})
    assert "a 2-core CPU of the faster kind (matmul about x2 the slower), 2 threads" in \
        timings.readme_table(["98_t"], {("98_t", "full"): fast})
    assert timings.machine_kind(None) == ""
    assert timings.machine_kind(140.0, 175.0) == " of the faster kind (matmul about x2-2.5 the slower)"
    later = {**fast, "matmul_gflops": 181.0}  # the same machine, measured faster an hour later: one description
    table = timings.readme_table(["98_t", "99_u"], {("98_t", "fast"): fast, ("99_u", "fast"): later})
    assert "| 120 | 120 | 240 | a 2-core CPU of the faster kind (matmul about x2-2.5 the slower), 2 threads |" in table
    sentence = timings.header_sentence("98_t", {("98_t", "full"): later, ("98_t", "fast"): fast})
    assert sentence.startswith("measured by the runner on a 2-core CPU of the faster kind (matmul about x2-2.5 the "
                               "slower), 2 threads, from an empty `cache/`: `full` 2 min 0 s, `fast` 2 min 0 s")
    gpu = {**slow, "device": "cuda", "gpu": "Tesla T4"}
    assert "| `full` | 280 | 280 | Tesla T4 (host: 2 CPU cores, 2 threads) |" in timings.readme_table(
        ["98_t"], {("98_t", "full"): gpu})
    assert 5 < timings.matmul_gflops(repeat=1) < 100_000

"""Execute notebooks headless and write the executed copies and a summary table under build/.

    python -m aria_utils.runner                      # every notebook, speed from ARIA_SPEED (default full)
    python -m aria_utils.runner --speed fast 03 04   # some notebooks, by number or path (in any folder)
    python -m aria_utils.runner --store 05           # also write the outputs back into notebooks/
    python -m aria_utils.runner --times              # run nothing: rewrite the measured times (headers, README)

A run writes under build/ only, the timing table included (build/times-table.md); `--store` and `--times`
also rewrite the README's timing table and the time sentence of the notebooks' headers, all from the records
in build/runs/ (see `aria_utils.timings`). A cell that raises, runs longer than `--timeout` seconds or kills
its kernel fails its notebook: the status names the cell, the executed copy is still written, the kernel is
shut down, and the next notebook runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from . import timings
from .checkpoints import cache_dir
from .io import atomic_write_text
from .setup import SPEEDS, repo_root

CELL_TIMEOUT = 600  # seconds per cell, `--timeout`


def notebook_paths(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks, all of them or those whose number or path is given."""
    folder = repo_root() / "notebooks"
    every = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return every
    out = []
    for s in selection:
        p = Path(s)
        hits = [p] if p.suffix == ".ipynb" else [q for q in every if q.name.startswith(s.zfill(2) + "_")]
        if not hits or not hits[0].exists():
            raise SystemExit(f"No notebook matches {s!r}; there are: {[q.name for q in every]}")
        out += hits
    return out


def _output_widget_class() -> type:
    """nbclient's stand-in for the front end of an ipywidgets Output widget (what `interact` draws into),
    minus its echo to the kernel. nbclient sends each captured output back as a comm message on the shell
    socket, raw (jupyter_client's Session.send bypasses pyzmq's asyncio wrapper), while it awaits the cell's
    execute_reply on that same socket: the send can consume the socket's edge-triggered wake-up, and the
    reply then waits unread until the cell timeout. The outputs still go into the stored widget state."""
    from nbclient.output_widget import OutputWidget

    class HeadlessOutputWidget(OutputWidget):
        def sync_state(self) -> None:
            """Send nothing to the kernel: no front end reads the kernel's copy in a headless run."""

    return HeadlessOutputWidget


def _failure(nb: "nbformat.NotebookNode", index: int | None, error: Exception, timeout: int) -> str:  # noqa: F821
    """One line: the failing cell (index in the notebook's cells, first source line) and what happened."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if isinstance(error, CellExecutionError):
        what = f"{error.ename}: {error.evalue}"
    elif isinstance(error, CellTimeoutError):
        what = f"timed out (no reply within {timeout} s)"
    elif isinstance(error, DeadKernelError):
        what = "the kernel died"
    else:
        what = f"{type(error).__name__}: {error}"
    what = (what.strip().splitlines() or ["?"])[0]
    if index is None:
        return f"before the first cell: {what}"
    first = (nb.cells[index].source.strip().splitlines() or [""])[0]
    return f"cell[{index}] `{first[:60]}`: {what}"


def run_notebook(path: Path, speed: str, build: Path,
                 timeout: int = CELL_TIMEOUT) -> tuple["nbformat.NotebookNode", float, str]:  # noqa: F821
    """Execute one notebook in its folder with `ARIA_SPEED=speed`; return it, its wall time and an error ('' if
    none). The first cell that raises, runs past `timeout` seconds or kills the kernel stops the run; the error
    names it. nbclient kills the kernel in every case, once the last cell has replied or failed."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    os.environ["ARIA_SPEED"] = speed
    os.environ["ARIA_BUILD"] = str(build)
    os.environ["ARIA_HEADLESS"] = "1"  # progress bars end in one text line: no frontend will draw widgets
    started: list[int] = []
    error = ""
    with tempfile.TemporaryDirectory(prefix="aria-kernel-") as sockets:
        # Local sockets (files in a private folder) instead of TCP ports: nothing listens on the network,
        # and the kernel has no reason to warn that its TCP traffic is not encrypted.
        ipc = {"transport": "ipc", "ip": os.path.join(sockets, "kernel")} if os.name == "posix" else {}
        # shutdown_kernel="immediate": the kernel is killed once the last cell has replied (its graceful exit,
        # freeing gigabytes of tensors, took 1-3 s of a run's wall time, and nothing of ours runs at exit).
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", config=Config(KernelManager=ipc),
                                shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(path.parent)}},
                                on_cell_execute=lambda cell, cell_index: started.append(cell_index))
        client.widget_registry["@jupyter-widgets/output"] = {"OutputModel": _output_widget_class()}
        start = time.perf_counter()
        try:
            client.execute()
        except Exception as e:  # a cell's error, a timeout, a dead kernel, a kernel that did not start
            error = _failure(nb, started[-1] if started else None, e, timeout)
        seconds = time.perf_counter() - start
    return nb, seconds, error


def _cached() -> set[str]:
    """The names of the files in `cache/` now."""
    return {p.name for p in cache_dir().glob("*")} if cache_dir().exists() else set()


def summary_table(speed: str, build: Path) -> str:
    """A markdown table over every notebook run at this speed: notebook, wall time, status, headline figures."""
    lines = ["| notebook | speed | wall time (s) | status | headline figures |", "|---|---|---|---|---|"]
    for run in sorted((build / "runs").glob(f"*.{speed}.json")):
        r = json.loads(run.read_text())
        metrics_file = build / "metrics" / f"{r['stem']}.{speed}.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        figs = "<br>".join(f"{k} = {v}" for k, v in metrics.items())
        lines.append(f"| {r['stem']} | {speed} | {r['seconds']:.0f} | {r['status']} | {figs} |")
    return "\n".join(lines) + "\n"


def times_table(build: Path) -> str:
    """The README's timing table from the records in build/runs/, written to build/times-table.md."""
    table = timings.readme_table([p.stem for p in notebook_paths()], timings.quoted_records(build))
    atomic_write_text(build / "times-table.md", table + "\n")
    return table


def write_times(build: Path, paths: list[Path], nbs: dict[Path, "nbformat.NotebookNode"] | None = None) -> None:  # noqa: F821
    """Rewrite the README's timing table, and the header sentence of `paths` in notebooks/ (or of the
    notebooks given in `nbs`, about to be stored), from the records in build/runs/."""
    import nbformat

    records = timings.quoted_records(build)
    try:
        timings.update_readme(repo_root() / "README.md", [p.stem for p in notebook_paths()], records)
    except (OSError, ValueError) as e:
        print(f"[times] README.md not updated: {e}")
    for path in paths:
        nb = (nbs or {}).get(path) or nbformat.read(path, as_version=4)
        before = nb.cells[0].source
        try:
            timings.set_header_times(nb, timings.header_sentence(path.stem, records))
        except ValueError as e:
            print(f"[times] {path.name}: header not updated ({e} in its first cell)")
        if nbs is None and nb.cells[0].source != before:
            nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    """Run notebooks, write build/<speed>/<name>.ipynb, build/summary-<speed>.md (every notebook run so far
    at that speed) and build/times-table.md; exit 1 if any notebook failed."""
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="numbers (03) or paths; default: all")
    ap.add_argument("--speed", choices=SPEEDS, default=os.environ.get("ARIA_SPEED", "full"))
    ap.add_argument("--store", action="store_true", help="write the executed notebooks back into notebooks/")
    ap.add_argument("--times", action="store_true", help="execute nothing; rewrite the times in headers and README")
    ap.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell (default: %(default)s)")
    args = ap.parse_args(argv)
    build = Path(os.environ.get("ARIA_BUILD", repo_root() / "build")).resolve()
    if args.times:
        write_times(build, notebook_paths(args.notebooks))
        print(times_table(build))
        return 0
    cached_before = _cached()
    in_cache = cached_before  # what cache/ holds before each notebook
    machine = {**timings.machine_facts(), "matmul_gflops": timings.matmul_gflops()}
    rows = []
    for path in notebook_paths(args.notebooks):
        print(f"[run] {path.name} ({args.speed}) ...", flush=True)
        nb, seconds, error = run_notebook(path, args.speed, build, args.timeout)
        now = _cached()
        added, in_cache = now - in_cache, now
        out = build / args.speed / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
        status = "ok" if not error else f"FAILED: {error[:160]}"
        print(f"[run] {path.name}: {status} in {seconds:.0f} s -> {out}", flush=True)
        row = {"stem": path.stem, "speed": args.speed, "seconds": round(seconds, 1), "status": status,
               "cpus": os.cpu_count(), **machine, **timings.run_facts(nb, cached_before),
               "finished": time.strftime("%Y-%m-%d %H:%M")}
        atomic_write_text(build / "runs" / f"{path.stem}.{args.speed}.json", json.dumps(row))
        if row["cold"] and not error:
            atomic_write_text(build / "runs" / f"{path.stem}.{args.speed}.cold.json", json.dumps(row))
        if args.speed == "full" and cached_before and not added and not error:  # a re-run that computed nothing new
            atomic_write_text(build / "runs" / f"{path.stem}.full.warm.json", json.dumps(row))
        if args.store and not error:
            write_times(build, [path], {path: nb})
            nbformat.write(nb, path)
        rows.append(row)
    table = summary_table(args.speed, build)
    atomic_write_text(build / f"summary-{args.speed}.md", table)
    print(table)
    print(times_table(build))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

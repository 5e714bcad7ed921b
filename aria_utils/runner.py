"""Execute notebooks headless and write the executed copies and a summary table under build/.

    python -m aria_utils.runner                      # every notebook, speed from ARIA_SPEED (default full)
    python -m aria_utils.runner --speed fast 03 04   # some notebooks, by number or path
    python -m aria_utils.runner --store 05           # also write the outputs back into notebooks/
    python -m aria_utils.runner --times              # run nothing: rewrite the measured times (headers, README)

Each run also rewrites the README's timing table; `--store` and `--times` rewrite the time sentence of
the notebooks' headers, all from the records in build/runs/ (see `aria_utils.timings`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import timings
from .checkpoints import cache_dir
from .io import atomic_write_text
from .setup import SPEEDS, repo_root


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


def run_notebook(path: Path, speed: str, build: Path, timeout: int = 1800) -> tuple["nbformat.NotebookNode", float, str]:  # noqa: F821
    """Execute one notebook in its folder with `ARIA_SPEED=speed`; return it, its wall time and an error (or '')."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    os.environ["ARIA_SPEED"] = speed
    os.environ["ARIA_BUILD"] = str(build)
    os.environ["ARIA_HEADLESS"] = "1"  # progress bars end in one text line: no frontend will draw widgets
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except CellExecutionError as e:
        error = str(e).strip().splitlines()[-1] if str(e).strip() else "cell error"
    return nb, time.perf_counter() - start, error


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
    """Run notebooks, write build/<speed>/<name>.ipynb and build/summary-<speed>.md (every notebook run so far
    at that speed); exit 1 if any notebook failed."""
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="numbers (03) or paths; default: all")
    ap.add_argument("--speed", choices=SPEEDS, default=os.environ.get("ARIA_SPEED", "full"))
    ap.add_argument("--store", action="store_true", help="write the executed notebooks back into notebooks/")
    ap.add_argument("--times", action="store_true", help="execute nothing; rewrite the times in headers and README")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    build = Path(os.environ.get("ARIA_BUILD", repo_root() / "build")).resolve()
    if args.times:
        write_times(build, notebook_paths(args.notebooks))
        print(timings.readme_table([p.stem for p in notebook_paths()], timings.quoted_records(build)))
        return 0
    cached_before = {p.name for p in cache_dir().glob("*")} if cache_dir().exists() else set()
    rows = []
    for path in notebook_paths(args.notebooks):
        print(f"[run] {path.name} ({args.speed}) ...", flush=True)
        nb, seconds, error = run_notebook(path, args.speed, build, args.timeout)
        out = build / args.speed / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
        status = "ok" if not error else f"FAILED: {error[:120]}"
        print(f"[run] {path.name}: {status} in {seconds:.0f} s -> {out}", flush=True)
        row = {"stem": path.stem, "speed": args.speed, "seconds": round(seconds, 1), "status": status,
               "cpus": os.cpu_count(), **timings.run_facts(nb, cached_before), "finished": time.strftime("%Y-%m-%d %H:%M")}
        atomic_write_text(build / "runs" / f"{path.stem}.{args.speed}.json", json.dumps(row))
        if row["cold"] and not error:
            atomic_write_text(build / "runs" / f"{path.stem}.{args.speed}.cold.json", json.dumps(row))
        if args.store and not error:
            write_times(build, [path], {path: nb})
            nbformat.write(nb, path)
        rows.append(row)
    table = summary_table(args.speed, build)
    atomic_write_text(build / f"summary-{args.speed}.md", table)
    write_times(build, [])
    print(table)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

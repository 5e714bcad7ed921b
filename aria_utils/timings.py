"""Measured wall times, generated from the runner's records, never typed.

The runner writes one record per notebook and speed (`build/runs/<stem>.<speed>.json`, and a copy
`<stem>.<speed>.cold.json` when the run loaded nothing that was in `cache/` before the runner started, or
`<stem>.full.warm.json` when a `full` run found `cache/` filled and added nothing to it). From them this module writes
the sentence between `<!-- times -->` and `<!-- /times -->` in each notebook's first cell and the
table between `<!-- times-table -->` and `<!-- /times-table -->` in the README. A cold run is quoted
when there is one (it includes the training), else the latest run, marked as having loaded from `cache/`.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .io import atomic_write_text
from .setup import SPEEDS, cpu_model

HEADER_MARKS = ("<!-- times -->", "<!-- /times -->")
TABLE_MARKS = ("<!-- times-table -->", "<!-- /times-table -->")
_SETUP_LINE = re.compile(r"\| device=(\S+) \| threads=(\d+) \|")


def run_facts(nb: "nbformat.NotebookNode", cached_before: set[str]) -> dict:  # noqa: F821
    """What an executed notebook says about its run: device and threads (from the set-up line), and whether it
    is `cold`: it loaded no checkpoint that was in `cache/` before the runner started (`cached_before`), so that
    a notebook reusing what an earlier one trained in the same run still counts, as in a fresh `make run`."""
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    m = _SETUP_LINE.search(text)
    loaded = set(re.findall(r"\[cache\] loaded (\S+)", text))
    return {"device": m.group(1) if m else "?", "threads": int(m.group(2)) if m else 0,
            "cold": not loaded & cached_before}


def machine_facts() -> dict:
    """What names the machine, cheaply (no benchmark): the CPU's model and, when `nvidia-smi` answers, the GPU's."""
    gpu = ""
    if shutil.which("nvidia-smi"):
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return {"cpu_model": cpu_model(), "gpu": gpu}


# The slower kind of 2-core machine, where the series' budgets are set: float32 2048 x 2048 matmul on 2 threads.
REFERENCE_GFLOPS = 69.0
FASTER_KIND = 1.5  # a machine this many times the reference or more is "the faster kind"


def matmul_gflops(repeat: int = 5) -> float:
    """The machine's speed for the series' work (about a second): best of `repeat` float32 2048 x 2048 matrix
    products on 2 threads, in GFLOP/s, the figure that tells the two kinds of 2-core machine apart."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        a @ b
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return round(2 * 2048 ** 3 / best / 1e9, 1)


def machine_kind(*gflops: float | None) -> str:
    """" of the slower kind" or " of the faster kind (matmul about x2.5 the slower)" from the `matmul_gflops` of
    one machine's runs (each ratio to the nearest half; a range such as x2-2.5 when its runs differ)."""
    ratios = [g / REFERENCE_GFLOPS for g in gflops if g]
    if not ratios:
        return ""
    if max(ratios) < FASTER_KIND:
        return " of the slower kind"
    lo, hi = (round(f(ratios) * 2) / 2 for f in (min, max))
    return f" of the faster kind (matmul about x{lo:g}{'' if lo == hi else f'-{hi:g}'} the slower)"


def quoted_records(build: Path) -> dict[tuple[str, str], dict]:
    """(stem, speed) -> the record to quote: the latest cold run if any, else the latest successful run.
    Records without the run's facts (older runners) are skipped."""
    out: dict[tuple[str, str], dict] = {}
    runs = build / "runs"
    for path in sorted(runs.glob("*.json")) if runs.exists() else []:
        r = json.loads(path.read_text())
        if r.get("status") != "ok" or r.get("speed") not in SPEEDS or "cold" not in r:
            continue  # failed, or written before the runner recorded how it ran
        if path.name.endswith(".warm.json"):
            out[(r["stem"], "warm")] = r  # a `full` re-run with the first run's models and results in cache/
            continue
        key = (r["stem"], r["speed"])
        if path.name.endswith(".cold.json") or key not in out:
            out[key] = r
    return out


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s} s" if s < 100 else f"{s // 60} min {s % 60} s"


def _machines(records: list[dict]) -> list[str]:
    """Each machine of these runs, described once: the CPU's cores, kind and threads, or the GPU and its host. Runs
    of one kind of CPU (by `machine_kind`) with the same cores and threads are one machine; its ratio a range."""
    cpus: dict[tuple[Any, str, str], list[float | None]] = {}
    others = set()
    for r in records:
        threads = f"{r.get('threads', 0)} thread{'s' if r.get('threads', 0) != 1 else ''}"
        if r.get("device", "cpu") == "cpu":
            g = r.get("matmul_gflops")
            kind = machine_kind(g).split(" (")[0]  # " of the faster kind", " of the slower kind" or ""
            cpus.setdefault((r.get("cpus", "?"), kind, threads), []).append(g)
        else:
            device = r.get("gpu") if r["device"] == "cuda" and r.get("gpu") else r["device"]
            others.add(f"{device} (host: {r.get('cpus', '?')} CPU cores, {threads})")
    cpu = {f"a {n}-core CPU{machine_kind(*gflops)}, {threads}" for (n, _, threads), gflops in cpus.items()}
    return sorted(cpu | others)


def header_sentence(stem: str, records: dict[tuple[str, str], dict]) -> str:
    """E.g. "measured on a 2-core CPU, 2 threads, from an empty `cache/`: `full` 4 min 2 s, `fast` 45 s"."""
    found = {sp: records[(stem, sp)] for sp in ("full", "fast") if (stem, sp) in records}
    if not found:
        return "not measured yet"
    machines = _machines(list(found.values()))
    all_cold = all(r.get("cold") for r in found.values())
    parts = []
    for sp in ("full", "fast"):
        r = found.get(sp)
        if r is None:
            parts.append(f"`{sp}` not measured yet")
            continue
        where = f" on {_machines([r])[0]}" if len(machines) > 1 else ""
        cache = "" if r.get("cold") else " (trained models loaded from `cache/`)"
        parts.append(f"`{sp}` {_duration(r['seconds'])}{where}{cache}")
    on = f" on {machines[0]}" if len(machines) == 1 else ""
    return f"measured by the runner{on}{', from an empty `cache/`' if all_cold else ''}: " + ", ".join(parts)


def readme_table(stems: list[str], records: dict[tuple[str, str], dict]) -> str:
    """The README's table: seconds per notebook and speed, with the machine of each row."""
    heads = [s[:2] for s in stems]
    lines = ["| speed | " + " | ".join(heads) + " | all | measured on |", "|---" * (len(heads) + 3) + "|"]
    for sp, label in (("full", "`full`"), ("fast", "`fast`"), ("warm", "`full`, warm `cache/`")):
        rows = [records.get((s, sp)) for s in stems]
        if sp == "warm" and not any(rows):
            continue
        cells = ["–" if r is None else f"{r['seconds']:.0f}" + ("" if r.get("cold") or sp == "warm" else "*")
                 for r in rows]
        total = f"{sum(r['seconds'] for r in rows):.0f}" if all(rows) else "–"
        machines = "; ".join(_machines([r for r in rows if r])) or "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {total} | {machines} |")
    return ("\n".join(lines) + "\n\nSeconds, from the records in `build/runs/`: runs from an empty `cache/`, "
            "except * (trained models loaded from `cache/`); warm `cache/`: the same `full` run again, every model "
            "and result of the first one in `cache/` (an instructor's re-run); – not measured yet.")


def replace_marked(text: str, marks: tuple[str, str], new: str) -> str:
    """Put `new` between the two markers (kept); raise ValueError when they are missing."""
    start, end = marks
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {start} ... {end} not found")
    return text[: i + len(start)] + new + text[j:]


def set_header_times(nb: "nbformat.NotebookNode", sentence: str) -> None:  # noqa: F821
    """Write the times sentence into the notebook's first cell (its header)."""
    nb.cells[0].source = replace_marked(nb.cells[0].source, HEADER_MARKS, sentence)


def update_readme(readme: Path, stems: list[str], records: dict[tuple[str, str], dict]) -> None:
    """Rewrite the README's timing table from the records."""
    text = readme.read_text()
    new = replace_marked(text, TABLE_MARKS, "\n" + readme_table(stems, records) + "\n")
    if new != text:
        atomic_write_text(readme, new)

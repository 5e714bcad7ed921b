"""The claims ledger: what a slide says, what the notebook measured, and one rule for the verdict.

Each notebook ends with "What the slides claim, and what we measured": for every testable sentence of the
lecture, one line `[claim] ID VERDICT | figures`, printed by `claim` from values computed in the run.

The rule, written once here: a difference counts when it exceeds the noise, that is the larger of the
seeds' (or draws') standard deviation and a floor (one point, 0.01, for a score in [0, 1]).

    e = compare("fine-tuned MAE", 0.571, "the same ViT from scratch", 0.482, sd=0.011, n=3)
    claim("05.recognition", "the encoder is applied ... for recognition tasks", e)
    show_ledger()          # the rows of this notebook as a table
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from html import escape

from .io import atomic_write_text
from .record import metrics_dir
from .setup import get_speed

VERDICTS = ("holds", "holds-when", "not-here")
POINT = 0.01  # one point of a score in [0, 1]


@dataclass(frozen=True)
class Evidence:
    """One measured test of a claim: `counts` says whether it came out as the slide says; `text` the figures."""

    counts: bool
    text: str


def counts(diff: float, sd: float = 0.0, floor: float = POINT) -> bool:
    """The verdict rule: a difference counts when it exceeds the larger of the noise `sd` and `floor`."""
    if sd < 0 or floor < 0:
        raise ValueError(f"sd and floor must be >= 0, not sd={sd}, floor={floor}")
    return diff > max(sd, floor)


def _fmt(v: float, unit: str) -> str:
    return f"{v:.3f}" if unit == "points" else f"{v:.3g}"


def _diff(d: float, unit: str) -> str:
    return f"{100 * d:+.1f} points" if unit == "points" else f"{d:+.3g} {unit}"


def _noise(sd: float, n: int, what: str, unit: str) -> str:
    if n <= 1:
        return ""
    shown = f"{100 * sd:.1f}" if unit == "points" else f"{sd:.2g}"
    return f", {n} {what}, sd {shown}"


def compare(label: str, value: float, baseline_label: str, baseline: float, *, sd: float = 0.0, n: int = 1,
            higher: bool = True, unit: str = "points", floor: float | None = None, what: str = "seeds") -> Evidence:
    """`label` beats `baseline_label`: by more than the noise (`sd` over `n` seeds or draws, at least `floor`).

    `unit="points"` for scores in [0, 1] (floor one point); another unit (e.g. "dB") needs its own `floor`.
    `higher=False` when lower is better (an error, a loss).
    """
    if unit != "points" and floor is None:
        raise ValueError(f"compare({label!r}): give the floor of a difference in {unit}")
    floor = POINT if floor is None else floor
    d = (value - baseline) if higher else (baseline - value)
    text = (f"{label} {_fmt(value, unit)} vs {baseline_label} {_fmt(baseline, unit)} "
            f"({_diff(value - baseline, unit)}{_noise(sd, n, what, unit)})")
    return Evidence(counts(d, sd, floor), text)


def tie(label: str, value: float, baseline_label: str, baseline: float, *, sd: float = 0.0, n: int = 1,
        unit: str = "points", floor: float | None = None, what: str = "seeds") -> Evidence:
    """`label` is within the noise of `baseline_label` (the difference does not count either way)."""
    e = compare(label, value, baseline_label, baseline, sd=sd, n=n, unit=unit, floor=floor, what=what)
    floor = POINT if floor is None else floor
    return Evidence(not counts(abs(value - baseline), sd, floor), e.text.replace(" vs ", " within noise of ", 1))


def reaches(label: str, value: float, baseline_label: str, baseline: float, *, sd: float = 0.0, n: int = 1,
            unit: str = "points", floor: float | None = None, what: str = "seeds") -> Evidence:
    """`label` reaches `baseline_label`: it is not below it by more than the noise (the rule, one-sided: the
    difference `baseline - value` does not count)."""
    e = compare(label, value, baseline_label, baseline, sd=sd, n=n, unit=unit, floor=floor, what=what)
    return Evidence(not counts(baseline - value, sd, POINT if floor is None else floor), e.text)


def below(label: str, value: float, limit: float, *, what: str = "") -> Evidence:
    """`value` is under `limit` (a numerical check, e.g. the largest difference against a reference)."""
    return Evidence(value < limit, f"{label} {value:.2g} (< {limit:.0e}{what})")


def verdict(evidence: list[Evidence], otherwise: list[Evidence] | None = None) -> str:
    """`holds` when every test counts; with `otherwise` (the other arm of a condition, where the slide's effect
    should be absent), `holds-when` when every test counts and no test of the other arm does; else `not-here`."""
    if not evidence:
        raise ValueError("a claim needs at least one measured test")
    if not all(e.counts for e in evidence):
        return "not-here"
    if otherwise is None:
        return "holds"
    if not otherwise:
        raise ValueError("holds-when needs both arms measured: `otherwise` is empty")
    return "holds-when" if not any(e.counts for e in otherwise) else "not-here"


_ROWS: dict[str, dict[str, str]] = {}  # this kernel's rows, by id, in the order they were claimed


def claim(cid: str, slide: str, *evidence: Evidence, otherwise: list[Evidence] | None = None,
          when: str = "") -> None:
    """Print `[claim] ID VERDICT | figures` for one sentence of the slide and keep the row.

    `evidence`: the tests of the sentence (all must count); `otherwise` and `when`: for a conditional claim,
    the other arm's tests and the condition in words. Rows go to build/metrics/<notebook>.<speed>.claims.json.
    """
    if not cid[:2].isdigit() or "." not in cid:
        raise ValueError(f"claim id {cid!r}: expected 'NN.name' as in the ledger, e.g. '05.mask75'")
    v = verdict(list(evidence), otherwise)
    figures = "; ".join(e.text for e in evidence)
    if otherwise is not None:
        figures += f"; otherwise{' (' + when + ')' if when else ''}: " + "; ".join(e.text for e in otherwise)
    _ROWS[cid] = {"id": cid, "verdict": v, "slide": slide, "figures": figures}
    print(f"[claim] {cid} {v} | {figures}")
    notebook = os.environ.get("ARIA_NOTEBOOK")
    if notebook:
        path = metrics_dir() / f"{notebook}.{get_speed()}.claims.json"
        rows = json.loads(path.read_text()) if path.exists() else {}
        rows[cid] = _ROWS[cid]
        atomic_write_text(path, json.dumps(rows, indent=1))


def rows(prefix: str = "") -> list[dict[str, str]]:
    """The rows claimed so far in this kernel (those whose id starts with `prefix`)."""
    return [r for cid, r in _ROWS.items() if cid.startswith(prefix)]


def ledger_html(prefix: str = "") -> str:
    """The rows as an HTML table: id, the slide's sentence, verdict, what was measured."""
    mark = {"holds": "✔ holds", "holds-when": "✔ holds when …", "not-here": "✘ not here"}
    cells = "".join(
        f"<tr><td><code>{escape(r['id'])}</code></td><td>{escape(r['slide'])}</td>"
        f"<td><b>{mark[r['verdict']]}</b></td><td>{escape(r['figures'])}</td></tr>" for r in rows(prefix))
    head = "<tr><th>id</th><th>the slide says</th><th>verdict</th><th>what we measured</th></tr>"
    return f"<table>{head}{cells}</table>"


def show_ledger(prefix: str = "") -> None:
    """Display the ledger table (HTML in Jupyter, plain lines elsewhere)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(HTML(ledger_html(prefix)))
    else:
        for r in rows(prefix):
            print(f"{r['id']:28s} {r['verdict']:10s} {r['slide']}")


__all__ = ["Evidence", "VERDICTS", "below", "claim", "compare", "counts", "ledger_html", "reaches", "rows",
           "show_ledger", "tie", "verdict"]

"""Headline figures: `record(name, value)` prints one line and keeps it in build/metrics/."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .io import atomic_write_text
from .setup import get_speed, repo_root


def metrics_dir() -> Path:
    """Where metrics JSON files go (`ARIA_BUILD` or `<repo>/build`)."""
    return Path(os.environ.get("ARIA_BUILD", repo_root() / "build")) / "metrics"


def _clean(value: object) -> object:
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.4g}")  # 4 significant digits: 0.8534, 9.5e-07
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    raise TypeError(f"record() takes a number, a string or a bool, not {type(value).__name__}")


_RECORDED: dict[str, object] = {}  # this kernel's figures, in the order recorded


def record(name: str, value: object, notebook: str | None = None) -> None:
    """Print `[metric] name = value` and add it to build/metrics/<notebook>.<speed>.json.

    Returns nothing, so that a `record(...)` ending a cell leaves no stray value in its output.
    """
    notebook = notebook or os.environ.get("ARIA_NOTEBOOK")
    if not notebook:
        raise RuntimeError("record() needs the notebook's name: call aria_utils.setup('NN_name') first.")
    value = _clean(value)
    _RECORDED[name] = value
    print(f"[metric] {name} = {value}")
    path = metrics_dir() / f"{notebook}.{get_speed()}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def show_metrics(columns: int = 2) -> None:
    """The figures recorded so far in this kernel as a compact table (name, value), `columns` pairs a row;
    long names wrap, so that the table fits a page (a notebook's or the reading edition's)."""
    from html import escape

    from IPython.display import HTML, display

    if columns < 1:
        raise ValueError(f"columns={columns}: use 1 or more (name, value) pairs a row.")
    items = [f'<td style="overflow-wrap:anywhere"><code>{escape(k)}</code></td><td>{escape(str(v))}</td>'
             for k, v in _RECORDED.items()]
    rows = ["<tr>" + "".join(items[i:i + columns]) + "</tr>" for i in range(0, len(items), columns)]
    display(HTML('<table style="font-size:0.85em;max-width:100%">' + "".join(rows) + "</table>"))

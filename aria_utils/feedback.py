"""One-line feedback on a function the student writes (the student edition, see `aria_utils.student`).

A feedback cell calls `check(name, got, want)`: `got()` runs the student's function on fixed inputs, `want`
is a reference that is not the solution's text (a PyTorch module, a second formulation, stored values).
It prints one line, "correct", "not yet" or "not written yet", and never raises.

In IPython, `install()` (called by `A.setup`) prints one line instead of a traceback when a cell calls a
function that is still a stub, and when a cell needs a name that an earlier stopped cell did not define.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# The message of a stub's NotImplementedError, as written by aria_utils.student.
STUB_MESSAGE = re.compile(r"^(?P<name>\w+) is not written yet: (?P<hint>.+)$")
_unwritten: dict[str, str] = {}  # functions last seen as stubs: name -> hint


def _leaves(x: Any, path: str = "") -> dict[str, Any]:
    """Nested dicts, lists and tuples -> {path: leaf}; a list or tuple of plain numbers is one leaf."""
    if isinstance(x, dict):
        items = [(str(k), v) for k, v in x.items()]
    elif isinstance(x, (list, tuple)) and not all(isinstance(v, (bool, int, float)) for v in x):
        items = [(f"[{i}]", v) for i, v in enumerate(x)]
    else:
        return {path: x}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_leaves(v, f"{path}, {k}" if path else k))
    return out


def _as_array(x: Any) -> np.ndarray:
    """A tensor (float64 or int64), an array, a number or a list of numbers as a NumPy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() or x.dtype == torch.bool else x.long()).numpy()
    return np.asarray(x)


def _describe(x: Any) -> str:
    """A number as 4 significant digits, anything else as its repr."""
    if isinstance(x, (torch.Tensor, np.ndarray)) and _as_array(x).size == 1:
        x = _as_array(x).item()
    return f"{x:.4g}" if isinstance(x, float) else repr(x)


def _leaf_difference(got: Any, want: Any) -> float | str:
    """Largest absolute difference of two leaves, or a sentence saying why they differ in kind."""
    if isinstance(want, (str, bool)) or want is None:
        return 0.0 if type(got) is type(want) and got == want else f"got {got!r}, want {want!r}"
    try:
        g, w = _as_array(got), _as_array(want)
        if g.shape != w.shape:
            return f"shape {g.shape} instead of {w.shape}"
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
    except (TypeError, ValueError):
        return f"got a {type(got).__name__}, want a {type(want).__name__}"
    if np.isnan(diff).any():
        return "got NaN"
    return float(diff.max()) if diff.size else 0.0


def _parts(leaves: dict[str, Any]) -> str:
    return "one value" if list(leaves) == [""] else ", ".join(leaves)


def compare(got: Any, want: Any, tol: float) -> tuple[float, str]:
    """(largest difference, "" or what differs first, in `want`'s order) of two results of one structure."""
    g, w = _leaves(got), _leaves(want)
    if g.keys() != w.keys():
        return float("inf"), f"returned {_parts(g)} instead of {_parts(w)}"
    worst = 0.0
    for key, want_leaf in w.items():
        d = _leaf_difference(g[key], want_leaf)
        where = f"{key}: " if key else ""
        if isinstance(d, str):
            return float("inf"), where + d
        if d > tol:
            one = np.size(_as_array(want_leaf)) == 1
            return d, where + (f"got {_describe(g[key])}, want {_describe(want_leaf)}" if one
                               else f"max |difference| {d:.2g}")
        worst = max(worst, d)
    return worst, ""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160] if text else ''}"


def check(name: str, got: Callable[[], Any], want: Any, *, against: str = "the reference", tol: float = 1e-6,
          hint: str = "") -> None:
    """Print one line: does `got()` equal `want` (a value, or a function of no argument giving it) within `tol`?

    Results may be tensors, arrays, numbers, bools or strings, nested in dicts, lists and tuples; the line
    names the first part that differs (in `want`'s order), so name the parts after what they check. When
    `want` itself fails (cells above not run), the line says "cannot check yet" instead.
    """
    try:
        want = want() if callable(want) else want
    except Exception as e:  # the notebook's own cells above were not run
        print(f"[feedback] {name}: cannot check yet. {against} raised {_one_line(e)}: run the cells above first.")
        return
    hint = f" Hint: {hint}" if hint else ""
    try:
        result = got()
    except NotImplementedError as e:
        stub = STUB_MESSAGE.match(str(e))
        if stub:
            _unwritten[stub["name"]] = stub["hint"]
        print(f"[feedback] {name}: not written yet. {stub['name'] if stub else 'It'} still raises NotImplementedError: "
              f"write it where it says # YOUR CODE HERE, run its cell, then this one.")
        return
    except Exception as e:
        print(f"[feedback] {name}: not yet. It raised {_one_line(e)}.{hint}")
        return
    _unwritten.clear()
    diff, what = compare(result, want, tol)
    if what:
        print(f"[feedback] {name}: not yet. {what} (against {against}).{hint}")
    else:
        print(f"[feedback] {name}: correct. Max |difference| from {against}: {diff:.2g} (tolerance {tol:g}).")


def explain(error: BaseException) -> str | None:
    """The one line shown instead of a traceback: for a stub's NotImplementedError, and for a NameError
    while some function is still a stub. None for every other error (its traceback is shown)."""
    stub = STUB_MESSAGE.match(str(error)) if isinstance(error, NotImplementedError) else None
    if stub:
        _unwritten[stub["name"]] = stub["hint"]
        return (f"[feedback] {stub['name']} is not written yet: {stub['hint']}. Write it where it says "
                f"# YOUR CODE HERE, run the feedback cell below it, then run this cell again.")
    if isinstance(error, NameError) and _unwritten:
        return (f"[feedback] {error}: a cell above stopped because {', '.join(_unwritten)} is not written yet. "
                f"Write it, then run the cells from there again.")
    return None


def _handler(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
    line = explain(value)
    if line is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    else:
        print(line, file=sys.stderr)


def install() -> None:
    """In IPython, show `explain`'s one line instead of the traceback of those errors; elsewhere nothing."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None:
        shell.set_custom_exc((NotImplementedError, NameError), _handler)

"""Progress bars that read well both live and in a stored notebook.

Live (JupyterLab, a terminal) a counter shows tqdm's bar. Headless (`ARIA_HEADLESS=1`, which the
runner and `make test` set for the kernels they start, since no frontend will draw a widget there)
it shows nothing while it runs and prints one line when it closes:

    with positions: 1000/1000 steps in 42.3 s (24 steps/s), loss=0.0007
"""
from __future__ import annotations

import os
import time


def headless() -> bool:
    """True when `ARIA_HEADLESS` is set (and not `0`): outputs will be stored, not watched."""
    return os.environ.get("ARIA_HEADLESS", "") not in ("", "0")


class Progress:
    """A counter with `update(n)`, `set_postfix(**values)` and `close()` (also a context manager)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False) -> None:
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.n, self.postfix, self.closed = 0, {}, False
        self.start = time.perf_counter()
        self._bar = None
        if not disable and not headless():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values: object) -> None:
        self.postfix = dict(values)
        if self._bar is not None:
            self._bar.set_postfix(values)

    def summary(self) -> str:
        """`desc: n/total units in t s (rate units/s), postfix`: the line printed when headless."""
        seconds = time.perf_counter() - self.start
        rate = self.n / seconds if seconds > 0 else 0.0
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        prefix = f"{self.desc}: " if self.desc else ""
        return f"{prefix}{count} {self.unit}s in {seconds:.1f} s ({rate:.{0 if rate >= 10 else 2}f} {self.unit}s/s){extra}"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif not self.disable:
            print(self.summary(), flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

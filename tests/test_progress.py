import re

import torch
import torch.nn as nn

import aria_utils as A
from aria_utils.progress import Progress


def test_headless_bar_prints_one_summary_line(monkeypatch, capsys):
    monkeypatch.setenv("ARIA_HEADLESS", "1")
    with Progress(total=5, desc="demo", unit="step") as bar:
        for _ in range(5):
            bar.update()
        bar.set_postfix(loss="0.1000")
    out = capsys.readouterr()
    assert re.fullmatch(r"demo: 5/5 steps in \d+\.\d s \([\d.]+ steps/s\), loss=0\.1000\n", out.out)
    assert out.err == ""


def test_fit_headless_ends_in_count_time_rate_and_final_loss(monkeypatch, capsys):
    monkeypatch.setenv("ARIA_HEADLESS", "1")
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    hist = A.fit(nn.Linear(3, 2), [x, y], A.classification_loss, steps=7, batch_size=16, desc="probe")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe: 7/7 steps in ")
    assert lines[0].endswith(f"loss={hist.loss[-1]:.4f}")


def test_disabled_bar_is_silent(monkeypatch, capsys):
    monkeypatch.setenv("ARIA_HEADLESS", "1")
    bar = Progress(total=3, disable=True)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().out == ""

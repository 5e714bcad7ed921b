import json
import time

import pytest
import torch

import aria_utils as A


def test_speed_default_and_choice(monkeypatch):
    monkeypatch.delenv("ARIA_SPEED", raising=False)
    assert A.get_speed() == "full"
    assert A.by_speed(fast=1, full=2) == 2
    monkeypatch.setenv("ARIA_SPEED", "fast")
    assert A.by_speed(fast=1, full=2) == 1


def test_bad_speed_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ARIA_SPEED", "turbo")
    with pytest.raises(ValueError, match="ARIA_SPEED"):
        A.get_speed()


def test_setup_seeds_and_prints_one_line(monkeypatch, capsys):
    monkeypatch.setenv("ARIA_SPEED", "fast")
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    cfg = A.setup("99_test", seed=3)
    a = torch.rand(3)
    A.setup("99_test", seed=3)
    assert torch.equal(a, torch.rand(3))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and "speed=fast" in out[0] and "hub=offline" in out[0]
    assert cfg.fast and cfg.device.type in ("cpu", "cuda", "mps") and not cfg.online
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_hub_check_does_not_hang(monkeypatch):
    monkeypatch.delenv("ARIA_OFFLINE", raising=False)
    t = time.perf_counter()
    A.hub_reachable(timeout=1.0)
    assert time.perf_counter() - t < 10


def test_record_prints_and_writes_json(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ARIA_SPEED", "fast")
    assert A.record("acc", torch.tensor(0.123456)) is None  # a cell ending in record() shows no stray value
    A.record("n", 3)
    assert "[metric] acc = 0.1235" in capsys.readouterr().out
    data = json.loads((tmp_path / "build" / "metrics" / "test.fast.json").read_text())
    assert data == {"acc": 0.1235, "n": 3}
    with pytest.raises(TypeError):
        A.record("bad", [1, 2])


def test_show_metrics_is_a_table_that_wraps(monkeypatch, tmp_path):
    import importlib

    import IPython.display

    R = importlib.import_module("aria_utils.record")  # the module (`aria_utils.record` is also the function)

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    monkeypatch.setattr(R, "_RECORDED", {"a_rather_long_metric_name": 0.5, "b": 1, "c": 2})
    R.show_metrics()
    assert shown[0].count("<tr>") == 2 and "overflow-wrap:anywhere" in shown[0]  # two pairs a row: 3 -> 2 rows
    with pytest.raises(ValueError, match="columns"):
        R.show_metrics(columns=0)

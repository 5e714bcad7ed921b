"""Tests for aria_utils.finetune: encoder + linear head trained end to end on a few labels."""
import copy
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from aria_utils import finetune as FT
from aria_utils.representation import ConvEncoder
from test_protocol import tiny_data

RUN = dict(steps=60, batch_size=50, progress=False)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("ARIA_SPEED", "fast")


def tiny_encoder() -> ConvEncoder:
    torch.manual_seed(1)
    return ConvEncoder(dim=16, width=8, size=28)


def test_classifier_shape():
    assert FT.Classifier(tiny_encoder(), 16)(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_train_classifier_learns_and_leaves_the_encoder_alone():
    enc = tiny_encoder()
    before = copy.deepcopy(enc.state_dict())
    acc = FT.train_classifier(enc, 10, tiny_data(), **RUN)
    assert acc > 0.5                                              # chance is 0.1
    assert enc.training and all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())


def test_train_classifier_caches_with_config(capsys):
    data, cfg = tiny_data(), {"encoder": "tiny"}
    acc = FT.train_classifier(tiny_encoder(), 10, data, config=cfg, **RUN)
    assert "[cache] loaded" not in capsys.readouterr().out
    again = FT.train_classifier(tiny_encoder(), 10, data, config=cfg, **RUN)
    assert "[cache] loaded" in capsys.readouterr().out and again == acc
    assert len(list(Path(os.environ["ARIA_CACHE"]).glob("classifier-n10-*.pt"))) == 1


def test_encoder_lr_zero_trains_only_the_head():
    enc = tiny_encoder()
    FT.train_classifier(enc, 10, tiny_data(), encoder_lr=0.0, augment_size=28, config={"encoder": "frozen"}, **RUN)
    [path] = Path(os.environ["ARIA_CACHE"]).glob("classifier-n10-*.pt")
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(state[f"encoder.{k}"], p) for k, p in enc.named_parameters())
    torch.manual_seed(0)                                          # the head's initial weights (seed=0)
    assert not torch.allclose(state["head.weight"], nn.Linear(16, 10).weight)


def test_train_classifier_run_returns_the_history_also_when_loaded():
    data, cfg = tiny_data(), {"encoder": "tiny, with history"}
    acc, hist = FT.train_classifier_run(tiny_encoder(), 10, data, config=cfg, **RUN)
    assert hist.steps == RUN["steps"] and len(hist.loss) == RUN["steps"]
    acc2, hist2 = FT.train_classifier_run(tiny_encoder(), 10, data, config=cfg, **RUN)
    assert acc2 == acc and hist2.loss == hist.loss

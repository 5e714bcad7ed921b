import pytest
import torch
import torch.nn as nn

import aria_utils as A
from aria_utils.checkpoints import checkpoint_path


def test_train_or_load_round_trip(capsys):
    calls = []

    def train(m):
        calls.append(1)
        nn.init.constant_(m.weight, 2.0)
        return {"history": [1.0, 0.5]}

    cfg = {"lr": 1e-3, "speed": "fast"}
    a = nn.Linear(3, 2)
    meta = A.train_or_load("toy", cfg, a, train)
    assert meta == {"history": [1.0, 0.5], "loaded": False}
    b = nn.Linear(3, 2)
    meta = A.train_or_load("toy", cfg, b, train)
    assert meta["loaded"] and len(calls) == 1 and torch.equal(a.weight, b.weight)
    # another config is another file: trains again
    A.train_or_load("toy", {**cfg, "lr": 1e-2}, nn.Linear(3, 2), train)
    assert len(calls) == 2


def test_corrupt_checkpoint_is_retrained_not_used(capsys):
    cfg = {"x": 1}
    path = checkpoint_path("toy", cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a checkpoint")
    m = nn.Linear(3, 2)

    def train(mod):
        nn.init.zeros_(mod.weight)

    meta = A.train_or_load("toy", cfg, m, train)
    assert not meta["loaded"] and "not a readable checkpoint" in capsys.readouterr().out
    assert torch.count_nonzero(m.weight) == 0
    with pytest.raises(A.CheckpointError, match="readable"):
        path.write_bytes(b"garbage")
        A.load_checkpoint(path, m)


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "m.pt"
    A.save_checkpoint(p, nn.Linear(3, 2), {"a": 1})
    with pytest.raises(A.CheckpointError, match="does not fit"):
        A.load_checkpoint(p, nn.Linear(4, 2))
    with pytest.raises(A.CheckpointError, match="another config"):
        A.load_checkpoint(p, nn.Linear(3, 2), {"a": 2})
    with pytest.raises(FileNotFoundError):
        A.load_checkpoint(tmp_path / "none.pt", nn.Linear(3, 2))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary file

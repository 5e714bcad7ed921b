import pytest
import torch
import torch.nn as nn

import aria_utils as A
from aria_utils.checkpoints import checkpoint_path, compute_or_load
from aria_utils.fingerprint import code_fingerprint


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
    m = nn.Linear(3, 2)

    def train(mod):
        nn.init.zeros_(mod.weight)

    path = checkpoint_path("toy", cfg, code_fingerprint(train, m))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a checkpoint")

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


# A notebook's cell, as the kernel compiles it: module `__main__`, source in a file that `inspect` can read.
NOTEBOOK = """
import torch
import torch.nn as nn


def loss(m, x):
    return (m(x) ** 2).mean()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


def train(m):
    CALLS.append(1)
    opt = torch.optim.SGD(m.parameters(), 0.1)
    for _ in range(3):
        opt.zero_grad(); loss(m, torch.ones(4, 3)).backward(); opt.step()
    return {}


def features():
    CALLS.append(1)
    return {"f": torch.arange(6.0).reshape(2, 3) * SCALE(), "n": 2}


def SCALE():
    return 2.0
"""


def run_cell(tmp_path, source: str, name: str = "cell.py") -> dict:
    """Execute `source` as a notebook cell would be: globals of `__main__`, source readable by inspect."""
    f = tmp_path / name
    f.write_text(source)
    g = {"__name__": "__main__", "CALLS": []}
    exec(compile(source, str(f), "exec"), g)
    return g


def test_editing_the_loss_retrains_and_the_same_code_loads(tmp_path, capsys):
    nb = run_cell(tmp_path, NOTEBOOK)
    A.train_or_load("net", {"lr": 0.1}, nb["Net"](), nb["train"])
    again = run_cell(tmp_path, NOTEBOOK, "again.py")                   # the same cells run again, a new kernel
    meta = A.train_or_load("net", {"lr": 0.1}, again["Net"](), again["train"])
    assert meta["loaded"] and again["CALLS"] == []
    edited = run_cell(tmp_path, NOTEBOOK.replace("** 2).mean()", "** 2).sum()"), "edited.py")  # the loss only
    meta = A.train_or_load("net", {"lr": 0.1}, edited["Net"](), edited["train"])
    assert not meta["loaded"] and edited["CALLS"] == [1]
    model_edit = run_cell(tmp_path, NOTEBOOK.replace("return self.fc(x)", "return self.fc(x).relu()"), "m.py")
    assert code_fingerprint(model_edit["train"], model_edit["Net"]()) != code_fingerprint(nb["train"], nb["Net"]())


def test_derived_results_are_cached_by_code(tmp_path, capsys):
    nb = run_cell(tmp_path, NOTEBOOK)
    first = compute_or_load("feats", {"n": 2}, nb["features"])
    again = run_cell(tmp_path, NOTEBOOK, "again.py")
    second = compute_or_load("feats", {"n": 2}, again["features"])
    assert again["CALLS"] == [] and torch.equal(first["f"], second["f"]) and second["n"] == 2
    edited = run_cell(tmp_path, NOTEBOOK.replace("return 2.0", "return 3.0"), "edited.py")  # a helper it calls
    third = compute_or_load("feats", {"n": 2}, edited["features"])
    assert edited["CALLS"] == [1] and torch.equal(third["f"], first["f"] * 1.5)
    assert compute_or_load("feats", {"n": 3}, again["features"]) is not None and again["CALLS"] == [1]


def test_fingerprint_follows_the_package_not_other_libraries():
    import aria_utils.training as T

    def a(x):
        return T.accuracy(x)

    def b(x):
        return torch.relu(x)

    assert code_fingerprint(a) != code_fingerprint(b)
    assert code_fingerprint(a) == code_fingerprint(a) and len(code_fingerprint(a)) == 12

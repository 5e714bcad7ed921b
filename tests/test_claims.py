import json

import pytest

from aria_utils import claims as C
from aria_utils.record import metrics_dir
from aria_utils.setup import get_speed


def test_a_difference_inside_the_noise_does_not_count():
    assert not C.counts(0.02, sd=0.03)           # inside the seeds' sd
    assert not C.counts(0.008)                   # under one point
    assert C.counts(0.04, sd=0.03)
    assert not C.compare("a", 0.52, "b", 0.50, sd=0.03, n=3).counts
    assert C.compare("a", 0.58, "b", 0.50, sd=0.03, n=3).counts
    assert C.compare("error", 0.2, "mean guess", 0.6, higher=False, unit="MSE", floor=0.01).counts
    with pytest.raises(ValueError):
        C.counts(0.1, sd=-1)
    with pytest.raises(ValueError, match="floor"):
        C.compare("psnr", 25.0, "noisy", 20.0, unit="dB")


def test_tie_counts_only_inside_the_noise():
    assert C.tie("a", 0.805, "b", 0.80).counts
    assert C.tie("a", 0.83, "b", 0.80, sd=0.04, n=3).counts
    assert not C.tie("a", 0.90, "b", 0.80, sd=0.04, n=3).counts


def test_verdicts():
    yes, no = C.Evidence(True, "x 1"), C.Evidence(False, "y 2")
    assert C.verdict([yes, yes]) == "holds"
    assert C.verdict([yes, no]) == "not-here"
    assert C.verdict([yes], otherwise=[no]) == "holds-when"      # effect present in one arm, absent in the other
    assert C.verdict([yes], otherwise=[yes]) == "not-here"       # present in both: the condition does not matter
    with pytest.raises(ValueError):
        C.verdict([yes], otherwise=[])                            # both arms must be measured
    with pytest.raises(ValueError):
        C.verdict([])


def test_claim_prints_the_ledger_line_and_keeps_the_row(capsys):
    e = C.compare("fine-tuned MAE", 0.571, "the same ViT from scratch", 0.482, sd=0.011, n=3)
    C.claim("05.recognition", "the encoder is applied to uncorrupted images for recognition", e)
    out = capsys.readouterr().out
    assert out.startswith("[claim] 05.recognition holds | fine-tuned MAE 0.571 vs the same ViT from scratch 0.482")
    assert "+8.9 points, 3 seeds, sd 1.1" in out
    rows = json.loads((metrics_dir() / f"test.{get_speed()}.claims.json").read_text())
    assert rows["05.recognition"]["verdict"] == "holds"
    assert "<td><b>✔ holds</b></td>" in C.ledger_html("05.")
    with pytest.raises(ValueError, match="NN.name"):
        C.claim("recognition", "x", e)


def test_claims_check_reads_the_line():
    """The line matches the pattern the ledger's checker reads."""
    import re
    line = re.compile(r"\[claim\]\s+(\S+)\s+(holds-when|holds|not-here)\s*\|\s*(.*)")
    e = C.compare("counting, captions with counts", 0.9, "chance", 0.25)
    off = C.compare("counting, captions rarely with counts", 0.255, "chance", 0.25)
    C.claim("08.counting", "fails on counting", e, otherwise=[off], when="rare counts")
    r = C.rows("08.")[0]
    m = line.search(f"[claim] {r['id']} {r['verdict']} | {r['figures']}")
    assert m and m.group(2) == "holds-when" and re.search(r"\d", m.group(3))


def test_reaches_is_the_one_sided_rule() -> None:
    assert C.reaches("a", 0.52, "b", 0.53, sd=0.02, n=3).counts  # below, within the noise
    assert C.reaches("a", 0.60, "b", 0.53).counts  # above
    e = C.reaches("a", 0.45, "b", 0.53, sd=0.03, n=3)
    assert not e.counts and "a 0.450 vs b 0.530 (-8.0 points, 3 seeds, sd 3.0)" == e.text

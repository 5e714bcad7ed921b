"""The student edition (`make student`): what it leaves out, its feedback cells, and the way back to the
instructor notebooks. Region and feedback cells run in a plain namespace with the notebook's import cell and
cheap stand-ins for the earlier cells they read; only notebook 06 is executed whole (about 15 s in fast)."""
import contextlib
import io
import re

import nbformat
import pytest

from aria_utils import feedback
from aria_utils import student as S
from aria_utils.runner import notebook_paths, run_notebook

INSTRUCTOR = {p.stem: nbformat.read(p, as_version=4) for p in notebook_paths()}
WITH_REGIONS = [stem for stem, nb in INSTRUCTOR.items() if S.find_regions(nb)]
VERDICT = re.compile(r"^\[feedback\] .+?: (correct|not yet|not written yet)\. ")

# What the region and feedback cells read from earlier cells (data, models), cheaply: code, or the notebook's
# own cells named by a line they hold.
CONTEXT = {
    "01_transfer_learning": "F_S, info = A.load_efficientnet_lite(0)\n"
                            "F_rand, _ = A.load_efficientnet_lite(0, pretrained=False)\nC = 10",
    "02_multitask_learning": "S = 48",
    "04_simclr": ["def nt_xent_formula(z1, z2, tau):"],
    "05_mae": "patches = torch.rand(8, 64, 16)",
    "06_attention_step_by_step": ["d, k, m, H = 512, 64, 2048, 8  # the classic transformer parameters",
                                  "x = embed(sentence)", 'Q = torch.einsum("id,hdk->hik", x, P["W_q"])'],
    "07_vit_attention_maps": "alphas = torch.rand(2, 4, 4, 37, 37).softmax(-1)",
}

# A plausible mistake per region, in notebook order (each replaces the whole region).
WRONG = {
    "01_transfer_learning": ["    pass  # keeps ImageNet's 1000-way head",
                             "    for p in module.parameters():\n        p.requires_grad_(False)\n"
                             "    return module  # BatchNorm left in training mode"],
    "02_multitask_learning": ["    L_t = {t: ell[t].mean() for t in TASKS}  # missing labels counted\n"
                              "    L = sum(w_t * L_t[t] for w_t, t in zip(w, TASKS))"],
    "03_autoencoder": ["    return ((x_hat - x) ** 2).mean()  # averaged over the pixels too"],
    "04_simclr": ["    N = len(z1)\n    z = F.normalize(torch.cat([z1, z2]), dim=1)\n"
                  "    positives = torch.cat([torch.arange(N, 2 * N), torch.arange(0, N)])\n"
                  "    return F.cross_entropy(z @ z.T / tau, positives)  # k = i left in"],
    "05_mae": ["    ids_shuffle = noise.argsort(dim=1)\n    ids_restore = ids_shuffle.argsort(dim=1)\n"
               "    z_visible = torch.gather(z, 1, ids_shuffle[:, :len_keep, None].expand(-1, -1, d))\n"
               "    mask = torch.ones(B, L)\n    mask[:, :len_keep] = 0  # left in shuffled order\n"
               "    return z_visible, mask, ids_restore"],
    "06_attention_step_by_step": [
        "    return torch.softmax(Q @ K.transpose(-2, -1) + bias, dim=-1)  # no 1 / sqrt(k)",
        "    return torch.einsum(\"hik,hkd->id\", alpha @ V, W_c) / len(alpha)  # a mean over h",
        "    mean = v.mean(-1, keepdim=True)\n"
        "    return gamma * (v - mean) / v.std(-1, keepdim=True) + beta  # Bessel, no eps"],
    "07_vit_attention_maps": ["    R = torch.eye(alphas.shape[-1]).expand(len(alphas), -1, -1)\n"
                              "    for l in range(alphas.shape[1]):\n"
                              "        R = alphas[:, l].mean(dim=1) @ R  # no skip connection\n    return R"],
    "08_clip_zero_shot": ["    s = v @ u.T / tau  # not normalised\n"
                          "    l_vu, l_uv = torch.logsumexp(s, 1) - s.diag(), torch.logsumexp(s.T, 1) - s.diag()\n"
                          "    return (lam * l_vu + (1 - lam) * l_uv).mean()"],
    "09_sam_ambiguity": ["    k_star = l.argmin(dim=1)\n    iou = sam_toy.mask_iou(logits.detach() > 0, m[:, None])\n"
                         "    return (l.mean(dim=1) + lam * ((s_hat - iou) ** 2).mean(dim=1)).mean(), k_star  # mean"],
}


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.split("\n") if line.strip()}


def test_student_build_writes_nine_notebooks_without_solutions_or_outputs(tmp_path):
    assert S.main(["--out", str(tmp_path)]) == 0
    written = sorted(p.stem for p in tmp_path.glob("*.ipynb"))
    assert written == WITH_REGIONS and [s[:2] for s in written] == [f"{i:02d}" for i in range(1, 10)]
    for stem in written:
        inst, stud = INSTRUCTOR[stem], nbformat.read(tmp_path / f"{stem}.ipynb", as_version=4)
        regions = S.find_regions(inst)
        md = [c.source for c in inst.cells if c.cell_type == "markdown"]
        code = [c.source for c in inst.cells if c.cell_type == "code"]
        for r in regions:
            code = [c.replace(r.text, "") for c in code]
        outside = _lines("\n".join(code + [S.SOLUTION.sub("", m) for m in md]))  # what the instructor shows openly
        secret = _lines("\n".join(r.text for r in regions)) - outside
        solutions = _lines("\n".join(b for m in md for b in S.SOLUTION.findall(m))) - outside
        text = _lines("\n".join(c.source for c in stud.cells))
        assert secret and solutions
        assert not secret & text, f"{stem}: region lines left: {sorted(secret & text)[:3]}"
        assert not solutions & text, f"{stem}: exercise solution lines left: {sorted(solutions & text)[:3]}"
        assert "SOLUTION" not in "".join(c.source for c in stud.cells if c.cell_type == "code")
        assert "<summary>Solution" not in "".join(c.source for c in stud.cells)
        cells = [c for c in stud.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None and "execution" not in c.metadata for c in cells)
        assert "widgets" not in stud.metadata
        stubs = [m for c in cells for m in S.STUB.findall(c.source)]
        assert len(stubs) == len(regions)


@pytest.mark.parametrize("stem", WITH_REGIONS)
def test_student_round_trip_gives_the_instructor_code(stem):
    inst = INSTRUCTOR[stem]
    back = S.put_back(S.student_edition(inst), [r.text for r in S.find_regions(inst)])
    assert [c.source for c in back.cells if c.cell_type == "code"] == \
           [c.source for c in inst.cells if c.cell_type == "code"]


def _feedback_cells(nb, regions) -> list[tuple[int, int]]:
    """(region cell, feedback cell) index pairs: the feedback cell is the code cell right after its region cell."""
    pairs = []
    for i in sorted({r.cell for r in regions}):
        assert nb.cells[i + 1].cell_type == "code" and "A.feedback.check(" in nb.cells[i + 1].source, \
            f"cell {i}: no feedback cell right after the region"
        pairs.append((i, i + 1))
    return pairs


@pytest.mark.parametrize("stem", WITH_REGIONS)
def test_student_feedback_says_not_written_not_yet_and_correct(stem, monkeypatch):
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    inst = INSTRUCTOR[stem]
    regions = S.find_regions(inst)
    student = S.student_edition(inst)
    code = [c.source for c in inst.cells if c.cell_type == "code"]
    ns: dict = {}
    context = CONTEXT.get(stem, "")
    sources = [context] if isinstance(context, str) else [next(s for s in code if line in s) for line in context]
    with contextlib.redirect_stdout(io.StringIO()):
        for source in [code[1]] + sources:  # the import cell (imports and A.setup), then the context
            exec(source, ns)
    variants = {"not written yet": student, "not yet": S.put_back(student, WRONG[stem]),
                "correct": S.put_back(student, [r.text for r in regions])}
    for want, nb in variants.items():
        for region_cell, feedback_cell in _feedback_cells(inst, regions):
            cells = {c.id: c.source for c in nb.cells}
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    exec(cells[inst.cells[region_cell].id], ns)  # the region cell may also call the function
                except NotImplementedError as e:
                    assert want == "not written yet" and feedback.STUB_MESSAGE.match(str(e)), e
                except NameError as e:  # a value an earlier stub did not compute (the kernel explains it)
                    assert want == "not written yet", e
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(cells[inst.cells[feedback_cell].id], ns)
            lines = out.getvalue().strip("\n").split("\n")
            assert len(lines) == 1 and VERDICT.match(lines[0]), lines
            assert VERDICT.match(lines[0])[1] == want, f"{want} expected: {lines[0]}"


def _expressions(code: str) -> set[str]:
    """The code lines of `code` without comments, spaces, `return` or an assignment's target: what they compute."""
    out = set()
    for line in code.split("\n"):
        line = re.sub(r"\s+", "", line.split("#")[0])
        line = re.sub(r"^(return|[\w.,\[\]\"']+=(?!=))", "", line)
        if len(line) >= 8:
            out.add(line)
    return out


def test_student_06_shows_no_stub_answer_above_its_stub():
    """In 06's student edition no code cell above a stub computes what the stub's answer computes (e.g. the
    step-by-step lines of equations (2)-(4) above a block that asks for them)."""
    inst = INSTRUCTOR["06_attention_step_by_step"]
    student = S.student_edition(inst)
    ids = [c.get("id") for c in student.cells]
    for r in S.find_regions(inst):
        answer = _expressions("\n".join(r.text.split("\n")[1:-1]))
        above = [c.source for c in student.cells[:ids.index(inst.cells[r.cell].id)] if c.cell_type == "code"]
        shown = {a for a in answer for line in _expressions("\n".join(above)) if a in line}
        assert answer and not shown, f"{r.name}: its answer is on the page above its stub: {sorted(shown)}"


def test_student_notebook_with_solutions_back_runs_and_says_correct(tmp_path, monkeypatch):
    """The student edition with the solutions put back, run in a kernel up to its last feedback cell: every
    feedback cell says "correct". (Its code is the instructor's, cell for cell: the round-trip test; nbval runs
    that code end to end.)"""
    monkeypatch.setenv("ARIA_SPEED", "fast")
    stem = "06_attention_step_by_step"  # four regions; the others rely on the textual round trip
    inst = INSTRUCTOR[stem]
    back = S.put_back(S.student_edition(inst), [r.text for r in S.find_regions(inst)])
    last = max(i for i, c in enumerate(back.cells) if c.get("id", "").startswith("feedback-"))
    back.cells = back.cells[:last + 1]
    path = tmp_path / f"{stem}.ipynb"
    nbformat.write(back, path)
    nb, _, error = run_notebook(path, "fast", tmp_path / "build")
    assert not error
    feedback_out = [c.outputs[0]["text"] for c in nb.cells if c.get("id", "").startswith("feedback-")]
    assert len(feedback_out) == 4 and all(": correct. " in t for t in feedback_out)


def test_student_stub_errors_print_one_line_in_a_kernel():
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "from aria_utils import feedback\nfeedback.install()",
        'def f():\n    raise NotImplementedError("f is not written yet: y = 2 x, a scalar")',
        "y = f()",
        "print(y)",
        'raise ValueError("a real bug")')]
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=60).execute()
    outputs = [c.outputs for c in nb.cells]
    assert [o.output_type for o in outputs[2]] == ["stream"]
    assert outputs[2][0]["text"].startswith("[feedback] f is not written yet: y = 2 x, a scalar. Write it")
    assert outputs[3][0]["text"].startswith("[feedback] name 'y' is not defined: a cell above stopped because f")
    assert outputs[4][0].output_type == "error" and outputs[4][0].ename == "ValueError"  # a traceback as usual


def test_student_feedback_lines(capsys):
    import torch

    def stub():
        raise NotImplementedError("stub is not written yet: a hint")

    feedback.check("f", lambda: {"a": torch.ones(3), "b": 2}, {"a": torch.ones(3), "b": 2})
    feedback.check("f", lambda: {"a": torch.ones(3), "b": 3}, {"a": torch.ones(3), "b": 2}, hint="b is 2")
    feedback.check("f", lambda: torch.ones(2), torch.ones(3))
    feedback.check("f", lambda: 1 / 0, 1.0)
    feedback.check("f", stub, 1.0)
    assert feedback.explain(NameError("name 'z' is not defined")).startswith("[feedback] name 'z' is not defined")
    feedback.check("f", lambda: 1.0, lambda: undefined_name)  # noqa: F821
    lines = capsys.readouterr().out.strip().split("\n")
    assert lines[0].startswith("[feedback] f: correct. Max |difference| from the reference: 0 ")
    assert lines[1] == "[feedback] f: not yet. b: got 3, want 2 (against the reference). Hint: b is 2"
    assert lines[2].startswith("[feedback] f: not yet. shape (2,) instead of (3,)")
    assert lines[3].startswith("[feedback] f: not yet. It raised ZeroDivisionError: division by zero.")
    assert lines[4].startswith("[feedback] f: not written yet. stub still raises NotImplementedError")
    assert lines[5].startswith("[feedback] f: cannot check yet.")
    feedback.check("f", lambda: 1.0, 1.0)  # a function that runs: nothing is a stub any more
    assert feedback.explain(NameError("name 'z' is not defined")) is None
    assert feedback.explain(NotImplementedError("a library's own")) is None


def test_student_markers_are_checked():
    def nb(source):
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])

    ok = nb("def f(x):\n    # BEGIN SOLUTION: return 2 x\n    return 2 * x\n    # END SOLUTION\n\n\nprint(f(1))")
    [r] = S.find_regions(ok)
    assert (r.name, r.hint, r.indent) == ("f", "return 2 x", "    ")
    stub = S.student_edition(ok).cells[1].source
    assert stub.startswith('def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError(\n        "f is not written')
    assert S.put_back(S.student_edition(ok), [r.text]).cells[0].source == ok.cells[0].source
    for bad in ("x = 1\n# BEGIN SOLUTION: hint\nx = 2\n# END SOLUTION",          # not inside a function
                "def f():\n    # BEGIN SOLUTION: hint\n    return 1",               # no END
                "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION",  # no hint
                "def f():\n    return 1\n    # END SOLUTION"):                      # no BEGIN
        with pytest.raises(ValueError):
            S.find_regions(nb(bad))
    md = "**1.** Do it.\n\n<details><summary>Solution</summary>\n\n```python\nx = 1\n```\n</details>\n\n**2.** Next."
    assert S.strip_solutions(md) == "**1.** Do it.\n\n**2.** Next."

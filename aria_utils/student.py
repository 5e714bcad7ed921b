"""Build the student edition of the notebooks from the instructor ones (the committed notebooks).

    python -m aria_utils.student              # build/student/NN_*.ipynb for every notebook with a solution
    python -m aria_utils.student --out DIR 08 # some notebooks, elsewhere

In a code cell, the lines a student should write are marked, inside the function they belong to, by

        # BEGIN SOLUTION: <one-line hint: what to compute, the shapes>
        ...
        # END SOLUTION

(nbgrader's convention, plus the hint). The student edition replaces each marked region, markers included, by

        # YOUR CODE HERE
        raise NotImplementedError(
            "<function> is not written yet: <hint>")

clears every output, removes the exercise solutions (`<details><summary>Solution</summary> ... </details>`
in markdown) and adds a note under the title. `put_back` does the reverse for the code (used by the tests).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .runner import notebook_paths
from .setup import repo_root

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION: (?P<hint>\S.*?)\s*$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
DEF = re.compile(r"^(?P<indent>[ \t]*)def (?P<name>\w+)\(")
YOUR_CODE = "# YOUR CODE HERE"
STUB = re.compile(r'^[ \t]*# YOUR CODE HERE\n[ \t]*raise NotImplementedError\(\n[ \t]*"(?:[^"\\\n]|\\.)*"\)$',
                  re.MULTILINE)  # what Region.stub writes
SOLUTION = re.compile(r"\n*<details>\s*<summary>\s*Solution\s*</summary>.*?</details>\n*", re.DOTALL | re.IGNORECASE)
NOTE_ID = "student-edition"


@dataclass(frozen=True)
class Region:
    """One marked solution: its code cell (index in the notebook), function, hint, indentation and text."""

    cell: int
    name: str
    hint: str
    indent: str
    text: str  # the lines from BEGIN SOLUTION to END SOLUTION, both included

    @property
    def stub(self) -> str:
        message = json.dumps(f"{self.name} is not written yet: {self.hint}", ensure_ascii=False)  # see feedback.py
        return f"{self.indent}{YOUR_CODE}\n{self.indent}raise NotImplementedError(\n{self.indent}    {message})"


def find_regions(nb: nbformat.NotebookNode) -> list[Region]:
    """Every marked region of a notebook, in order; ValueError when markers are unbalanced or outside a function."""
    regions = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        start = None
        for j, line in enumerate(lines):
            begin = BEGIN.match(line)
            if "BEGIN SOLUTION" in line and not begin:
                raise ValueError(f"cell {i}, line {j + 1}: write the marker as '# BEGIN SOLUTION: <hint>'")
            if begin:
                if start is not None:
                    raise ValueError(f"cell {i}, line {j + 1}: BEGIN SOLUTION inside another region")
                start = j
            elif END.match(line):
                if start is None:
                    raise ValueError(f"cell {i}, line {j + 1}: END SOLUTION without BEGIN SOLUTION")
                first = BEGIN.match(lines[start])
                owner = [d for d in map(DEF.match, lines[:start]) if d and len(d["indent"]) < len(first["indent"])]
                if not owner:
                    raise ValueError(f"cell {i}, line {start + 1}: a region must sit inside a function")
                regions.append(Region(i, owner[-1]["name"], first["hint"], first["indent"],
                                      "\n".join(lines[start: j + 1])))
                start = None
        if start is not None:
            raise ValueError(f"cell {i}, line {start + 1}: BEGIN SOLUTION without END SOLUTION")
    return regions


def strip_solutions(markdown: str) -> str:
    """Markdown without its `<details><summary>Solution</summary> ... </details>` blocks."""
    return SOLUTION.sub("\n\n", markdown).strip("\n")


def student_edition(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition of an instructor notebook (a new notebook; `nb` is unchanged)."""
    regions = find_regions(nb)
    out = copy.deepcopy(nb)
    out.metadata.pop("widgets", None)  # stored widget views are outputs too
    for r in regions:
        out.cells[r.cell].source = out.cells[r.cell].source.replace(r.text, r.stub, 1)
    cells = []
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown":
            cell.source = strip_solutions(cell.source)
            if not cell.source.strip():
                continue
        cells.append(cell)
    names = " and ".join(dict.fromkeys(f"`{r.name}`" for r in regions))
    note = nbformat.v4.new_markdown_cell(
        f"**Student edition.** Write the lines marked `{YOUR_CODE}` in {names}. The cell just after each one "
        "gives feedback: *correct*, *not yet* (with a hint) or *not written yet*. A cell that needs a function "
        "you have not written yet says which one: write it, then run the cells from there again. Trained models "
        "are cached under the code that trained them: change a function and the models that use it retrain.",
        id=NOTE_ID)
    at = 1 if cells and cells[0].cell_type == "markdown" else 0  # under the title
    out.cells = cells[:at] + [note] + cells[at:]
    return out


def put_back(nb: nbformat.NotebookNode, texts: Sequence[str]) -> nbformat.NotebookNode:
    """A copy of a student notebook without the note, its stubs replaced in order by `texts` (e.g. the regions')."""
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if c.get("id") != NOTE_ID]
    todo = list(texts)
    for cell in (c for c in out.cells if c.cell_type == "code"):
        pos = 0
        while found := STUB.search(cell.source, pos):
            if not todo:
                raise ValueError(f"the notebook has more stubs than the {len(texts)} texts given")
            text = todo.pop(0)
            cell.source = cell.source[:found.start()] + text + cell.source[found.end():]
            pos = found.start() + len(text)
    if todo:
        raise ValueError(f"{len(todo)} of the {len(texts)} texts found no stub")
    return out


def build(paths: Sequence[Path], out_dir: Path) -> list[Path]:
    """Write the student edition of every notebook in `paths` that has a marked region; return the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        regions = find_regions(nb)
        if not regions:
            continue
        target = out_dir / path.name
        nbformat.write(student_edition(nb), target)
        print(f"[student] {path.name}: {len(regions)} region(s) in {', '.join(r.name for r in regions)} -> {target}")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """`make student`: write the student editions; exit 1 when no notebook has a marked region."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="numbers (08) or paths; default: all")
    default = Path(os.environ.get("ARIA_BUILD", repo_root() / "build")) / "student"
    ap.add_argument("--out", type=Path, default=default, help=f"folder to write (default {default})")
    args = ap.parse_args(argv)
    written = build(notebook_paths(args.notebooks), args.out)
    print(f"[student] {len(written)} student notebooks in {args.out}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())

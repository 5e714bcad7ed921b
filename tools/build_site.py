#!/usr/bin/env python3
"""Build the reading edition: the stored notebooks as static HTML pages, readable offline.

    python tools/build_site.py [--out build/site]          (`make site`)

`index.html` holds the README's introduction and lecture map; each notebook becomes `NN_name.html`.
The pages come from nbconvert's HTML exporter (JupyterLab's own look) with the template in
`tools/site_template`: figures are embedded, exercises stay collapsible `<details>`, math is typeset
by a MathJax copied next to the pages from the `jupyter-server-mathjax` package, and nothing is
fetched from the network. A widget shows a note and the output it stored for its default values.
"""
from __future__ import annotations

import argparse
import html.parser
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook, new_output

from aria_utils.student import BEGIN, END

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "site_template"
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
WIDGET_VIEW, WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = ('<p class="aria-note">Interactive widget: its controls work when the notebook runs in Jupyter. '
               'Below, what it showed for its default values.</p>')
_NOTEBOOK_LINK = re.compile(r"\]\((?:notebooks/)?(\d\d_[\w-]+)\.ipynb(#[^)]*)?\)")


def _stored_outputs(state: dict, model_id: str) -> list[dict]:
    """What a stored `interact` widget drew: the outputs of its Output child."""
    children = state.get(model_id, {}).get("state", {}).get("children", [])
    models = [state.get(child.replace("IPY_MODEL_", ""), {}) for child in children]
    return [o for m in models if m.get("model_name") == "OutputModel" for o in m.get("state", {}).get("outputs", [])]


def static_widgets(nb: nbformat.NotebookNode) -> None:
    """Replace each widget output by a note and what it drew (an `interact`), or by its text (a progress bar)."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
            elif out["data"].get("text/plain", "").startswith(("interactive(", "VBox(", "HBox(")):  # a demo, not a bar
                outputs.append(new_output("display_data", data={"text/html": WIDGET_NOTE}))
                if not any("image/png" in o.get("data", {}) for o in cell.outputs):  # else drawn beside it already
                    outputs += [nbformat.from_dict(o) for o in _stored_outputs(state, view.get("model_id", ""))]
            elif "text/plain" in out["data"]:
                outputs.append(new_output("display_data", data={"text/plain": out["data"]["text/plain"]}))
        cell.outputs = outputs


def reading_cells(nb: nbformat.NotebookNode) -> None:
    """What a reader needs: without the Colab install cell and the solution markers of the student edition."""
    nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and "google.colab" in c.source)]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = "\n".join(line for line in cell.source.split("\n")
                                     if not (BEGIN.match(line) or END.match(line)))


def html_links(nb: nbformat.NotebookNode) -> None:
    """Markdown links to sibling notebooks point to their pages."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _NOTEBOOK_LINK.sub(lambda m: f"]({m.group(1)}.html{m.group(2) or ''})", cell.source)


def index_notebook(readme: str) -> nbformat.NotebookNode:
    """The index page: the README down to its first `##` section (title, introduction, lecture map)."""
    head = readme.split("\n## ", 1)[0]
    note = ("\n\nThis is the reading edition: each page shows a notebook with the outputs of its stored run. "
            "To run the notebooks yourself, see the repository's README.")
    nb = new_notebook(cells=[new_markdown_cell(head.rstrip() + note)])
    nb.metadata["title"] = "Lecture 4 · Advanced topics"
    html_links(nb)
    return nb


def build(out: Path, notebooks: list[Path], readme: Path) -> list[Path]:
    """Write the site into `out` (replacing it); return the pages written."""
    from nbconvert import HTMLExporter
    import jupyter_server_mathjax

    exporter = HTMLExporter(template_name=TEMPLATE.name, extra_template_basedirs=[str(TEMPLATE.parent)],
                            mathjax_url=MATHJAX_URL)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", out / "mathjax")
    shutil.copy(TEMPLATE / "site.css", out / "site.css")
    pages = [("index", index_notebook(readme.read_text()))]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        reading_cells(nb)
        static_widgets(nb)
        html_links(nb)
        nb.metadata["title"] = nb.cells[0].source.splitlines()[0].lstrip("# ") if nb.cells else path.stem
        pages.append((path.stem, nb))
    written, stems = [], [stem for stem, _ in pages]
    for i, (stem, nb) in enumerate(pages):
        nav = {"aria_prev": (f"{stems[i - 1]}.html", stems[i - 1]) if i > 1 else None,  # page 1's is the index
               "aria_next": (f"{stems[i + 1]}.html", stems[i + 1]) if i + 1 < len(stems) else None}
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": stem}, **nav})
        (out / f"{stem}.html").write_text(body, encoding="utf-8")
        written.append(out / f"{stem}.html")
    return written


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [(tag, k, v) for k, v in attrs if k in ("href", "src") and v]


def broken_links(folder: Path) -> list[str]:
    """Local links and sources of the pages that do not resolve, and anything the pages would load from the
    network (a script, style sheet or image with a remote address). Plain links to web pages are allowed."""
    problems = []
    for page in sorted(folder.glob("*.html")):
        parser = _Refs()
        parser.feed(page.read_text(encoding="utf-8"))
        for tag, attr, ref in parser.refs:
            if ref.startswith(("data:", "#", "mailto:")):
                continue
            if re.match(r"(https?:)?//", ref):
                if tag != "a":
                    problems.append(f"{page.name}: <{tag} {attr}> loads {ref} from the network")
                continue
            target = (page.parent / ref.split("#")[0].split("?")[0]).resolve()
            if not target.exists():
                problems.append(f"{page.name}: <{tag} {attr}={ref!r}> does not resolve")
            config = re.search(r"[?&]config=([^&#]+)", ref)
            for name in config.group(1).split(",") if config else []:
                if not (target.parent / "config" / f"{name}.js").exists():
                    problems.append(f"{page.name}: MathJax config {name} is missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    args = ap.parse_args(argv)
    pages = build(args.out, sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ROOT / "README.md")
    problems = broken_links(args.out)
    print("\n".join(problems) or f"[site] {len(pages)} pages in {args.out}, every link resolves")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The reading edition (tools/build_site.py, `make site`): builds offline, every page and link resolves."""
import importlib.util

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from aria_utils.runner import notebook_paths
from aria_utils.setup import repo_root

_spec = importlib.util.spec_from_file_location("build_site", repo_root() / "tools" / "build_site.py")
site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return out, site.build(out, notebook_paths(), repo_root() / "README.md")


def test_one_page_per_notebook_and_an_index(built):
    out, pages = built
    assert [p.name for p in pages] == ["index.html"] + [p.stem + ".html" for p in notebook_paths()]
    index = (out / "index.html").read_text()
    assert all(f'href="{p.stem}.html"' in index for p in notebook_paths()), "the lecture map links every page"


def test_every_link_resolves_and_nothing_comes_from_the_network(built):
    out, pages = built
    assert site.broken_links(out) == []
    for page in pages:
        text = page.read_text()
        assert 'src="mathjax/MathJax.js?config=' in text and "cdnjs" not in text and "require.min.js" not in text


def test_exercises_stay_collapsible_and_figures_are_embedded(built):
    out, _ = built
    for path in notebook_paths():
        text = (out / f"{path.stem}.html").read_text()
        assert "<details>" in text and "<summary>" in text, path.stem
        assert "data:image/png;base64," in text, path.stem


def test_reading_edition_has_no_install_cell_nor_solution_markers(built):
    out, _ = built
    for path in notebook_paths():
        text = (out / f"{path.stem}.html").read_text()
        assert "SOLUTION" not in text and "google.colab" not in text, path.stem
    nb = new_notebook(cells=[new_code_cell('if "google.colab" in sys.modules: pass'),
                             new_code_cell("def f(x):\n    # BEGIN SOLUTION: add one\n    y = x + 1\n    # END SOLUTION\n"
                                           "    return y")])
    site.reading_cells(nb)
    assert [c.source for c in nb.cells] == ["def f(x):\n    y = x + 1\n    return y"]


def test_broken_and_remote_references_are_reported(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html">b</a><a href="https://example.org">ok</a>'
                                     '<img src="missing.png"><script src="https://cdn.example/x.js"></script>')
    (tmp_path / "b.html").write_text('<a href="a.html#top">a</a>')
    problems = site.broken_links(tmp_path)
    assert len(problems) == 2 and "missing.png" in problems[0] and "network" in problems[1]


def test_widgets_show_a_note_and_their_stored_default_output():
    cell = new_code_cell("interact(f)")
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    cell.outputs = [new_output("display_data", data={site.WIDGET_VIEW: view, "text/plain": "interactive(children=...)"})]
    bar = new_code_cell("fit()")
    bar.outputs = [new_output("display_data", data={site.WIDGET_VIEW: {"model_id": "bar"}, "text/plain": "50%|#"})]
    figure = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}, "metadata": {}}
    state = {"box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
             "slider": {"model_name": "IntSliderModel", "state": {}},
             "out": {"model_name": "OutputModel", "state": {"outputs": [figure]}}}
    nb = new_notebook(cells=[new_markdown_cell("[next](03_autoencoder.ipynb#Check)"), cell, bar])
    nb.metadata["widgets"] = {site.WIDGET_STATE: {"state": state}}
    site.static_widgets(nb)
    site.html_links(nb)
    assert "widgets" not in nb.metadata
    assert [list(o.data) for o in nb.cells[1].outputs] == [["text/html"], ["image/png", "text/plain"]]
    assert nb.cells[2].outputs[0].data == {"text/plain": "50%|#"}
    assert nb.cells[0].source == "[next](03_autoencoder.html#Check)"
    nbformat.validate(nb)


def test_a_click_demo_shows_the_note_not_its_widget_repr():
    demo = new_code_cell("click_demo()")
    figure = new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    demo.outputs = [new_output("display_data", data={site.WIDGET_VIEW: {"model_id": "vbox"},
                                                     "text/plain": "VBox(children=(Label(value='click'),))"}), figure]
    nb = new_notebook(cells=[demo])
    nb.metadata["widgets"] = {site.WIDGET_STATE: {"state": {}}}
    site.static_widgets(nb)
    assert [o.data.get("text/html") == site.WIDGET_NOTE for o in nb.cells[0].outputs] == [True, False]
    assert "VBox(" not in str(nb.cells[0].outputs)

"""normdsl in a notebook (issue 17): a notebook using ``%load_ext normdsl``, the ``%%normdsl`` magic and
the reprs of Network, SpecError and a comparison, executed by nbclient; the HTML it stored is checked.
Keras is the oracle for the shapes the diagram writes on its edges (``--build`` binds the model)."""

from __future__ import annotations

import ast
import os
import re
from typing import Any

import pytest
from conftest import ROOT

import normdsl
from normdsl import diagrams

SEED = ROOT / "examples" / "seed.nd"
SMALL = "input(8, 8, 3) conv4 gn(2) relu gap dense2(act=softmax)"
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_CELL = README.split("<!-- magic-example", 1)[1].split("```\n", 1)[1].split("```", 1)[0].rstrip("\n")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    import nbformat
    from nbclient import NotebookClient

    code = nbformat.v4.new_code_cell
    notebook = nbformat.v4.new_notebook(
        cells=[
            code("%load_ext normdsl"),
            code(README_CELL),
            code("net"),
            code("%%normdsl\ninput(8, 8, 3) conv8 gn3 relu"),
            code(
                f"from normdsl.compare import comparison\ncomparison(open({str(SEED)!r}).read(), norms=['bn', 'gn(16)', 'gn(7)'])"
            ),
            code(f"%%normdsl -o small --build model\n{SMALL}"),
            code("[tuple(layer.output.shape[1:]) for layer in model.layers[1:]]"),
            code("'net' in dir(), 'model' in dir(), type(small).__name__"),
        ]
    )
    # Executed once for the whole run: the pytest-xdist workers share the stored result (their common temporary
    # folder, a file lock), as pytest-xdist's documentation shows for session fixtures.
    from filelock import FileLock

    run = tmp_path_factory.getbasetemp()
    stored = (run.parent if os.environ.get("PYTEST_XDIST_WORKER") else run) / "normdsl-magic.ipynb"
    with FileLock(f"{stored}.lock"):
        if stored.is_file():
            return list(nbformat.read(stored, as_version=4).cells)
        folder = tmp_path_factory.mktemp("notebook")
        client = NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
        )
        client.execute()
        nbformat.write(notebook, stored)
    return list(notebook.cells)


def html(cell: Any) -> str:
    return "".join(str(out.get("data", {}).get("text/html", "")) for out in cell.outputs)


def plain(cell: Any) -> Any:
    (result,) = [out for out in cell.outputs if out.output_type == "execute_result"]
    return ast.literal_eval(result["data"]["text/plain"])


def test_the_magic_shows_the_summary_and_the_diagram_and_binds_the_network(cells: list[Any]) -> None:
    shown = html(cells[1])
    assert '<div class="normdsl-summary">' in shown and "<svg" in shown
    assert shown.count('class="box layer-box"') == 5  # conv32 conv64 conv128 gn(16) conv256
    assert re.search(r'<g class="node norm" id="n4">.*?gn\(16\)', shown)
    assert '<text class="shape"' in shown and ">32×32×3</text>" in shown  # --input took effect
    assert plain(cells[7]) == (True, True, "Network")
    assert README_CELL.startswith('%%normdsl -o net --norm "gn(16)" --input 32,32,3')


def test_a_networks_repr_is_its_summary_table(cells: list[Any]) -> None:
    shown = html(cells[2])
    assert shown.count("<tr>") == 1 + 5 and "gn(16) (GroupNormalization)" in shown


def test_a_spec_error_is_shown_with_the_offending_text_marked(cells: list[Any]) -> None:
    shown = html(cells[3])
    assert '<mark class="error">gn3</mark>' in shown and "hint: write gn(3)" in shown
    assert not any(out.output_type == "error" for out in cells[3].outputs)  # shown, not a traceback


def test_a_comparison_shows_its_table(cells: list[Any]) -> None:
    shown = html(cells[4])
    assert shown.startswith('<table class="normdsl-compare">') and shown.count("<tr>") == 1 + 3
    assert "1 error: gn(7): 128 channels cannot be split into 7 groups" in shown


def test_build_binds_the_keras_model_whose_shapes_are_the_diagrams(cells: list[Any]) -> None:
    keras_shapes = plain(cells[6])
    g = diagrams.graph(normdsl.check(SMALL))
    assert keras_shapes == [node.shape for node in g.nodes[1:-1]]
    labels = re.findall(r'<text class="shape"[^>]*>([^<]*)</text>', html(cells[5]))
    assert labels[1:] == [diagrams.dims(shape) for shape in keras_shapes]

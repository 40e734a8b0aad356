"""Diagrams (issue 17): the graph and its layout, the four formats (SVG as XML, Mermaid by its structure,
DOT through pydot), golden text for the seed models, the command and no framework on the way. What a
browser shows is tested in test_browser.py."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, example_ids, readme_sessions

import normdsl
from normdsl import diagrams
from normdsl.cli import main

GOLDEN = Path(__file__).parent / "golden" / "diagram"
UPDATE = os.environ.get("NORMDSL_UPDATE_GOLDEN") == "1"  # regenerate after an intended change, then review the diff
SEEDS = ["seed", "groupnorm", "batchnorm", "layernorm", "instancenorm"]
SVG = "{http://www.w3.org/2000/svg}"
RESNET = ROOT / "examples" / "resnet50.nd"
BRANCHY = """input(32, 32, 3)
let mixed(f) = cat(conv{f}(k=1), conv{f}(k=1) conv{f}(pad=same), maxpool(3, s=1, pad=same) conv{f}(k=1), gn(4) relu)
conv16(pad=same) mixed(8) res(conv40(pad=same) bn relu) gap dense10
"""
HOSTILE = '</text><script>alert("x")</script> #quot; ]]> -->|x| "'


def network(path: Path, **options: object) -> normdsl.Network:
    return normdsl.check(normdsl.parse(path.read_text(), filename=path.name), **options)  # type: ignore[arg-type]


def boxes(svg_text: str) -> list[tuple[str, float, float, float, float]]:
    """Each layer box of an SVG: (its node's class, x, y, width, height)."""
    root = ET.fromstring(svg_text)
    out = []
    for g in root.iter(f"{SVG}g"):
        rect = g.find(f"{SVG}rect")
        if "node" in g.get("class", "").split() and rect is not None and "layer-box" in rect.get("class", ""):
            kind = g.get("class", "").split()[1]
            out.append((kind, *(float(rect.get(a, "0")) for a in ("x", "y", "width", "height"))))
    return out


# ---- the picture's content -----------------------------------------------------------------------


def test_the_group_norm_seed_is_five_boxes_with_shapes_on_the_arrows_and_the_norm_highlighted() -> None:
    svg = normdsl.diagram(network(ROOT / "examples" / "groupnorm.nd"))
    found = boxes(svg)
    assert [kind for kind, *_ in found] == ["layer", "layer", "layer", "norm", "layer"]
    shapes = re.findall(r'<text class="shape"[^>]*>([^<]*)</text>', svg)
    assert shapes == ["224×224×3", "222×222×32", "220×220×64", "218×218×128", "218×218×128", "216×216×256"]
    norm = ET.fromstring(svg).find(f".//{SVG}g[@id='n4']/{SVG}rect")
    assert norm is not None and norm.get("fill") == diagrams.COLORS["norm"][0] != diagrams.COLORS["layer"][0]
    assert "gn(16)" in svg and "legend" in svg and "normalization" in svg


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_every_layer_is_a_box_and_every_input_an_edge(path: Path) -> None:
    net = network(path)
    g = diagrams.graph(net)
    assert len(g.nodes) == len(net.layers) + 2  # and the input and output
    edges = {(e.source, e.target) for e in diagrams.layout(g).edges}
    wanted = {(p, t) for t, node in enumerate(g.nodes) for p in node.inputs}
    assert edges == wanted
    assert len(boxes(normdsl.diagram(net))) == len(net.layers)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("levels", [None, 1, 2, 3])
@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_no_two_boxes_overlap_and_no_line_crosses_a_box(path: Path, levels: int | None) -> None:
    net = network(path)
    lay = diagrams.layout(diagrams.graph(net, levels))
    places, split, merge, _, lanes = diagrams._geometry(lay)
    rects = [(p.x, p.y, p.w, p.h) for p in places]
    by_top = sorted(range(len(rects)), key=lambda k: rects[k][1])
    for a, i in enumerate(by_top):  # every pair that could meet: those starting above the bottom of the other
        for j in by_top[a + 1 :]:
            if rects[j][1] >= rects[i][1] + rects[i][3]:
                break
            assert not _overlap(rects[i], rects[j]), (i, j)
    for edge in lay.edges:  # the vertical run in its lane passes no box of that lane
        top = split[edge.source] if edge.route != "down" else places[edge.source].bottom
        bottom = merge[edge.target] if edge.route != "split" else places[edge.target].y
        x = lanes[edge.lane]
        for k, (bx, by, bw, bh) in enumerate(rects):
            if k not in (edge.source, edge.target) and bx < x < bx + bw:
                assert not (top < by + bh and by < bottom), (edge, k)


def test_a_residual_block_runs_its_body_straight_down_and_its_shortcut_beside_it() -> None:
    g = diagrams.graph(normdsl.check("input(8, 8, 4) conv4 res(conv4(pad=same) bn relu conv4(pad=same) bn) relu"))
    lay = diagrams.layout(g)
    assert lay.column[1:] == (0,) * (len(g.nodes) - 1)  # the body: the longest path
    (skip,) = [e for e in lay.edges if e.route == "lane"]
    assert (skip.source, g.nodes[skip.target].kind, skip.lane) == (1, "merge", 1)  # from conv4


def test_branches_of_a_concatenation_get_columns_of_their_own() -> None:
    g = diagrams.graph(normdsl.check(BRANCHY))
    lay = diagrams.layout(g)
    firsts = [t for t, node in enumerate(g.nodes) if node.inputs == (1,)]
    assert len(firsts) == 4 and len({lay.column[t] for t in firsts}) == 4
    assert [c.label for c in g.clusters] == ["mixed"]


def test_levels_collapse_resnet50_to_its_stages_which_fit_one_screen() -> None:
    svg = normdsl.diagram(network(RESNET), depth=1)
    found = boxes(svg)
    assert [kind for kind, *_ in found].count("block") == 4 and len(found) == 12
    root = ET.fromstring(svg)
    assert float(root.get("height", "0")) <= 1000 and float(root.get("width", "0")) <= 1000
    assert "stage[3]" in svg and "62 layers" in svg


def test_expanded_resnet50_is_one_long_column_with_its_shortcuts_beside_it() -> None:
    net = network(RESNET)
    lay = diagrams.layout(diagrams.graph(net))
    assert max(lay.column) == 1 and max(e.lane for e in lay.edges) == 1
    assert sum(e.route == "lane" for e in lay.edges) == 12  # the identity shortcuts: 2 + 3 + 5 + 2
    assert [c.label for c in diagrams.graph(net).clusters if c.level == 0] == [f"stage[{i}]" for i in (1, 2, 3, 4)]


def test_text_from_the_spec_stays_text_in_every_format() -> None:
    net = normdsl.check("input(8, 8, 3) conv4 gn(2) relu")
    layers = list(net.layers)  # names the checker refuses, as a tool building a Network might write them
    layers[0] = dataclasses.replace(layers[0], kwargs=(*layers[0].kwargs, ("name", HOSTILE)))
    layers[1] = dataclasses.replace(layers[1], kwargs=(*layers[1].kwargs, ("name", "\u202eevil")))
    net = dataclasses.replace(net, layers=tuple(layers))
    svg = normdsl.diagram(net)
    root = ET.fromstring(svg)  # well-formed
    texts = "".join(root.itertext())
    assert net.layers[0].call in texts and not list(root.iter(f"{SVG}script"))
    assert "\u202e" not in svg
    mermaid = normdsl.diagram(net, "mermaid")
    assert _mermaid_ok(mermaid) and "<script>" not in mermaid
    assert "</text><script>alert" in _pydot_labels(normdsl.diagram(net, "dot"))


def test_formats_and_their_mistakes() -> None:
    net = normdsl.check("input(8, 8, 3) conv4")
    assert normdsl.diagram(net, "html").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="'svg', 'html', 'mermaid', 'dot'"):
        normdsl.diagram(net, "png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="checked Network"):
        normdsl.diagram("conv4")  # type: ignore[arg-type]


# ---- Mermaid and DOT -----------------------------------------------------------------------------

MERMAID_LINE = re.compile(
    r'(?P<node>n\d+(\["[^"]*"\]|\(\["[^"]*"\]\)):::\w+)'
    r'|(?P<edge>n(?P<a>\d+) -->\|"[^"]*"\| n(?P<b>\d+))'
    r'|(?P<sub>subgraph c\d+\["[^"]*"\])'
    r"|(?P<end>end)"
    r"|(?P<cls>classDef \w+ fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6})"
)


def _mermaid_ok(text: str) -> bool:
    """Mermaid's flowchart grammar, for what we write: a header, node, edge, subgraph and classDef lines,
    subgraphs closed, edges between declared nodes, labels without a raw quote or markup."""
    lines = text.splitlines()
    assert lines[:2] == [f"%% {diagrams.MARK}", "flowchart TB"]
    declared, depth = set(), 0
    for line in lines[2:]:
        m = MERMAID_LINE.fullmatch(line.strip())
        assert m, line
        if m["node"]:
            declared.add(m["node"].split("[")[0].split("(")[0])
        elif m["edge"]:
            assert {f"n{m['a']}", f"n{m['b']}"} <= declared, line
        depth += bool(m["sub"]) - bool(m["end"])
        assert depth >= 0
        assert not re.search(r"[<>]", line.split("-->")[0] if m["edge"] else line), line
    return depth == 0


def _pydot_labels(dot: str) -> str:
    import pydot

    (graph,) = pydot.graph_from_dot_data(dot)
    return "".join(str(node.get("label")) for node in graph.get_nodes())


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_the_mermaid_of_every_example_is_well_formed(path: Path) -> None:
    net = network(path)
    for depth in (None, 2):
        assert _mermaid_ok(normdsl.diagram(net, "mermaid", depth=depth))


@pytest.mark.parametrize("path", [ROOT / "examples" / "seed.nd", RESNET, ROOT / "examples" / "mobilenet_v2.nd"])
def test_pydot_reads_the_dot_back_with_every_node_edge_and_cluster(path: Path) -> None:
    import pydot  # (pyparsing: slow on large graphs, hence three examples)

    net = network(path)
    (graph,) = pydot.graph_from_dot_data(normdsl.diagram(net, "dot", depth=2))
    g = diagrams.graph(net, 2)

    def count(graph: pydot.Graph) -> tuple[int, int, int]:
        nodes = [n for n in graph.get_nodes() if n.get_name() not in ("node", "edge", "graph")]
        inner = [count(s) for s in graph.get_subgraphs()]
        return (
            len(nodes) + sum(c[0] for c in inner),
            len(graph.get_edges()) + sum(c[1] for c in inner),
            len(inner) + sum(c[2] for c in inner),
        )

    assert count(graph) == (len(g.nodes), sum(len(n.inputs) for n in g.nodes), len(g.clusters))


# ---- golden text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,suffix", [("svg", ".svg"), ("mermaid", ".mmd")])
@pytest.mark.parametrize("name", SEEDS)
def test_seed_diagrams_equal_the_golden_files(name: str, fmt: str, suffix: str) -> None:
    text = normdsl.diagram(network(ROOT / "examples" / f"{name}.nd"), fmt)  # type: ignore[arg-type]
    golden = GOLDEN / f"{name}{suffix}"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


# ---- the command ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,start", [(".svg", "<!--"), (".html", "<!DOCTYPE"), (".mmd", "%%"), (".dot", "//")])
def test_the_command_writes_the_format_its_suffix_names(tmp_path: Path, suffix: str, start: str) -> None:
    out = tmp_path / f"model{suffix}"
    assert main(["diagram", str(ROOT / "examples" / "seed.nd"), "--norm", "gn(16)", "-o", str(out)]) == 0
    assert out.read_text().startswith(start) and "gn(16)" in out.read_text()
    assert main(["diagram", str(ROOT / "examples" / "seed.nd"), "-o", str(out)]) == 0  # its own file: replaced
    assert "gn(16)" not in out.read_text()


def test_the_command_refuses_what_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = str(ROOT / "examples" / "seed.nd")
    assert main(["diagram", seed, "-o", str(tmp_path / "model.png")]) == 2
    assert ".svg, .html, .mmd (Mermaid) or .dot" in capsys.readouterr().err
    assert main(["diagram", seed, "-o", str(tmp_path / "model.svg"), "--format", "dot"]) == 2
    mine = tmp_path / "notes.svg"
    mine.write_text("<svg>my drawing</svg>")
    assert main(["diagram", seed, "-o", str(mine)]) == 2
    assert "not generated by normdsl" in capsys.readouterr().err and mine.read_text() == "<svg>my drawing</svg>"
    assert main(["diagram", "-e", "relu*6000", "-o", str(tmp_path / "big.svg")]) == 2
    assert "collapse blocks with --levels" in capsys.readouterr().err and not (tmp_path / "big.svg").exists()
    assert main(["diagram", "-e", "conv8 gn3", "-o", str(tmp_path / "bad.svg")]) == 1
    assert "gn takes no number" in capsys.readouterr().err and not (tmp_path / "bad.svg").exists()


def test_the_command_prints_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram", str(ROOT / "examples" / "groupnorm.nd"), "-o", "-", "--format", "mermaid"]) == 0
    assert capsys.readouterr().out == normdsl.diagram(network(ROOT / "examples" / "groupnorm.nd"), "mermaid")


def test_diagram_and_report_need_no_framework(tmp_path: Path) -> None:
    code = (
        "import sys; from normdsl import cli\n"
        "a = cli.main(['diagram', sys.argv[1], '-o', sys.argv[2] + '/r.svg', '--levels', '2'])\n"
        "b = cli.main(['report', sys.argv[1], '--norm', 'bn', 'gn(32)', '-o', sys.argv[2] + '/r.html'])\n"
        "assert not {'tensorflow', 'keras', 'jax', 'torch', 'jinja2', 'black'} & set(sys.modules), 'imported'\n"
        "sys.exit(a or b)"
    )
    run = subprocess.run([sys.executable, "-c", code, str(RESNET), str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_drawing_resnet50_costs_little_beside_checking_it() -> None:
    net = network(RESNET)
    start = time.perf_counter()
    network(RESNET)
    checking = time.perf_counter() - start
    start = time.perf_counter()
    for depth in (None, 1):
        normdsl.diagram(net, depth=depth)
    drawing = (time.perf_counter() - start) / 2
    assert drawing < max(0.5, 2 * checking), (drawing, checking)


def test_a_networks_layers_in_a_hostile_block_name_stay_text() -> None:
    net = normdsl.check("let b = (conv4(pad=same) relu)\ninput(8, 8, 3) b b gap")
    layers = [dataclasses.replace(layer, blocks=("<b>", *layer.blocks[1:])) for layer in net.layers]
    svg = normdsl.diagram(dataclasses.replace(net, layers=tuple(layers), name=HOSTILE))
    assert HOSTILE in "".join(ET.fromstring(svg).itertext())


# ---- the README's pictures -----------------------------------------------------------------------


def test_the_readmes_pictures_are_what_its_commands_draw_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sessions = readme_sessions("diagram-pictures")
    assert len(sessions) == 4
    monkeypatch.chdir(ROOT)
    for args, shown in sessions:
        committed = args[args.index("-o") + 1]
        fresh = tmp_path / Path(committed).name
        args[args.index("-o") + 1] = str(fresh)
        assert main(args) == 0
        assert capsys.readouterr().out.strip().replace(str(fresh), committed) == shown
        stale = f"{committed} is stale: run `normdsl {' '.join(args)}` with -o {committed}"
        assert fresh.read_text(encoding="utf-8") == (ROOT / committed).read_text(encoding="utf-8"), stale
        assert f"({committed})" in readme  # shown or linked


def test_the_readmes_mermaid_is_the_tools() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- diagram-mermaid", 1)[1].split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == normdsl.diagram(network(ROOT / "examples" / "groupnorm.nd"), "mermaid")


# ---- the report ----------------------------------------------------------------------------------


def test_a_report_of_a_broken_spec_is_written_with_its_problems_marked_in_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "broken.nd"
    spec.write_text("input(8, 8, 3)\nconv8 gn3 relu\n")
    out = tmp_path / "report.html"
    assert main(["report", str(spec), "-o", str(out)]) == 1
    assert "gn takes no number" in capsys.readouterr().err  # said on the terminal too
    page = out.read_text()
    assert '<span class="no">2</span>conv8 <mark class="error">gn3</mark> relu' in page
    assert "hint: write gn(3)" in page and "0 of 1 variant valid" in page and "<svg" not in page


def test_a_report_compares_several_specs_and_refuses_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = ROOT / "examples"
    assert main(["report", str(examples / "batchnorm.nd"), str(examples / "groupnorm.nd"), "-o", "-"]) == 0
    page = capsys.readouterr().out
    assert '<table class="normdsl-compare">' in page and page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    assert "BatchNormalization" in page and "GroupNormalization" in page
    assert main(["report", str(examples / "seed.nd"), "-o", str(tmp_path / "report.txt")]) == 2
    assert "a report is one HTML file" in capsys.readouterr().err


def test_a_large_networks_notebook_repr_collapses_blocks_to_fit_about_forty_rows() -> None:
    net = network(RESNET)
    shown = net._repr_html_()
    assert shown.count("<tr>") == 1 + 24 and "identity (10 layers)" in shown  # stages' blocks, one row each
    assert net._repr_markdown_().count("\n| ") == 1 + 24
    small = network(ROOT / "examples" / "vgg16.nd")
    assert small._repr_html_().count("<tr>") == 1 + len(small.layers)


def test_a_projected_shortcut_is_drawn_just_before_the_merge_it_joins() -> None:
    net = network(RESNET)
    g = diagrams.graph(net)
    assert all(p < t for t, node in enumerate(g.nodes) for p in node.inputs)  # still every layer after its inputs
    calls = [node.lines[0] for node in g.nodes[1:-1]]
    assert sorted(calls) == sorted(layer.call for layer in net.layers)
    assert calls[6:16] == [  # the first bottleneck: the body (the long path), then the shortcut, then the add
        "conv64(k=1)", "bn(eps=1.001e-05)", "relu", "conv64(pad=same)", "bn(eps=1.001e-05)", "relu",
        "conv256(k=1)", "bn(eps=1.001e-05)", "conv256(k=1)", "bn(eps=1.001e-05)",
    ]  # fmt: skip

    assert calls[16] == "res" and g.nodes[17].inputs == (16, 14)  # Keras's operand order kept: shortcut, body

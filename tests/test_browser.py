"""Diagrams and reports as a person sees them (issue 17): the files the commands write, opened in the
system's Chromium (Debian's package; .ci/run installs it) driven headless by Playwright, one browser for
every check. On each page: no console or page error, every layer a box, no two boxes overlapping, every
text inside its box, no edge label on a box, and a screenshot that is not blank.

NORMDSL_SCREENSHOTS=DIR keeps the screenshots, to look at them."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

import normdsl
from normdsl import diagrams
from normdsl.cli import main

CHROMIUM = os.environ.get("NORMDSL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BRANCHY = """input(32, 32, 3)
let mixed(f) = cat(conv{f}(k=1), conv{f}(k=1) conv{f}(pad=same), maxpool(3, s=1, pad=same) conv{f}(k=1), gn(4) relu)
conv16(pad=same) mixed(8) res(conv40(pad=same) bn relu) gap dense10
"""
LOOK = """() => [...document.querySelectorAll('svg.normdsl-diagram')].map(svg => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {
    nodes: [...svg.querySelectorAll('g.node')].map(g => ({
      kind: g.classList[1],
      layer: g.querySelector('rect.layer-box') !== null,
      box: box(g.querySelector('rect.box')),
      texts: [...g.querySelectorAll(':scope > text')].map(box),
    })),
    shapes: [...svg.querySelectorAll('text.shape')].map(box),
    keys: [...svg.querySelectorAll('g.legend rect.key')].map(box),
  };
})"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1000})
        finally:
            browser.close()


def _meet(a: list[float], b: list[float], slack: float = 0.0) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def _inside(inner: list[float], outer: list[float]) -> bool:
    return (
        inner[0] >= outer[0] - 0.5
        and inner[1] >= outer[1] - 0.5
        and inner[2] <= outer[2] + 0.5
        and inner[3] <= outer[3] + 0.5
    )


def look(page: Any, path: Path, boxes: list[int], shot: str) -> None:
    """Open ``path``: its diagrams show ``boxes`` boxes of layers or blocks each, laid out cleanly, with no
    error on the console, and its screenshot is not blank."""
    errors: list[str] = []

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    def failed(error: Any) -> None:
        errors.append(str(error))

    page.on("console", console)
    page.on("pageerror", failed)
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        found = page.evaluate(LOOK)
        png = page.screenshot(
            full_page=path.suffix == ".html" and sum(boxes) < 40
        )  # (full page: not for SVG documents)
    finally:
        page.remove_listener("console", console)
        page.remove_listener("pageerror", failed)
    assert errors == []
    assert [sum(n["layer"] for n in svg["nodes"]) for svg in found] == boxes
    for svg in found:
        rects = [n["box"] for n in svg["nodes"]] + svg["keys"]
        for i, a in enumerate(rects):
            for b in rects[i + 1 :]:
                assert not _meet(a, b), (a, b)
        for node in svg["nodes"]:
            assert node["texts"] and all(_inside(t, node["box"]) for t in node["texts"]), node
        for label in svg["shapes"]:
            assert not any(_meet(label, r, slack=0.5) for r in rects), label
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 24) or []
    white = max(colors)[0] / (image.width * image.height)
    assert len(colors) > 20 and white < 0.97, (len(colors), white)
    if os.environ.get("NORMDSL_SCREENSHOTS"):
        image.save(Path(os.environ["NORMDSL_SCREENSHOTS"]) / f"{shot}.png")


def boxes(path: Path, levels: int | None = None, **options: Any) -> int:
    """How many boxes of layers or collapsed blocks the diagram of ``path`` has (what the checker says)."""
    network = normdsl.check(normdsl.parse(path.read_text(), filename=path.name), **options)
    return len(diagrams.graph(network, levels).nodes) - 2  # (the input and output are no layer boxes)


def test_diagrams_in_the_browser(page: Any, tmp_path: Path) -> None:
    examples = ROOT / "examples"
    branchy = tmp_path / "branchy.nd"
    branchy.write_text(BRANCHY)
    resnet = examples / "resnet50.nd"
    cases = [
        ("groupnorm", examples / "groupnorm.nd", None),
        ("resnet50-stages", resnet, 1),
        ("resnet50-blocks", resnet, 2),
        ("resnet50", resnet, None),
        ("branchy", branchy, None),
        ("mobilenet_v3_large", examples / "mobilenet_v3_large.nd", 2),
    ]
    assert boxes(examples / "groupnorm.nd") == 5 and boxes(resnet, 1) == 12
    for name, spec, levels in cases:
        for suffix in (".svg", ".html"):
            out = tmp_path / f"{name}{suffix}"
            assert main(["diagram", str(spec), "-o", str(out), *(["--levels", str(levels)] if levels else [])]) == 0
            look(page, out, [boxes(spec, levels)], f"{name}{suffix}")


def test_reports_in_the_browser(page: Any, tmp_path: Path) -> None:
    seed = ROOT / "examples" / "seed.nd"
    out = tmp_path / "seed-report.html"
    assert main(["report", str(seed), "--norm", "bn", "ln", "gn(16)", "gn(7)", "-o", str(out)]) == 1  # gn(7) fails
    look(page, out, [5, 5, 5], "seed-report")
    text = out.read_text()
    assert '<mark class="error">norm</mark>' in text and "128 channels cannot be split into 7 groups" in text
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    out = tmp_path / "resnet-report.html"
    assert main(["report", str(ROOT / "examples" / "resnet50.nd"), "--levels", "2", "-o", str(out)]) == 0
    look(page, out, [boxes(ROOT / "examples" / "resnet50.nd", 2)], "resnet50-report")


MERMAID = Path(__file__).parent / "browser" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
PARSE = """async (texts) => {
  mermaid.initialize({startOnLoad: false, securityLevel: 'strict'});
  const out = [];
  for (const [i, text] of texts.entries()) {
    try {
      await mermaid.parse(text);
      const {svg} = await mermaid.render('m' + i, text);
      const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
      out.push({nodes: doc.querySelectorAll('g.node').length, clusters: doc.querySelectorAll('g.cluster').length,
                edges: doc.querySelectorAll('path.flowchart-link').length, scripts: doc.querySelectorAll('script').length});
    } catch (e) { out.push({error: String(e)}); }
  }
  return out;
}"""


def test_mermaids_own_parser_reads_and_draws_our_mermaid(page: Any) -> None:
    """Mermaid itself (from npm: tests/browser/package.json, which .ci/run installs) parses and renders the
    Mermaid text of seed, branching, nested and hostile models, with every node, edge and cluster."""
    import dataclasses

    assert MERMAID.exists(), f"{MERMAID}: run npm ci --prefix tests/browser (.ci/run does)"
    nets = [normdsl.check(BRANCHY)]
    nets += [normdsl.check((ROOT / "examples" / f"{name}.nd").read_text()) for name in ("groupnorm", "resnet50")]
    hostile = normdsl.check("input(8, 8, 3) conv4 gn(2) relu")
    layers = list(hostile.layers)
    evil = '</text><script>alert("x")</script> #quot; ]]> -->|x| " `b` end subgraph'
    layers[0] = dataclasses.replace(layers[0], kwargs=(*layers[0].kwargs, ("name", evil)))
    nets.append(dataclasses.replace(hostile, layers=tuple(layers)))
    cases = [(net, depth) for net in nets for depth in (None, 2)]
    page.set_content("<!DOCTYPE html><html><body></body></html>")
    page.add_script_tag(path=str(MERMAID))
    found = page.evaluate(PARSE, [normdsl.diagram(net, "mermaid", depth=depth) for net, depth in cases])
    for (net, depth), result in zip(cases, found, strict=True):
        g = diagrams.graph(net, depth)
        edges = sum(len(node.inputs) for node in g.nodes)
        assert result == {"nodes": len(g.nodes), "clusters": len(g.clusters), "edges": edges, "scripts": 0}, net.name

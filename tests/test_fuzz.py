"""Fuzzing: whatever the input, parse/check/render either succeed or raise SpecError with at least
one diagnostic whose span lies inside the input; never another exception, a recursion error or a
hang. CI runs the bounded profile; HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py runs the long one."""

from __future__ import annotations

import re
import time

import pytest
from conftest import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

import normdsl
from normdsl.layers import KINDS
from normdsl.safety import unexpected_code

SPECIAL = [
    "\x00",
    "\ufeff",
    "\r\n",
    "\r",
    "\t",
    "\u202e",
    "\u200f",
    "\u2028",
    "\x85",
    "\x0c",
    "é",
    "𝟘",
    "\\",
    '"',
    "'",
    "{",
    "}",
]
VOCABULARY = [
    *KINDS, "conv64", "dense10", "gn16", "input(", "let", "norm", "res(", "cat(", "shortcut", "(", ")", "*", "=", ",",
    "{", "}", "{f}", "{4*f}", "f", "3", "-1", "0", "1e-5", "0.5", "k", "s", "pad", "same", "act", "true", '"x"',
    "(1, 7)", "#", "\n", " ", "bnn", "x3", "//", "+", "-",
    # language v3 and scaling: modules, merges, arithmetic, scales
    "use", "std/se", "std/nope", '"cases/errors/recursion.nd"', "gate(", "first=body", "id", "plus(3.0)", "times(",
    "scaling(", "scaling b1(", "width=0.5", "depth=2", "w(", "d(", "{w(32)}", "{d(3)}", "max(", "se", "se(r=2)",
]  # fmt: skip
EXAMPLE_TEXTS = [p.read_text() for p in EXAMPLES]


def run(text: str) -> None:
    """The property: parse, check and (for small valid specs) render, or a well-formed SpecError."""
    try:
        network = normdsl.check(normdsl.parse(text))
        if len(network.layers) <= 60:
            assert unexpected_code(normdsl.render(network)) == []
    except normdsl.SpecError as exc:
        assert exc.errors, "a SpecError carries at least one error"
        for d in exc.diagnostics:
            shown = d.elsewhere[1] if d.elsewhere else text  # a used file's problem is shown in that file
            assert 0 <= d.span.start <= d.span.end <= len(shown), (d, len(shown))
            assert 1 <= d.span.line <= shown.count("\n") + 1
        assert exc.render()


soup = st.lists(st.sampled_from(VOCABULARY + SPECIAL), max_size=40)


@given(soup.map(" ".join))
def test_token_soup(text: str) -> None:
    run(text)


@given(soup.map("".join))
def test_glued_token_soup(text: str) -> None:
    run(text)


@given(st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")))
def test_random_bytes(text: str) -> None:
    run(text)


@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(SPECIAL + VOCABULARY)), max_size=30).map("".join))
def test_random_unicode_with_special_characters(text: str) -> None:
    run(text)


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    """An example with tokens deleted, duplicated or swapped."""
    tokens = re.findall(r"\s+|[A-Za-z_][A-Za-z0-9_]*\(?|\S", draw(st.sampled_from(EXAMPLE_TEXTS)))
    for _ in range(draw(st.integers(1, 4))):
        if not tokens:
            break
        i, j = draw(st.integers(0, len(tokens) - 1)), draw(st.integers(0, len(tokens) - 1))
        operation = draw(st.sampled_from(["delete", "duplicate", "swap"]))
        if operation == "delete":
            del tokens[i]
        elif operation == "duplicate":
            tokens.insert(i, tokens[j])
        else:
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


@given(mutated_example())
def test_mutated_examples(text: str) -> None:
    run(text)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 100_000 + "relu" + ")" * 100_000,
        "(" * 100_000,
        "res(" * 10_000 + "relu" + ")" * 10_000,
        "conv8(k=" + "(" * 10_000,
        "let b(f) = conv{" + "(" * 10_000 + "f" + ")" * 10_000 + "}\nb(8)",
        "conv8 " * 50_000,
        "#" + "x" * 1_000_000,
        "relu" * 100_000,
    ],
    ids=["groups", "unclosed", "residuals", "tuples", "arithmetic", "wide", "long-comment", "long-name"],
)
def test_deep_and_huge_inputs_are_diagnosed_quickly(text: str) -> None:
    start = time.perf_counter()
    run(text)
    assert time.perf_counter() - start < 20  # a guard against hangs, not a benchmark


@pytest.mark.parametrize(
    "bomb",
    [
        "((((conv8*1000)*1000)*1000)*1000)",
        "conv8*99999999999999999999999",
        "let b0 = relu\n" + "".join(f"let b{i} = (b{i - 1} b{i - 1})\n" for i in range(1, 61)) + "b60",
        "let b(n) = relu*{n*n*n*n}\nb(100000)",
        "let a(n) = (relu a({n+1}))\na(0)",
    ],
    ids=["nested-repeats", "huge-count", "doubling-blocks", "arithmetic-count", "recursion"],
)
def test_bombs_are_rejected_before_expanding(bomb: str) -> None:
    start = time.perf_counter()
    with pytest.raises(normdsl.SpecError):
        normdsl.check(bomb)
    assert time.perf_counter() - start < 2.0  # a guard against hangs, not a benchmark


@given(st.text(max_size=40))
def test_hostile_names_never_reach_generated_code(payload: str) -> None:
    escaped = payload.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    text = f'# {payload.replace(chr(10), " ")}\ninput(8, 8, 3) conv8(name="{escaped}") relu gap dense2(act=softmax)'
    try:
        network = normdsl.check(normdsl.parse(text, filename=f"{payload}.nd"))
    except normdsl.SpecError:
        return
    for template in ("model", "train"):
        assert unexpected_code(normdsl.render(network, template)) == []
    name = dict(network.layers[0].kwargs)["name"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]*", str(name))


# ---- diagrams and reports (issue 17) -------------------------------------------------------------


def drawn(text: str) -> None:
    """Any spec: a valid one draws in every format (the SVG well-formed XML, its text only text), an invalid one
    is a report that shows its problems; neither raises anything but DiagramTooLarge for a huge model."""
    import xml.etree.ElementTree as ET
    from html.parser import HTMLParser

    from normdsl import diagrams, report

    try:
        network = normdsl.check(normdsl.parse(text))
    except normdsl.SpecError:
        network = None
    if network is not None:
        root = ET.fromstring(normdsl.diagram(network))
        assert not [e for e in root.iter() if e.tag.split("}")[-1] not in SVG_TAGS]
        for fmt in ("html", "mermaid", "dot"):
            assert normdsl.diagram(network, fmt)  # type: ignore[arg-type]
    page, _ = report.report([("fuzz.nd", text)])
    tags: set[str] = set()

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: object) -> None:
            tags.add(tag)

    Tags().feed(page)
    assert tags <= REPORT_TAGS, tags - REPORT_TAGS
    assert diagrams.MARK in page[:200]


SVG_TAGS = {"svg", "title", "style", "g", "rect", "text", "path", "polygon"}
REPORT_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "h3",
    "p",
    "pre",
    "span",
    "mark",
    "b",
    "br",
}
REPORT_TAGS |= {"div", "table", "thead", "tbody", "tr", "th", "td"} | SVG_TAGS


@given(soup.map(" ".join))
def test_token_soup_draws_or_reports(text: str) -> None:
    drawn(text)


@settings(max_examples=100)  # (each valid one is a whole example drawn and reported: ~30 ms)
@given(mutated_example())
def test_mutated_examples_draw_or_report(text: str) -> None:
    drawn(text)


@pytest.mark.parametrize(
    "text",
    [
        "input(8, 8, 3) relu*4990",
        "input(8, 8, 3) cat(" + ", ".join(["relu relu"] * 1500) + ")",
        "let b0 = (relu relu)\n"
        + "".join(f"let b{i} = (b{i - 1} relu)\n" for i in range(1, 64))
        + "input(8, 8, 3) b63",
        "input(8, 8, 3) " + "res(" * 60 + "relu" + ")" * 60,
    ],
    ids=["long", "wide", "deep-blocks", "deep-residuals"],
)
def test_big_diagrams_are_drawn_in_bounded_time(text: str) -> None:
    network = normdsl.check(text)
    start = time.perf_counter()
    svg = normdsl.diagram(network)
    assert time.perf_counter() - start < 10  # a guard against quadratic layouts, not a benchmark
    assert len(svg) < 40 * 1024 * 1024


def test_a_huge_diagram_is_refused_quickly() -> None:
    from normdsl import diagrams

    network = normdsl.check("input(8, 8, 3) relu*20000")
    start = time.perf_counter()
    with pytest.raises(diagrams.DiagramTooLarge, match="collapse blocks"):
        normdsl.diagram(network)
    assert time.perf_counter() - start < 5

"""The driver of lalr.py (lark's tables run without lark, the AST built as it reduces) against lark itself
on grammar/normdsl.lark: the same AST, spans included, for every example, standard-library file, golden
case and fuzzed input, with the default limits and with tight ones; where lark reports a problem the driver
stops (and parse() reports lark's diagnostics) or reports the same problems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import SPECIAL, VOCABULARY, mutated_example

import normdsl
from normdsl import lalr, parser
from normdsl.limits import DEFAULT_LIMITS

CASES = sorted((ROOT / "tests" / "cases").rglob("*.nd"))
STD = sorted((ROOT / "normdsl" / "std").glob("*.nd"))
TIGHT = [
    DEFAULT_LIMITS,
    normdsl.Limits(max_nodes=60),
    normdsl.Limits(max_layers=4),
    normdsl.Limits(max_nesting=2),
]


def by_lark(text: str, limits: normdsl.Limits) -> str:
    try:
        return repr(parser.parse_with_lark(text, limits=limits))
    except normdsl.SpecError as exc:
        return "error: " + exc.render()


def agree(text: str) -> None:
    tables = parser._tables()
    assert tables is not None
    for limits in TIGHT:
        expected = by_lark(text, limits)
        translate = parser._ToAst()
        try:
            spec = lalr.run(
                tables,
                text,
                translate,
                max_nodes=limits.max_nodes,
                max_layers=limits.max_layers,
                layer_rules=parser._LAYER_RULES,
                nesting_rules=parser._NESTING,
                max_nesting=limits.max_nesting,
            )
        except lalr.Unsupported:
            assert expected.startswith("error: "), f"the driver gave up on a spec lark reads: {text!r}"
        else:
            if translate.problems:
                got = "error: " + normdsl.SpecError(translate.problems, text, "<spec>").render()
            else:
                assert isinstance(spec, normdsl.Spec)
                got = repr(parser.dataclasses.replace(spec, filename="<spec>", source=text))
            assert got == expected, text
        try:
            public = repr(normdsl.parse(text, limits=limits))
        except normdsl.SpecError as exc:
            public = "error: " + exc.render()
        assert public == expected


@pytest.mark.parametrize("path", EXAMPLES + STD + CASES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_std_file_and_case_parses_as_lark_parses_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    agree(text)
    if not by_lark(text, DEFAULT_LIMITS).startswith("error"):
        assert normdsl.parse(text) == parser.parse_with_lark(text)


@given(st.lists(st.sampled_from(VOCABULARY + SPECIAL), max_size=40).map(" ".join))
def test_token_soup_agrees(text: str) -> None:
    agree(text)


@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(SPECIAL + VOCABULARY)), max_size=30).map("".join))
def test_glued_text_agrees(text: str) -> None:
    agree(text)


@given(mutated_example())
def test_mutated_examples_agree(text: str) -> None:
    agree(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment",
        "input(8, 8, 3)\nlet b(f, s=1) = res(conv{f}(s=s) bn relu, shortcut=conv{4*f}(k=1, s=s), first=body)\nb(8)",
        "let letter = relu\nletter use_x = relu",  # keywords inside names, names made of keywords
        'use std/se\nuse "x.nd"\nscaling(width=1.0)\nscaling b1(width=1.1, depth=1.2)\nconv{w(32)} relu*{d(3)}',
        'conv8(k=(3, 3), pad=same, name="a\\"b", eps=1e-5, x=-1, y=.5) gate(relu, first=shortcut)',
        "conv8 (bn relu)*2 cat(relu, (gn(2) relu)*2, relu) conv{((2+3)*4)//2-1}(k=1)",
        "conv8\r\nbn\x0c relu\t#c\n  gn(1)",
    ],
)
def test_corners_agree(text: str) -> None:
    agree(text)


def test_two_installations_keep_their_own_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two virtual environments (two lark installations) sharing one cache folder each keep their tables:
    with one file for both, each would export over the other's on every other start."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NORMDSL_NO_CACHE", raising=False)
    names = []
    for origin in ("/venv-a/lark/__init__.py", "/venv-b/lark/__init__.py"):
        monkeypatch.setattr(parser, "_lark_stamp", lambda origin=origin: [origin, 1, 2])
        parser._tables.cache_clear()
        assert parser._tables() is not None
        names.append(sorted(p.name for p in (tmp_path / "normdsl").glob("tables-*.json")))
    parser._tables.cache_clear()
    assert len(names[0]) == 1 and len(names[1]) == 2 and names[0][0] in names[1]


def test_the_cache_folder_keeps_the_newest_tables_of_each_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One tables file per installation would grow the folder by a file per new virtual environment: writing
    one keeps the most recent files of its kind (the one just written among them) and no other file."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NORMDSL_NO_CACHE", raising=False)
    folder = tmp_path / "normdsl"
    folder.mkdir(mode=0o700)
    olds = [folder / f"tables-old{i:02}.json" for i in range(12)]
    for age, old in enumerate(olds):
        old.write_text("{}")
        os.utime(old, (1e9 - age, 1e9 - age))  # old00 the newest of them
    other = folder / "notes.txt"
    other.write_text("not ours")
    monkeypatch.setattr(parser, "_lark_stamp", lambda: ["/venv-new/lark/__init__.py", 1, 2])
    parser._tables.cache_clear()
    assert parser._tables() is not None
    parser._tables.cache_clear()
    kept = sorted(p.name for p in folder.glob("tables-*.json"))
    new = [name for name in kept if "old" not in name]
    assert len(new) == 1 and len(kept) == parser._KEPT and other.exists()
    assert sorted(set(kept) - set(new)) == [p.name for p in olds[: parser._KEPT - 1]]  # the newest old ones


def test_the_tables_are_cached_exported_again_when_stale_and_the_check_path_imports_no_lark(tmp_path: Path) -> None:
    """A first run exports the tables (lark imported); later runs read them and import no lark at all; a
    cache for other grammar text (a stale or planted file) is exported over."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("NORMDSL_NO_CACHE", None)
    code = (
        "import sys, normdsl; n = normdsl.check(open(sys.argv[1]).read());"
        " print(n.params, 'lark' in sys.modules, 'lark' in ' '.join(sys.modules))"
    )
    resnet = str(ROOT / "examples" / "resnet50.nd")

    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", code, resnet], env=env, capture_output=True, text=True, check=True)
        return out.stdout.split()

    first = run()
    assert first[1] == "True"  # exported from lark
    [cached] = (tmp_path / "normdsl").glob("tables-*.json")
    assert run() == [first[0], "False", "False"]  # read back: lark never imported
    data = json.loads(cached.read_text())
    data["stamp"][0] = data["stamp"][0].replace("INT:", "INT :")  # as if the grammar had changed
    data["tables"]["states"] = []  # and the tables were wrong for it
    cached.write_text(json.dumps(data))
    assert run() == first
    assert run() == [first[0], "False", "False"]


@pytest.mark.parametrize("name", [n for n, _ in parser._tables().patterns.items()])  # type: ignore[union-attr]
def test_a_terminal_starts_only_with_the_characters_the_lexer_tries_it_at(name: str) -> None:
    """The driver tries at each character only the terminals that can start with it (in lark's order): every
    text a terminal's pattern matches starts with one of its first characters, as sre's parse gives them."""
    tables = parser._tables()
    assert tables is not None
    pattern = tables.patterns[name]
    first = lalr.first_characters(pattern)

    @given(st.from_regex(pattern, fullmatch=True))
    def starts_as_said(text: str) -> None:
        assert first is None or (text and text[0] in first)
        assert tables.by_first[text[0]](text, 0) is not None

    starts_as_said()


def test_the_first_characters_of_patterns_sre_says_little_about_are_unknown() -> None:
    assert lalr.first_characters(r"(?i:abc)") is None  # (a flag)
    assert lalr.first_characters(r"[^a]b") is None  # (a negated set)
    assert lalr.first_characters(r"a?") is None  # (a match of nothing)
    assert lalr.first_characters(r"\w+") is None  # (a category)
    assert lalr.first_characters(r"(?=a)a") is None  # (a lookahead)
    assert lalr.first_characters(r"a?[bc]|\(") == "(abc"

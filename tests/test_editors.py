"""Highlighting in editors and documentation: the Pygments lexer (an entry point) and the TextMate grammar of
the VS Code extension, checked on every example and against each other."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pygments
import pygments.lexers
import pytest
from pygments.token import Error, Whitespace, _TokenType

from normdsl.highlight import NormdslLexer
from normdsl.layers import COMPOSITES, KINDS

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "examples").glob("*.nd")) + sorted((ROOT / "normdsl" / "std").glob("*.nd"))
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((VSCODE / "syntaxes" / "normdsl.tmLanguage.json").read_text())


def test_pygments_finds_the_lexer_by_name_and_file_name() -> None:
    assert isinstance(pygments.lexers.get_lexer_by_name("normdsl"), NormdslLexer)
    assert pygments.lexers.find_lexer_class_for_filename("model.nd") is NormdslLexer


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_lexes_without_an_error_token_and_back_to_its_text(path: Path) -> None:
    text = path.read_text()
    tokens = list(NormdslLexer().get_tokens_unprocessed(text))
    assert [t for t in tokens if t[1] in Error] == []
    assert "".join(value for _, _, value in tokens) == text
    assert [start for start, _, _ in tokens] == sorted(start for start, _, _ in tokens)


def test_what_the_grammar_cannot_lex_is_an_error_token_and_lexing_goes_on() -> None:
    tokens = list(NormdslLexer().get_tokens("conv64 $ gn(16) ☃ relu\n"))
    assert [value for kind, value in tokens if kind in Error] == ["$", "☃"]
    assert ("relu" in [value for _, value in tokens]) and "".join(v for _, v in tokens) == "conv64 $ gn(16) ☃ relu\n"
    html = pygments.highlight("conv64(k=3) # c\n", NormdslLexer(), pygments.formatters.HtmlFormatter())
    assert '<span class="c1"># c</span>' in html and '<span class="nb">conv64(</span>' in html


# ---- the TextMate grammar: its regular expressions run here as a TextMate engine runs them on one line ----


def patterns() -> list[tuple[re.Pattern[str], dict[int, str]]]:
    found = []
    for include in GRAMMAR["patterns"]:
        rule = GRAMMAR["repository"][include["include"][1:]]
        assert set(rule) <= {"match", "name", "captures"}  # one-line rules only
        scopes = {0: rule["name"]} if "name" in rule else {}
        scopes |= {int(group): capture["name"] for group, capture in rule.get("captures", {}).items()}
        found.append((re.compile(rule["match"]), scopes))
    return found


def scopes_of(line: str) -> list[str | None]:
    """The innermost scope of each character of ``line``: at each place the rule matching earliest wins
    (the first listed of those matching there), as vscode-textmate does."""
    rules = patterns()
    scope: list[str | None] = [None] * len(line)
    at = 0
    while at < len(line):
        matches = [(m.start(), i, m) for i, (rule, _) in enumerate(rules) if (m := rule.search(line, at))]
        if not matches:
            break
        _, i, m = min(matches, key=lambda found: (found[0], found[1]))
        for group, name in sorted(rules[i][1].items()):
            for k in range(m.start(group), m.end(group)):
                scope[k] = name
        at = max(m.end(), at + 1)
    return scope


PYGMENTS_TO_TEXTMATE = {
    "Comment.Single": "comment.line.number-sign",
    "Literal.String.Double": "string.quoted.double",
    "Literal.String.Other": "string.unquoted.path",
    "Keyword": "keyword.",
    "Name.Builtin": "support.function.layer",
    "Name.Builtin.Pseudo": "support.function.scaling",
    "Name.Attribute": "variable.parameter",
    "Name.Constant": "constant.language",
    "Name.Function": "entity.name.function",
    "Name": "variable.other",
    "Literal.Number.Integer": "constant.numeric.integer",
    "Literal.Number.Float": "constant.numeric.float",
    "Operator": "keyword.operator",
    "Punctuation": "punctuation.separator",
}


def _name(kind: _TokenType) -> str:
    return str(kind).removeprefix("Token.")


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_the_textmate_grammar_gives_every_token_of_every_example_the_class_pygments_gives_it(path: Path) -> None:
    text = path.read_text()
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    scoped = [scopes_of(line) for line in lines]
    for offset, kind, value in NormdslLexer().get_tokens_unprocessed(text):
        if kind in Whitespace:
            continue
        row = max(i for i, start in enumerate(starts) if start <= offset)
        scope = scoped[row][offset - starts[row]]
        expected = PYGMENTS_TO_TEXTMATE[_name(kind)]
        assert scope is not None and scope.startswith(expected), (path.name, row + 1, value, scope, expected)


def test_the_textmate_grammars_own_test_cases_pass_here_too() -> None:
    """editors/vscode/tests/*.test.nd, vscode-tmgrammar-test's format (which .ci/run also runs with VS Code's
    engine where Node.js is installed): ``#   ^^^ scope`` or ``# <--- scope`` under the line it is about."""
    checked = 0
    for case in sorted((VSCODE / "tests").glob("*.test.nd")):
        line = ""
        for text in case.read_text().splitlines()[1:]:
            marks = re.fullmatch(r"#( *)(\^+) (\S+)|# <(-+) (\S+)", text)
            if marks is None:
                line = text
                continue
            start, length, scope = (
                (len(marks[1]) + 1, len(marks[2]), marks[3]) if marks[2] else (0, len(marks[4]), marks[5])
            )
            assert set(scopes_of(line)[start : start + length]) == {scope}, (line, start, scope)
            checked += 1
    assert checked >= 40


def test_the_textmate_grammar_knows_every_layer_kind_of_the_registry() -> None:
    alternation = GRAMMAR["repository"]["layer"]["match"].split("(", 1)[1].split(")", 1)[0]
    assert set(alternation.split("|")) == {*KINDS, *COMPOSITES, "id"}
    assert all(scopes_of(f"{kind}(")[0] == "support.function.layer.normdsl" for kind in KINDS)


def test_the_vscode_extension_names_its_grammar_configuration_and_server() -> None:
    package = json.loads((VSCODE / "package.json").read_text())
    [language] = package["contributes"]["languages"]
    [grammar] = package["contributes"]["grammars"]
    assert language["extensions"] == [".nd"] and grammar["scopeName"] == GRAMMAR["scopeName"] == "source.normdsl"
    assert (VSCODE / grammar["path"]).is_file() and (VSCODE / language["configuration"]).is_file()
    json.loads((VSCODE / language["configuration"]).read_text())
    assert 'args: ["lsp"]' in (VSCODE / package["main"]).read_text()

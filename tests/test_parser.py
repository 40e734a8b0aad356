"""The grammar, the AST with its spans, expansion, and the JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLES, example_ids
from lark import Lark

import normdsl
from normdsl.ast import Layer, Repeat
from normdsl.parser import _lark, _ToAst


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_every_example_parses_and_round_trips_through_json(path: Path) -> None:
    spec = normdsl.parse(path.read_text(), filename=path.name)
    again = normdsl.Spec.from_json(spec.to_json())
    assert again == spec
    assert again.source == spec.source


def test_layer_forms_and_their_spans() -> None:
    spec = normdsl.parse("input(32, 32, 3)\nrelu conv64 gn(16) conv8(k=5, s=2, pad=same)")
    assert spec.input is not None and spec.input.shape == (32, 32, 3)
    relu, conv, gn, conv8 = spec.body
    assert isinstance(conv8, Layer)
    assert (relu.kind, relu.width, relu.args) == ("relu", None, ())
    assert (conv.kind, conv.width) == ("conv", 64)
    assert isinstance(gn, Layer) and gn.kind == "gn" and gn.args[0].key is None and gn.args[0].value == 16
    assert [(a.key, a.value) for a in conv8.args] == [("k", 5), ("s", 2), ("pad", "same")]
    # conv8(k=5, s=2, pad=same) starts at line 2, column 20 and ends before column 45
    assert (conv8.span.line, conv8.span.column, conv8.span.end_column) == (2, 20, 45)
    assert (conv8.name_span.column, conv8.name_span.end_column) == (20, 25)
    assert spec.source[conv8.span.start : conv8.span.end] == "conv8(k=5, s=2, pad=same)"


def test_values_ints_floats_bools_words_strings_and_pairs() -> None:
    (layer,) = normdsl.parse(
        'x(a=-1, b=1e-5, c=0.5, d=true, e=false, f=same, g="s\\"q", h=(1, 7), i=((0, 1), (2, 3)))'
    ).body
    assert isinstance(layer, Layer)
    values = {a.key: a.value for a in layer.args}
    assert values == {
        "a": -1,
        "b": 1e-5,
        "c": 0.5,
        "d": True,
        "e": False,
        "f": "same",
        "g": 's"q',
        "h": (1, 7),
        "i": ((0, 1), (2, 3)),
    }
    assert type(values["a"]) is int and type(values["b"]) is float


def test_repetition_stays_visible_and_expands_in_order() -> None:
    spec = normdsl.parse("conv8*2 ((conv16 bn)*2 relu)*3")
    first, second = spec.body
    assert isinstance(first, Repeat) and first.count == 2
    assert isinstance(second, Repeat) and second.count == 3 and isinstance(second.body[0], Repeat)
    kinds = [f"{layer.kind}{layer.width or ''}" for layer in normdsl.expand(spec.body)]
    assert kinds == ["conv8", "conv8", *(["conv16", "bn", "conv16", "bn", "relu"] * 3)]


def test_a_group_without_a_count_is_written_once() -> None:
    assert len(list(normdsl.expand(normdsl.parse("(conv8 relu) bn").body))) == 3


def test_comments_newlines_and_crlf_are_whitespace() -> None:
    spec = normdsl.parse("# a comment\r\ninput(8, 8, 1)  # shape\r\nconv8\r\n\trelu # end")
    assert [layer.kind for layer in normdsl.expand(spec.body)] == ["conv", "relu"]


def test_a_layer_then_a_group_is_not_a_call() -> None:
    spec = normdsl.parse("conv64 (bn relu)*2")
    assert isinstance(spec.body[0], Layer) and spec.body[0].args == ()
    assert isinstance(spec.body[1], Repeat)


def test_the_parser_is_lalr() -> None:
    assert isinstance(_lark(), Lark) and _lark().options.parser == "lalr"


def test_every_grammar_rule_has_an_ast_translation() -> None:
    """A rule the transformer forgot would otherwise leak a lark Tree (or hit __default__)."""
    # ?rules without an alias only pass their single child through; every other rule builds a tree
    names = {rule.alias or rule.origin.name for rule in _lark().rules if rule.alias or not rule.options.expand1}
    visible = {str(n) for n in names if not str(n).startswith("_")}
    missing = sorted(n for n in visible if not callable(getattr(_ToAst, n, None)))
    assert missing == []


def test_too_deep_nesting_is_a_diagnostic_not_a_recursion_error() -> None:
    with pytest.raises(normdsl.SpecError, match="more than 64 deep"):
        normdsl.parse("(" * 5000 + "relu" + ")" * 5000)


def test_parsing_never_imports_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, normdsl, normdsl.summary;"
        "n = normdsl.check(normdsl.parse(open(sys.argv[1]).read()));"
        "normdsl.render(n); normdsl.summary.text(n);"
        "from normdsl import target_torch, cli; target_torch.render(n); target_torch.figures_line(n);"
        "cli.main(['check', '--target', 'torch', sys.argv[1]]); cli.main(['summary', '--target', 'torch', sys.argv[1]]);"
        "assert not {'tensorflow', 'keras', 'numpy', 'torch', 'jax'} & set(sys.modules), 'a framework imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(EXAMPLES[0])], check=True)


def test_a_check_from_the_command_line_loads_only_what_it_uses() -> None:
    """What makes `normdsl check` start fast (issue 20): no other command's modules, no lark (the cached tables),
    no pathlib, and no normdsl.modules for a spec without `use`; with a `use`, they load."""
    import subprocess
    import sys

    unused = {"normdsl.diagrams", "normdsl.target_torch", "normdsl.fmt", "normdsl.emit_source", "normdsl.modules"}
    code = (
        "import sys; from normdsl import cli; code = cli.main(['check', sys.argv[1]]);"
        "print(sorted(m for m in sys.modules if m in {*sys.argv[2:], 'lark', 'pathlib'}))"
    )
    resnet = next(p for p in EXAMPLES if p.stem == "resnet50")
    run = [sys.executable, "-c", code, str(resnet), *unused]
    subprocess.run(run, capture_output=True, text=True, check=True)  # (the tables cached, if not yet)
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()[-1] == "[]"
    uses = next(p for p in EXAMPLES if "\nuse " in "\n" + p.read_text())
    loaded = subprocess.run([*run[:3], str(uses), *unused], capture_output=True, text=True, check=True).stdout
    loaded = loaded.splitlines()[-1]
    assert "normdsl.modules" in loaded and "pathlib" in loaded


def test_checking_imports_neither_jinja_nor_black() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from normdsl import cli; code = cli.main(['summary', sys.argv[1]]);"
        "assert not {'jinja2', 'black', 'tensorflow', 'numpy'} & set(sys.modules), sorted(sys.modules); sys.exit(code)"
    )
    subprocess.run([sys.executable, "-c", code, str(EXAMPLES[0])], check=True, capture_output=True)

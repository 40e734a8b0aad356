"""Hints speak the user's language: no grammar token names, rewrites of common mistakes as typed,
other libraries' layer names recognised, and an unclosed bracket shown where it was opened."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from conftest import EXAMPLES

import normdsl
from normdsl.diagnostics import Diagnostic
from normdsl.hints import token_word
from normdsl.layers import KINDS
from normdsl.parser import _lark

TOKEN_NAMES = frozenset(t.name for t in _lark().terminals) | {"$END"}
CAPS = re.compile(r"\$END|\b[A-Z_][A-Z0-9_]{2,}\b")


def diagnostics(text: str) -> tuple[Diagnostic, ...]:
    try:
        normdsl.check(normdsl.parse(text))
    except normdsl.SpecError as exc:
        return exc.diagnostics
    return ()


def only(text: str) -> Diagnostic:
    (diagnostic,) = [d for d in diagnostics(text) if d.severity == "error"]
    return diagnostic


def erroneous_inputs(count: int, seed: int = 15) -> list[str]:
    """Examples with tokens deleted, duplicated, swapped or replaced by any token of the grammar."""
    rng = random.Random(seed)
    texts = [p.read_text(encoding="utf-8") for p in EXAMPLES]
    vocabulary = [t.pattern.value for t in _lark().terminals if t.pattern.type == "str"]
    vocabulary += ["conv64", "gn(16)", "3", "1.5", '"x"', "{f}", "(", "\n", "/", "'", "x3"]
    inputs = []
    while len(inputs) < count:
        tokens = re.findall(r"\s+|[A-Za-z_][A-Za-z0-9_]*[({]?|\S", rng.choice(texts))
        for _ in range(rng.randint(1, 4)):
            i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
            match rng.randrange(4):
                case 0:
                    del tokens[i]
                case 1:
                    tokens.insert(i, tokens[j])
                case 2:
                    tokens[i], tokens[j] = tokens[j], tokens[i]
                case _:
                    tokens.insert(i, rng.choice(vocabulary))
        inputs.append("".join(tokens))
    return inputs


def test_no_diagnostic_names_a_grammar_token() -> None:
    named: Counter[str] = Counter()
    syntax = 0
    for text in erroneous_inputs(2_000):
        for d in diagnostics(text):
            said = " ".join([d.message, d.hint or "", *(label for label, _ in d.notes)])
            syntax += said.startswith(("unexpected", "the spec ends"))
            named.update(w for w in CAPS.findall(said) if w in TOKEN_NAMES and w not in text)
            assert "not part of the language" not in said, (text, said)
    assert syntax > 1_000  # the property was tried on many syntax errors
    assert not named, named


def test_every_token_has_a_readable_name() -> None:
    for terminal in _lark().terminals:
        text = terminal.pattern.value if terminal.pattern.type == "str" else None
        word = token_word(terminal.name, text)
        assert not CAPS.search(word), (terminal.name, word)


def test_a_new_token_is_named_by_its_text() -> None:
    assert token_word("GATE_CALL", "gate(") == "gate(...)"
    assert token_word("ARROW", "->") == "'->'"
    assert token_word("SOME_PATTERN", None) == "some pattern"


def test_expected_layers_are_named_once() -> None:
    hint = only("x = {").hint
    assert hint is not None and "a layer" in hint and "res(...)" in hint and "cat(...)" in hint


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("conv64(k=3x3)", "write k=(3, 3)"),
        ("conv64(k = 1x7, s=2)", "write k=(1, 7)"),
        ("maxpool(2x2)", "write (2, 2)"),
        ("input(8, 8, 3) let b(f) = conv{f/2}\nb(8)", "use // for integer division"),
        ("input(8, 8, 3) let b(f) = conv{f}(k=f/2)\nb(8)", "use // for integer division, in braces: k={f//2}"),
        ("gn 16)", "write gn(16)"),
        ("gn (16)", "write gn(16)"),
        ("conv8 gn (4) relu", "write gn(4)"),
        ("conv64 k=5", "write conv64(k=5)"),
        ("relu conv64 (k=5, s=2) relu", "write conv64(k=5, s=2)"),
    ],
)
def test_common_mistakes_are_rewritten_as_typed(text: str, hint: str) -> None:
    assert only(text).hint == hint


PYTORCH_AND_OTHER_NAMES = {
    "batchnorm": "bn",
    "BatchNorm": "bn",
    "BN": "bn",
    "BatchNorm2d": "bn",
    "groupnorm": "gn",
    "GroupNorm": "gn",
    "layernorm": "ln",
    "LayerNorm": "ln",
    "instancenorm": "in",
    "InstanceNorm2d": "in",
    "Conv2D": "conv",
    "Conv2d": "conv",
    "Dense": "dense",
    "Linear": "dense",
    "ReLU": "relu",
    "GELU": "gelu",
    "SiLU": "silu",
    "MaxPool2d": "maxpool",
    "AvgPool2d": "avgpool",
    "AdaptiveAvgPool2d": "gap",
    "Dropout": "dropout",
    "Flatten": "flatten",
    "Sigmoid": "sigmoid",
    "Softmax": "softmax",
    "GlobalAveragePooling2D": "gap",
}


@pytest.mark.parametrize(("name", "kind"), PYTORCH_AND_OTHER_NAMES.items())
def test_other_libraries_layer_names_suggest_ours(name: str, kind: str) -> None:
    diagnostic = only(f"input(32, 32, 3) {name}")
    assert diagnostic.message == f"unknown layer '{name}'"
    assert diagnostic.hint == f"did you mean '{kind}'?"


def test_keras_class_names_suggest_the_kind_that_builds_them() -> None:
    classes = Counter(k.keras_class for k in KINDS.values())
    for kind in KINDS.values():
        # (GroupNormalization is gn and in; Activation every activation; Add and Multiply are also merges)
        if classes[kind.keras_class] == 1 and kind.operator is None:
            assert only(f"input(32, 32, 3) {kind.keras_class}").hint == f"did you mean '{kind.name}'?"


def test_a_call_with_another_librarys_name_suggests_ours() -> None:
    assert only("input(32, 32, 3) conv8 groupnorm(4)").hint == "did you mean 'gn'?"


@pytest.mark.parametrize(
    ("text", "opened", "bracket"),
    [
        ("conv64(k=5", (1, 7), "("),
        ("(conv64 bn\nrelu", (1, 1), "("),
        ("res(conv8 (bn", (1, 11), "("),
        ("input(8, 8, 3)\nconv8(k=5\nrelu", (2, 6), "("),
        ("input(8, 8, 3) let b(f) = conv{f\nb(3)", (1, 31), "{"),
    ],
)
def test_an_unclosed_bracket_is_shown_where_it_was_opened(text: str, opened: tuple[int, int], bracket: str) -> None:
    (note,) = only(text).notes
    label, span = note
    assert label == f"'{bracket}' opened here"
    assert (span.line, span.column) == opened
    assert text.split("\n")[span.line - 1][span.column - 1] == bracket


def test_a_closed_bracket_gets_no_note() -> None:
    assert only("conv64(k=5 s=2)").notes == ()

"""Properties over arbitrary input: any text gives a Spec or a SpecError, never anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import normdsl
from normdsl.layers import KINDS

VOCABULARY = [
    *KINDS, "conv64", "dense10", "gn16", "input", "input(", "(", ")", "*", "=", ",", "3", "-1", "0", "1e-5", "0.5",
    "k", "s", "pad", "same", "valid", "act", "relu6", "true", "false", '"x"', "(1, 7)", "#", "\n", " ", "bnn", "x3",
]  # fmt: skip


def outcome(text: str) -> normdsl.Network | normdsl.SpecError:
    """check() of the text, or the SpecError it raised; any other exception fails the test."""
    try:
        return normdsl.check(normdsl.parse(text))
    except normdsl.SpecError as exc:
        return exc


def assert_well_formed(text: str, result: object) -> None:
    if isinstance(result, normdsl.SpecError):
        assert result.errors, "a SpecError carries at least one error"
        for d in result.diagnostics:
            assert 0 <= d.span.start <= d.span.end <= len(text)
            assert d.message
        assert str(result)  # renders without raising


@given(st.lists(st.sampled_from(VOCABULARY), max_size=30).map(" ".join))
def test_token_soup_gives_a_spec_or_a_spec_error(text: str) -> None:
    assert_well_formed(text, outcome(text))


@given(st.lists(st.sampled_from(VOCABULARY), max_size=30).map("".join))
def test_glued_token_soup_gives_a_spec_or_a_spec_error(text: str) -> None:
    assert_well_formed(text, outcome(text))


@given(st.text(max_size=200))
def test_arbitrary_unicode_gives_a_spec_or_a_spec_error(text: str) -> None:
    assert_well_formed(text, outcome(text))


@given(st.lists(st.sampled_from(VOCABULARY), max_size=30).map(" ".join))
def test_every_parsed_spec_round_trips_through_json(text: str) -> None:
    try:
        spec = normdsl.parse(text)
    except normdsl.SpecError:
        return
    assert normdsl.Spec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("text", ["", "   \n# only a comment\n", "\ufeffconv8", "conv8\x00", "a" * 100_000])
def test_edge_inputs_give_a_spec_or_a_spec_error(text: str) -> None:
    assert_well_formed(text, outcome(text))

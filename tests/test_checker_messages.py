"""Messages of the checker as a user meets them (issue 15): one error for one decision made outside
the spec, the round of a repetition that fails, warnings about an option pointing at the option,
and a dense on feature maps allowed where it is meant."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import normdsl

RESNET = Path(__file__).parent.parent / "examples" / "resnet50.nd"


def test_one_failing_norm_given_from_outside_is_one_error_listing_its_uses() -> None:
    text = RESNET.read_text(encoding="utf-8")
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(normdsl.parse(text, filename="resnet50.nd"), norm="gn(48)")
    (error,) = caught.value.errors
    # the uses of norm, found in the text: the word as a layer, not its definition or comments
    code = [line.split("#", 1)[0] for line in text.split("\n")]
    uses = [f"{i}:{m.start() + 1}" for i, line in enumerate(code, 1) for m in re.finditer(r"\bnorm\b(?!\s*=)", line)]
    assert f"at {len(uses)} uses of norm ({', '.join(uses)})" in error.message
    # ResNet-50's normalized widths are 64·2^k: 48 divides none of them; the divisors of 64 divide all
    assert error.hint == "valid group counts for all of them: 1, 2, 4, 8, 16, 32, 64"
    assert len(caught.value.render().splitlines()) < 10


def test_a_norm_written_in_the_spec_keeps_one_error_per_site() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("input(8, 8, 3) conv6 gn(4) conv10 gn(4)")
    assert len(caught.value.errors) == 2


@pytest.mark.parametrize(
    ("spec", "round_"),
    [
        ("input(8, 8, 3) conv8*5", "the 4th of conv8*5"),  # 8 → 6 → 4 → 2 → 0
        ("input(32, 32, 3) (conv8 maxpool)*6", "the 4th of (conv8 maxpool)*6"),  # 32→15→6→2→0
        ("let b(f) = (conv{f} maxpool)\ninput(32, 32, 3) b(4)*3 b(8)*3", "the 1st of b(8)*3"),
    ],
)
def test_a_shape_problem_in_a_repetition_says_which_round(spec: str, round_: str) -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(spec)
    (error,) = caught.value.errors
    assert f"({round_})" in error.message


@pytest.mark.parametrize(
    ("option", "name"), [({"norm": "gn(8)"}, "--norm"), ({"replace": {"stem": "relu"}}, "--set stem")]
)
def test_a_replacement_the_spec_does_not_use_is_a_warning_at_the_option(option: dict, name: str) -> None:
    text = "# a comment first\ninput(8, 8, 3) conv8"
    network = normdsl.check(text, **option)
    (warning,) = network.warnings
    rendered = warning.render(text, "spec.nd")
    assert rendered.startswith(f"{name}:1:1: warning:")
    assert "a comment first" not in rendered and ("gn(8)" in rendered or "relu" in rendered)


DENSE_ON_MAPS = "input(8, 8, 4) dense16 gelu dense4"


def test_a_dense_on_feature_maps_warns_and_says_how_to_mean_it() -> None:
    warning, _ = normdsl.check(DENSE_ON_MAPS).warnings
    assert "classifier head" in (warning.hint or "") and "# normdsl: allow(pointwise-dense)" in (warning.hint or "")


@pytest.mark.parametrize(
    "spec",
    [
        DENSE_ON_MAPS + "  # normdsl: allow(pointwise-dense)",
        "# normdsl: allow(pointwise-dense)\n" + DENSE_ON_MAPS,
        DENSE_ON_MAPS + "  #normdsl: allow(other, pointwise-dense)",
    ],
)
def test_the_pragma_allows_a_pointwise_dense(spec: str) -> None:
    assert normdsl.check(spec).warnings == ()


def test_the_pragma_on_another_line_allows_nothing_there() -> None:
    spec = "input(8, 8, 4) dense16  # normdsl: allow(pointwise-dense)\ngelu dense4"
    (warning,) = normdsl.check(spec).warnings
    assert warning.span.line == 2

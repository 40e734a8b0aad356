"""Golden diagnostics: each tests/cases/*/NAME.nd beside NAME.err, the exact compiler-style output.

A new case is two new files, no new code. Errors cases must fail `check`; warnings cases must pass
it and print only warnings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import normdsl

CASES = sorted((Path(__file__).parent / "cases").glob("*/*.nd"))


def rendered(path: Path) -> tuple[str, bool]:
    text = path.read_text(encoding="utf-8")
    try:
        network = normdsl.check(normdsl.parse(text, filename=path.name))
    except normdsl.SpecError as exc:
        return exc.render(), False
    return "\n".join(w.render(text, path.name) for w in network.warnings), True


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_diagnostics_match_the_golden_file(path: Path) -> None:
    output, ok = rendered(path)
    assert ok == (path.parent.name == "warnings")
    assert output == path.with_suffix(".err").read_text(encoding="utf-8").rstrip("\n")


def test_gn_message_states_divisibility_the_right_way_round() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("input(224, 224, 3)\nconv32 conv64 conv128 gn(12) conv256")
    (diagnostic,) = caught.value.diagnostics
    assert "128 channels cannot be split into 12 groups" in diagnostic.message
    assert diagnostic.hint == "valid group counts: 1, 2, 4, 8, 16, 32, 64, 128"
    assert (diagnostic.span.line, diagnostic.span.column, diagnostic.span.end_column) == (2, 23, 29)


def test_every_error_of_a_file_is_reported_at_once() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("input(8, 8, 16) conv8(kk=1) gn(3) bnn dropout(2) gn(5)")
    # argument errors everywhere: kk= (column 23), bnn (35), dropout's 2 (47); the shapes after the
    # broken conv8 are unknown, so neither gn is judged rather than judged wrongly
    assert [d.span.column for d in caught.value.errors] == [23, 35, 47]
    assert [d.span.column for d in caught.value.errors] == sorted(d.span.column for d in caught.value.errors)


def test_a_repeated_layers_problem_is_reported_once() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("input(8, 8, 16) (conv16(groups=3, pad=same))*4")
    assert len(caught.value.errors) == 1


def test_group_problems_do_not_stop_shape_inference_after_them() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("input(16, 16, 3) conv16 gn(3) conv12 gn(5)")
    assert [d.message.split(":")[0] for d in caught.value.errors] == ["gn(3)", "gn(5)"]

"""The formatter (``normdsl fmt``, ``normdsl.format``): black's two checks are the model. For every
example, case and fuzzed valid spec the result parses to the same AST as the input (spans aside), and
formatting the result again changes nothing; comments are kept, in order; the spacing is canonical
whatever spacing the input had."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES
from hypothesis import given
from hypothesis import strategies as st
from strategies import random_model, spec_text

import normdsl
from normdsl.diagnostics import Span

ROOT = Path(__file__).resolve().parent.parent
CASES = sorted((ROOT / "tests" / "cases").rglob("*.nd"))
COMMENT = re.compile(r"#[^\n]*")


def shape(value: Any) -> Any:
    """An AST without its spans (and the spec's file name and text): what formatting must keep."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        kept = {f.name: getattr(value, f.name) for f in fields if f.name not in ("filename", "source")}
        return type(value).__name__, {k: shape(v) for k, v in kept.items() if not isinstance(v, Span)}
    if isinstance(value, tuple | list):
        return tuple(shape(v) for v in value)
    return type(value).__name__, value


def assert_safe(text: str, width: int = 120) -> str:
    """Black's equivalence and stability checks, and the comments kept in order."""
    formatted = normdsl.format(text, width=width)
    assert shape(normdsl.parse(formatted)) == shape(normdsl.parse(text)), formatted
    assert normdsl.format(formatted, width=width) == formatted, formatted
    assert [c.rstrip() for c in COMMENT.findall(formatted)] == [c.rstrip() for c in COMMENT.findall(text)]
    return formatted


def test_the_shape_of_an_ast_tells_apart_what_formatting_must_keep() -> None:
    """(The comparison itself can fail: spans are left out, nothing else.)"""
    assert shape(normdsl.parse("conv8(k=3) relu")) == shape(normdsl.parse("conv8( k = 3 )\n  relu"))
    assert shape(normdsl.parse("conv8(k=3) relu")) != shape(normdsl.parse("conv8(k=5) relu"))
    assert shape(normdsl.parse("conv8 (relu)")) != shape(normdsl.parse("conv8(relu)"))
    assert shape(normdsl.parse("dropout(1)")) != shape(normdsl.parse("dropout(1.0)"))


@pytest.mark.parametrize("width", [120, 60, 20, 1])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_formats_safely(path: Path, width: int) -> None:
    assert_safe(path.read_text(encoding="utf-8"), width)


def test_every_case_that_parses_formats_safely_and_one_that_does_not_fails_as_parse_does() -> None:
    formatted = 0
    for path in CASES:
        text = path.read_text(encoding="utf-8")
        try:
            normdsl.parse(text)
        except normdsl.SpecError as exc:
            with pytest.raises(normdsl.SpecError) as raised:
                normdsl.format(text)
            assert raised.value.render() == exc.render()
            continue
        assert_safe(text)
        assert_safe(text, 30)
        formatted += 1
    assert formatted >= 10


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("conv64( k = 3 ,s=2 )bn relu", "conv64(k=3, s=2) bn relu\n"),
        ("conv8  (bn relu) *3", "conv8 (bn relu)*3\n"),
        ("let  f( a , s = 1 ,)=conv{ 4 * a }( s = s )", "let f(a, s=1) = conv{4*a}(s=s)\n"),
        ("norm=bn(eps=1e-5)\nlet x=relu", "norm = bn(eps=1e-5)\nlet x = relu\n"),
        ("(relu)*{ n -1 }\nmaxpool((2,2),)", "(relu)*{n - 1}\nmaxpool((2, 2))\n"),
        ("res( conv8 bn , shortcut = conv8 ) cat( relu , gelu )", "res(conv8 bn, shortcut=conv8) cat(relu, gelu)\n"),
        ("conv{ w( 32 ) }( k = 1 )*{ d( 3 ) // 2 }", "conv{w(32)}(k=1)*{d(3)//2}\n"),
        (
            'use   "blocks.nd"\nuse std/mbconv\nscaling b1( width = 1.1 )',
            'use "blocks.nd"\nuse std/mbconv\nscaling b1(width=1.1)\n',
        ),
        ("\n\n\nrelu\n\n\n\nbn\n\n", "relu\n\nbn\n"),
        ("", ""),
        ("# only a comment   ", "# only a comment\n"),
    ],
)
def test_canonical_spacing(text: str, canonical: str) -> None:
    assert assert_safe(text) == canonical


def test_comments_stay_where_they_were() -> None:
    text = "# head\nnorm=bn # the norm\n\n\n  # about the body\nconv8(k=3, # a kernel\n  s=2)relu\n# tail"
    assert normdsl.format(text) == (
        "# head\nnorm = bn  # the norm\n\n# about the body\nconv8(k=3,  # a kernel\n      s=2) relu\n# tail\n"
    )


def test_continued_lines_align_after_their_bracket_or_indent_under_a_hanging_one() -> None:
    aligned = "let b(f) = (res(conv{f} norm relu,\n  shortcut=conv{f} norm) relu)"
    assert (
        normdsl.format(aligned) == "let b(f) = (res(conv{f} norm relu,\n                shortcut=conv{f} norm) relu)\n"
    )
    hanging = "let b(f) = (\nconv{f}\nrelu\n)\nrelu"
    assert normdsl.format(hanging) == "let b(f) = (\n    conv{f}\n    relu\n)\nrelu\n"
    continued = "let b(f) =\nconv{f}\nrelu"
    assert normdsl.format(continued) == "let b(f) =\n    conv{f}\nrelu\n"


def test_long_lines_break_between_statements_then_between_items() -> None:
    text = "conv8(k=3, s=2, pad=same) bn relu conv8(k=3, s=2, pad=same) bn relu"
    assert normdsl.format(text, width=40) == "conv8(k=3, s=2, pad=same) bn relu\nconv8(k=3, s=2, pad=same) bn relu\n"
    block = "let b = (conv8(k=3, s=2, pad=same) bn relu conv8(k=3) bn relu)"
    assert (
        normdsl.format(block, width=40) == "let b = (conv8(k=3, s=2, pad=same) bn\n         relu conv8(k=3) bn relu)\n"
    )
    for line in normdsl.format(block, width=20).splitlines():  # as short as breaks can make them
        assert len(line) <= 20 or " " not in line.strip(), line


def test_a_spec_that_does_not_parse_raises_the_parsers_error() -> None:
    with pytest.raises(normdsl.SpecError, match="ends too early"):
        normdsl.format("conv8(k=3")
    with pytest.raises(ValueError, match="positive"):
        normdsl.format("relu", width=0)


def test_huge_and_deeply_nested_specs_give_a_diagnostic_or_a_result() -> None:
    with pytest.raises(normdsl.SpecError, match="nests"):
        normdsl.format("(" * 5000 + "relu" + ")" * 5000)
    with pytest.raises(normdsl.SpecError, match=r"too large|more than"):
        normdsl.format("relu " * 600_000)
    long_line = "input(8, 8, 3) " + "relu " * 20_000
    formatted = normdsl.format(long_line, width=80)
    assert max(map(len, formatted.splitlines())) <= 80
    assert normdsl.format("(" * 60 + "relu" + ")" * 60, width=10).count("relu") == 1


# ---- fuzzing: 10,000 random valid specs, every token boundary spaced at random ------------------------


def commas(lists: list[list[str]]) -> list[str]:
    return list(itertools.chain.from_iterable([*([","] if i else []), *items] for i, items in enumerate(lists)))


class Specs:
    """Random syntactically valid spec text from the grammar, with random spacing, line breaks and comments."""

    NAMES = ("relu", "bn", "norm", "gap", "conv64", "dense10", "f", "block", "gn16", "x_1")
    SPACES = (" ", " ", " ", "  ", "\t", "\n", "\n\n\n", "  \n  ")

    def __init__(self, seed: int, depth: int = 3, statements: int = 4) -> None:
        self.r = random.Random(seed)
        self.depth, self.statements = depth, statements
        self.comments = 0

    def sep(self) -> str:
        if self.r.random() < 0.05:
            self.comments += 1
            return f"  # c{self.comments} \n"
        return self.r.choice(self.SPACES)

    def join(self, tokens: list[str]) -> str:
        """Tokens separated by whitespace, or glued where that cannot join two of them."""
        out = tokens[0]
        for before, token in itertools.pairwise(tokens):
            glue = before[-1] in "({,=*" or token[0] in ")},=*" or before == "//" or token == "//"
            out += ("" if glue and self.r.random() < 0.5 else self.sep()) + token
        return out

    def expr(self, depth: int) -> list[str]:
        r = self.r
        choice = r.randrange(6 if depth < 3 else 2)
        if choice == 0:
            return [str(r.randint(-3, 99))]
        if choice == 1:
            return [r.choice(["f", "n", "s"])]
        if choice == 2:
            return ["(", *self.expr(depth + 1), ")"]
        if choice == 3:
            return [r.choice(["w(", "d(", "max("]), *self.expr(depth + 1), ")"]
        return [*self.expr(depth + 1), r.choice(["+", "-", "*", "//"]), *self.expr(depth + 1)]

    def value(self, depth: int) -> list[str]:
        r = self.r
        choice = r.randrange(6 if depth < 3 else 5)
        if choice == 0:
            return [str(r.randint(-5, 300))]
        if choice == 1:
            return [r.choice(["1e-5", "0.5", "-1.0", ".25", "3E2"])]
        if choice == 2:
            return [r.choice(['"stem"', '"a b"', '"q\\"x"', "same", "true", "false", "valid"])]
        if choice == 3:
            return [r.choice(["f", "s"])]
        if choice == 4:
            return ["{", *self.expr(depth + 1), "}"]
        values = [self.value(depth + 1) for _ in range(r.randint(2, 3))]
        return ["(", *commas(values), *([","] if r.random() < 0.2 else []), ")"]

    def args(self, depth: int) -> list[str]:
        args = []
        for _ in range(self.r.randint(0, 2)):
            key = [self.r.choice(["k", "s", "pad", "act", "eps"]), "="] if self.r.random() < 0.7 else []
            args += [*key, *self.value(depth), ","]
        trailing = [","] if args and self.r.random() < 0.2 else []
        return args[:-1] + trailing

    def layer(self, depth: int) -> list[str]:
        r, name = self.r, self.r.choice(self.NAMES)
        choice = r.randrange(4)
        if choice == 0:
            return [name]
        if choice == 1:
            return [name + "(", *self.args(depth), ")"]
        width = [name.rstrip("0123456789") + "{", *self.expr(depth + 1)]
        return [*width, "}"] if choice == 2 else [*width, "}(", *self.args(depth), ")"]

    def seq(self, depth: int) -> list[str]:
        return list(itertools.chain.from_iterable(self.item(depth + 1) for _ in range(self.r.randint(1, 2))))

    def item(self, depth: int) -> list[str]:
        r = self.r
        choice = r.randrange(6 if depth < self.depth else 1)
        if choice <= 1:
            unit = self.layer(depth)
        elif choice == 2:
            unit = ["(", *self.seq(depth), ")"]
        elif choice == 3:
            shortcut = [",", "shortcut", "=", *self.seq(depth)] if r.random() < 0.5 else []
            unit = [r.choice(["res(", "gate("]), *self.seq(depth), *shortcut, ")"]
        elif choice == 4:
            unit = ["cat(", *self.seq(depth), ",", *self.seq(depth), ")"]
        else:
            unit = self.layer(depth)
        if r.random() < 0.25:
            count = r.choice([[str(r.randint(1, 4))], ["n"], ["{", *self.expr(depth + 1), "}"]])
            unit = [*unit, "*", *count]
        return unit

    def statement(self) -> list[str]:
        r = self.r
        choice = r.randrange(10)
        if choice == 0:
            params = [[p, "=", str(r.randint(1, 3))] if r.random() < 0.3 else [p] for p in "fns"][: r.randint(1, 3)]
            trailing = [","] if r.random() < 0.2 else []
            return ["let", "blk(", *commas(params), *trailing, ")", "=", *self.item(0)]
        if choice == 1:
            return [*r.choice([["let", "nm"], ["nm"]]), "=", *self.item(0)]
        if choice == 2:
            return r.choice([["use", '"lib.nd"'], ["use", "std/mbconv"]])
        if choice == 3:
            return [*r.choice([["scaling("], ["scaling", "b1("]]), "width", "=", "1.1", ")"]
        return self.item(0)

    def spec(self) -> str:
        statements = []
        if self.r.random() < 0.5:
            statements.append(["input(", "8", ",", "8", ",", "3", ")"])
        statements += [self.statement() for _ in range(self.r.randint(1, self.statements))]
        text = ""
        for tokens in statements:
            text += self.join(tokens) + "\n"  # (a block's body ends its line)
        return text


def test_ten_thousand_fuzzed_specs_format_safely() -> None:
    for seed in range(10_000):  # (small ones: larger ones below)
        assert_safe(Specs(seed, depth=2, statements=3).spec(), width=random.Random(seed).choice([120, 60, 25]))


def test_the_spacing_of_the_input_does_not_change_the_canonical_form() -> None:
    """Spaces and tabs (not line breaks) added between tokens, or taken away where that cannot glue two
    tokens into one, change nothing: the result is the canonical text itself."""
    for seed in range(10_000, 10_500):
        canonical = assert_safe(Specs(seed, depth=4, statements=5).spec())
        r = random.Random(seed)

        def respace(m: re.Match[str], r: random.Random = r) -> str:
            if m[1]:  # a string or a comment, kept
                return m[1]
            gluable = m.string[m.start() - 1] in "({,=*" or m.string[m.end()] in ")},=*"
            return r.choice(["", " ", "\t"] if gluable else [" ", "  ", "\t", " \t "])

        respaced = re.sub(r'("(?:[^"\\\n]|\\.)*"|#[^\n]*)|(?<=\S) (?=\S)', respace, canonical)
        assert normdsl.format(respaced) == canonical, (respaced, canonical)


@given(random_model(), st.randoms(use_true_random=False))
def test_specs_of_the_keras_twins_format_safely(model: Any, r: random.Random) -> None:
    text = spec_text(*model)
    tokens = re.split(r"(?<=[,)]) ", text)
    mangled = "".join(t + r.choice([" ", "\n", "  ", " # note\n"]) for t in tokens)
    assert assert_safe(mangled) == assert_safe(normdsl.format(mangled))


# ---- the command ------------------------------------------------------------------------------------


def fmt(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "normdsl", "fmt", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_fmt_rewrites_only_specs_that_change_and_reads_folders(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    ugly, tidy, hidden = tmp_path / "sub" / "ugly.nd", tmp_path / "tidy.nd", tmp_path / ".hidden" / "h.nd"
    ugly.write_text("conv8( k=3 )relu")
    tidy.write_text("conv8(k=3) relu\n")
    hidden.write_text("conv8( k=3 )relu")
    inode = tidy.stat().st_ino
    result = fmt(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert ugly.read_text() == "conv8(k=3) relu\n" and tidy.stat().st_ino == inode
    assert hidden.read_text() == "conv8( k=3 )relu"
    assert result.stderr == f"reformatted {ugly}\n1 spec reformatted, 1 left unchanged\n"


def test_fmt_check_and_diff_change_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "a.nd"
    spec.write_text("relu  bn\n")
    check = fmt("--check", str(spec))
    assert check.returncode == 1 and f"would reformat {spec}" in check.stderr
    diff = fmt("--diff", str(spec))
    assert diff.returncode == 0
    assert diff.stdout == f"--- {spec}\n+++ {spec}\n@@ -1 +1 @@\n-relu  bn\n+relu bn\n"
    assert spec.read_text() == "relu  bn\n"
    spec.write_text("relu bn\n")
    assert fmt("--check", str(spec)).returncode == 0


def test_fmt_of_standard_input_prints_and_of_a_bad_spec_leaves_it(tmp_path: Path) -> None:
    result = fmt("-", "-l", "20", stdin="conv8(k=3, s=2, pad=same)   relu bn")
    assert result.returncode == 0 and result.stdout == "conv8(k=3, s=2,\n      pad=same) relu\nbn\n"
    bad = tmp_path / "bad.nd"
    bad.write_text("conv8( k=3")
    result = fmt(str(bad))
    assert result.returncode == 1 and f"{bad}:1:11: error: the spec ends too early" in result.stderr
    assert "Traceback" not in result.stderr and bad.read_text() == "conv8( k=3"
    other = tmp_path / "spec.txt"
    other.write_text("relu  bn")
    result = fmt(str(other))
    assert result.returncode == 2 and "rewrites only .nd files" in result.stderr and other.read_text() == "relu  bn"
    assert fmt(str(tmp_path / "missing.nd")).returncode == 2


def test_the_readme_shows_real_fmt_output() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Formatting", 1)[1].split("\n#", 1)[0]
    command, shown = re.search(r"\$ echo '(.*)' \| normdsl fmt -\n((?:    [^$\n].*\n)+)", section).groups()
    assert fmt("-", stdin=command + "\n").stdout == "".join(line[4:] + "\n" for line in shown.splitlines())

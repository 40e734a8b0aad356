"""Pieces of Python source that targets write: typed code (:class:`PyCode`), inert text
(:class:`SafeText`, made by :func:`safe_text`), black's spelling of values (:func:`literal`) and of a
long statement (:func:`formatted`), and the render-ready statements and functions templates print."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from normdsl.layers import Code

LINE_LENGTH = 88  # black's default, which the output is formatted with


class PyCode(str):
    """Python source made from typed values: identifiers from a Namespace, repr() of validated
    values and a fixed vocabulary. Templates print it as it is."""

    def __html__(self) -> str:  # the Jinja environment prints only PyCode, SafeText and numbers
        return self


class SafeText(str):
    """Text for one line of a comment or a docstring, escaped by :func:`safe_text`."""

    def __html__(self) -> str:
        return self


NO_COMMENT = SafeText()
_CODING = re.compile(r"(coding)([:=])", re.IGNORECASE)
_QUOTES = re.compile(r'"(?=")|(?<=")"|^"|"$')


def safe_text(text: str) -> SafeText:
    """Any text as one line that is inert in a ``#`` comment and in a triple-quoted docstring:
    line and paragraph separators, tabs and other whitespace become spaces, control and format
    characters are escaped (``\\x00``, ``\\u202e``), backslashes get a backslash (no escape forms),
    so does a double quote next to another or at either end (no ``\"\"\"`` ends a docstring early, none
    merges with the template's), and ``coding:``/``coding=`` get a space (no encoding declaration,
    PEP 263). Spaces are kept: a spec line keeps its indentation."""
    if not text.isprintable():
        text = "".join(_safe_char(c) for c in text)
    text = _QUOTES.sub(r'\\"', text.rstrip().replace("\\", "\\\\"))
    return SafeText(_CODING.sub(r"\1 \2", text))


def _safe_char(c: str) -> str:
    if c.isprintable():
        return c
    if c.isspace():
        return " "
    return c.encode("unicode_escape").decode("ascii")  # \x00, \u202e: its backslash is doubled after


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement of generated code with its comment and body."""

    code: PyCode  # a statement (black-split when longer than a line): x = layers.Conv2D(32, 3)(x), for _ in range(3):
    comment: SafeText = NO_COMMENT  # where it comes from in the spec: groupnorm.nd:4:23  gn(16)
    trailing: bool = False  # the comment ends the line (it fits black's 88 columns); else it stands above
    body: tuple[Statement, ...] = ()  # the body of a for loop or a local def


@dataclass(frozen=True, slots=True)
class Function:
    """A spec block as a Python function: def bottleneck(x, f, s=1): ... return x."""

    name: PyCode
    signature: PyCode  # x, f, s=1
    comment: SafeText
    body: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class SourceProgram:
    """A program as the templates receive it: functions and build_model's statements, rendered."""

    functions: tuple[Function, ...]  # the blocks the model uses, in the order they are defined
    body: tuple[Statement, ...]  # build_model's statements, from inputs to x
    output: PyCode  # the variable holding the model's output


def comment(place: str, text: str) -> SafeText:
    """``groupnorm.nd:4:23  gn(16)``: where, two spaces, what."""
    return SafeText(f"{safe_text(place)}  {safe_text(text)}".rstrip())


def width(text: str) -> int:
    """Columns ``text`` takes as black counts them: East Asian wide characters two, combining ones none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def literal(value: object) -> str:
    """A validated value as Python source, as black writes it (strings in double quotes); a
    parameter expression (Code) as itself."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        if value.isprintable() and not set(value) & {'"', "\\"}:
            return f'"{value}"'
        written = repr(value)  # black's choice of quotes: double, unless that needs more escapes
        return f'"{written[1:-1]}"' if written.startswith("'") and '"' not in value else written
    if isinstance(value, float):
        return repr(value).replace("e+", "e")  # black writes 1e16, not 1e+16
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


@functools.lru_cache(maxsize=4096)
def formatted(code: str, indent: int) -> PyCode:
    """A statement as black writes it at ``indent`` levels: as it is when it fits the line, else
    split by black (once per distinct statement: formatting the whole module is what made large
    specs slow to build)."""
    if 4 * indent + width(code) <= LINE_LENGTH:
        return PyCode(code)
    import gc

    import black  # slow to import: only when a statement needs it

    if not gc.isenabled():  # (render pauses the collector; black's garbage needs it: 50 KB a call)
        gc.enable()
        try:
            return formatted.__wrapped__(code, indent)
        finally:
            gc.disable()

    mode = black.Mode(line_length=max(LINE_LENGTH - 4 * indent, 1))
    if code.endswith(":"):  # a for or def header: black needs a body, which is dropped again
        return PyCode(black.format_str(code + "\n    pass\n", mode=mode).rstrip("\n").rsplit("\n", 1)[0])
    return PyCode(black.format_str(code, mode=mode).rstrip("\n"))

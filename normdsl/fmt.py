"""Spec text → the same spec in one canonical layout (``normdsl fmt``, ``normdsl.format``).

The formatter works on the parser's own token stream (lark's interactive parser, so that every token
is lexed exactly as ``parse`` lexes it), never on the AST: comments, and the line breaks the author
chose, survive. Only a spec that parses is formatted; the spacing between tokens is canonical (one
space between items, none inside brackets, ``k=3``, ``x*3``, ``let f(a) = ...``, ``{f - 1}``),
trailing commas go, runs of blank lines become one, continued lines are indented after their open
bracket, and a line longer than ``width`` is broken between items or after a comma. No line break is
ever removed and no two tokens are ever glued that could then be read as one, so the result parses
to the same AST, and formatting it again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from normdsl.ast import Spec
from normdsl.limits import DEFAULT_LIMITS, Limits
from normdsl.parser import _lark, parse

DEFAULT_WIDTH = 120
INDENT = 4  # a continued statement, and the lines inside a bracket that ends its line
_GAP = re.compile(r"#[^\n]*|\n")  # what a gap between tokens may hold besides whitespace


@dataclass(slots=True)
class _Token:
    """A token of the spec with what stands before it."""

    text: str
    start: int  # offset in the text: statements are found by where they start
    gap: list[str] = field(default_factory=list)  # before the token: "\n" and comments, in order

    @property
    def opens(self) -> bool:  # res( conv( conv{ ( { }(
        return self.text.endswith(("(", "{")) and not self.text.startswith('"')

    @property
    def closes(self) -> bool:  # ) } }(
        return self.text.startswith((")", "}"))


def format_spec(
    text: str, *, width: int = DEFAULT_WIDTH, filename: str = "<spec>", limits: Limits = DEFAULT_LIMITS
) -> str:
    """``text`` in normdsl's canonical layout; raises :class:`SpecError` (as ``parse``) if it does not parse.
    ``width`` is the line length that is kept to where a line can be broken."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"format(width=...) must be a positive int, got {width!r:.40}")
    spec = parse(text, filename=filename, limits=limits)  # the diagnostics, and the bounds on size and nesting
    tokens = _tokens(text)
    return _Layout(width, _statement_starts(spec) | {len(text)}).run(tokens)  # (the end starts no continued line)


def _tokens(text: str) -> list[_Token]:
    """The parser's tokens, each with the line breaks and comments before it; a last pseudo-token "" holds
    what follows the last one. Trailing commas are dropped (their gaps join the next token's)."""
    found: list[_Token] = []
    end = 0
    for token in _lark().parse_interactive(text).iter_parse():
        start = token.start_pos or 0
        found.append(_Token(str(token), start, _GAP.findall(text, end, start)))
        end = token.end_pos if token.end_pos is not None else start + len(token)
    found.append(_Token("", len(text), _GAP.findall(text, end, len(text))))
    kept: list[_Token] = []
    for i, item in enumerate(found):
        if item.text == "," and found[i + 1].closes:
            found[i + 1].gap[:0] = item.gap
        else:
            kept.append(item)
    return kept


def _statement_starts(spec: Spec) -> frozenset[int]:
    statements = (*spec.uses, *spec.scalings, *spec.inputs, *spec.blocks, *spec.body)
    return frozenset(s.span.start for s in statements)


@dataclass(slots=True)
class _Open:
    """An open bracket: the column after it, the indentation of its line, and whether it ends its line."""

    after: int
    line_indent: int
    brace: bool
    hanging: bool | None = None  # decided by where the next token goes


@dataclass
class _Layout:
    """Lines being laid out within a width."""

    width: int
    starts: frozenset[int]
    lines: list[str] = field(default_factory=list)
    line: str = ""
    indent: int = 0
    code: int = 0  # the length of the line without its comment
    newlines: int = 0  # line breaks seen since the last thing placed
    stack: list[_Open] = field(default_factory=list)

    def run(self, tokens: list[_Token]) -> str:
        seps = self.separators(tokens)
        breakable = self.breakable(tokens, seps)
        chunks = self.chunks(tokens, seps, breakable)
        for i, token in enumerate(tokens):
            for piece in token.gap:
                if piece == "\n":
                    self.newlines += 1
                else:
                    self.comment(piece.rstrip(" \t\r\f\v"), tokens[i].start)
            if not token.text:
                break
            fits = self.code + len(seps[i]) + chunks[i] <= self.width
            if self.line and not self.newlines and breakable[i] is not None and not fits:
                self.newlines = 1
            self.place(token, seps[i])
        if self.line:
            self.lines.append(self.line)
        return "".join(line + "\n" for line in self.lines)

    def separators(self, tokens: list[_Token]) -> list[str]:
        """The space before each token when it follows the one before on the same line."""
        seps = [""] * len(tokens)
        depth = 0
        for i in range(1, len(tokens)):
            before, token = tokens[i - 1], tokens[i]
            depth += before.opens - before.closes
            if before.opens or token.closes or token.text == ",":
                seps[i] = ""
            elif before.text == ",":
                seps[i] = " "
            elif "=" in (before.text, token.text):
                seps[i] = " " if depth == 0 else ""
            elif before.text in ("*", "//") or token.text in ("*", "//"):
                seps[i] = ""
            else:
                seps[i] = " "
        return seps

    @staticmethod
    def chunks(tokens: list[_Token], seps: list[str], breakable: list[int | None]) -> list[int]:
        """For each token, the length of the text from it to the next place where a line can be broken at
        its depth or shallower, or must be (a line break or comment), or to the end of its bracket: a line is
        broken at a place only if that does not fit, so lines are broken between statements, then between
        a bracket's items, then inside them."""
        n = len(tokens)
        offset = [0] * (n + 1)  # where each token would end if everything were on one line
        for i, token in enumerate(tokens):
            offset[i + 1] = offset[i] + len(seps[i]) + len(token.text)
        closing = [n - 1] * n  # the token just after the bracket each token is in closes
        opened: list[list[int]] = []
        for i, token in enumerate(tokens):
            if token.closes and opened:
                for j in opened.pop():
                    closing[j] = i + 1
            if opened:
                opened[-1].append(i)
            if token.opens:
                opened.append([])
        chunks = [0] * n
        depths = [d for d in breakable if d is not None]
        nearest = [n] * (max(depths, default=0) + 1)  # nearest[d]: the next breakable token at depth d
        hard = n - 1  # the next token after a line break or comment
        for i in range(n - 2, -1, -1):
            if tokens[i + 1].gap:
                hard = i + 1
            if (after := breakable[i + 1]) is not None:
                nearest[after] = i + 1
            if (depth := breakable[i]) is not None:
                end = min(hard, closing[i], *nearest[: depth + 1])
                chunks[i] = offset[end] - offset[i] - len(seps[i])
        return chunks

    def breakable(self, tokens: list[_Token], seps: list[str]) -> list[int | None]:
        """Where a long line may be broken, and at which depth of brackets: before a statement, and inside
        parentheses (not braces) after a comma or between items."""
        result: list[int | None] = [None] * len(tokens)
        brackets: list[bool] = []  # is a brace
        for i, token in enumerate(tokens):
            if i and not brackets:
                result[i] = 0 if token.start in self.starts else None
            elif i and not any(brackets):
                operator = "+" in (token.text, tokens[i - 1].text) or "-" in (token.text, tokens[i - 1].text)
                result[i] = len(brackets) if seps[i] == " " and not operator else None
            if token.closes and brackets:
                brackets.pop()
            if token.opens:
                brackets.append(token.text[-1] == "{")
        return result

    def new_line(self, indent: int) -> None:
        if self.line:
            self.lines.append(self.line)
            if self.newlines >= 2:
                self.lines.append("")
        elif self.newlines >= 2 and self.lines:
            self.lines.append("")
        self.newlines = 0
        self.indent = indent
        self.line = " " * indent
        self.code = indent

    def continued(self, start: int, closes: bool) -> int:
        """The indentation of a line that begins with a token at ``start`` (a closing bracket if ``closes``)."""
        if not self.stack:
            return 0 if start in self.starts or closes else INDENT
        top = self.stack[-1]
        if top.hanging:
            return top.line_indent if closes else top.line_indent + INDENT
        return top.after - 1 if closes else top.after

    def comment(self, text: str, next_start: int) -> None:
        if self.line and not self.newlines:
            self.line += "  " + text
            return
        if self.stack and self.stack[-1].hanging is None:
            self.stack[-1].hanging = True
        self.new_line(self.continued(next_start, False))
        self.line += text

    def place(self, token: _Token, sep: str) -> None:
        if self.line and not self.newlines:
            if self.stack and self.stack[-1].hanging is None:
                self.stack[-1].hanging = False
            self.line += sep + token.text
        else:
            if self.stack and self.stack[-1].hanging is None:
                self.stack[-1].hanging = True
            self.new_line(self.continued(token.start, token.closes))
            self.line += token.text
        self.code = len(self.line)
        if token.closes and self.stack:
            self.stack.pop()
        if token.opens:
            self.stack.append(_Open(len(self.line), self.indent, token.text[-1] == "{"))

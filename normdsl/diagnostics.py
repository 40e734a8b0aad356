"""Span, Diagnostic and SpecError, and rendering them compiler-style."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Span:
    """A region of spec text: 1-based line/column, end exclusive, plus 0-based offsets."""

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int

    @staticmethod
    def at(text: str, offset: int, length: int = 1) -> Span:
        """The span of ``length`` characters at ``offset`` in ``text``."""
        offset = max(0, min(offset, len(text)))
        length = max(0, min(length, len(text) - offset))
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        end = offset + length
        end_line = text.count("\n", 0, end) + 1
        end_column = end - (text.rfind("\n", 0, end) + 1) + 1
        return Span(line, column, end_line, end_column, offset, end)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem (or warning) at a span, with a hint and notes."""

    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    # Further places worth showing (e.g. where a block was used), with a label each.
    notes: tuple[tuple[str, Span], ...] = ()
    # (name, text) of what the span points into when it is not the spec: an option's value (--norm)
    elsewhere: tuple[str, str] | None = None

    def render(self, source: str, filename: str) -> str:
        return render(self, source, filename)


class SpecError(ValueError):
    """A spec that cannot be used, with every diagnostic found (errors, and warnings alongside)."""

    def __init__(
        self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...], source: str = "", filename: str = "<spec>"
    ):
        self.diagnostics = tuple(diagnostics)
        self.source = source
        self.filename = filename
        super().__init__(self.render())

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    def render(self) -> str:
        return render_all(self.diagnostics, self.source, self.filename)

    def _repr_html_(self) -> str:
        """The rendering for notebooks: preformatted, HTML-escaped (spec text never becomes markup), the
        offending text marked; its text is ``render()``'s."""
        return f'<pre class="normdsl-error">{render_all_html(self.diagnostics, self.source, self.filename)}</pre>'

    def _repr_markdown_(self) -> str:
        """The rendering as a Markdown code block (fenced longer than any run of backticks inside)."""
        text = self.render()
        longest = max((len(run) for run in re.findall("`+", text)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{fence}text\n{text}\n{fence}\n"


class RenderError(RuntimeError):
    """Internal error: a template produced code that black or the safety check rejects."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``did you mean 'bn'?`` for the closest choice, if one is close."""
    import difflib  # (only when something is misspelled)

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def one_line(text: str) -> str:
    """Text safe on one line of a comment: whitespace runs become one space, the unprintable is escaped."""
    text = " ".join(text.split())
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shown(path: str | os.PathLike[str]) -> str:
    """A file name as printed to a terminal: unprintable characters (escape sequences, controls,
    bidi marks) escaped as repr escapes them, everything else as it is."""
    name = str(path)
    return name if name.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _printable(text: str) -> str:
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


MAX_SHOWN = 100  # diagnostics printed at most; the rest are counted


def render_all(
    diagnostics: Iterable[Diagnostic], source: str, filename: str, *, limit: int = MAX_SHOWN, color: bool = False
) -> str:
    """Each diagnostic rendered, the first ``limit`` of them, then how many more there are."""
    listed = list(diagnostics)
    out = [render(d, source, filename, color=color) for d in listed[:limit]]
    if len(listed) > limit:
        rest = listed[limit:]
        errors = sum(d.severity == "error" for d in rest)
        out.append(
            f"{shown(filename)}: ... and {len(rest):,} more ({errors:,} errors, {len(rest) - errors:,} warnings)"
        )
    return "\n".join(out)


def render(diagnostic: Diagnostic, source: str, filename: str, *, color: bool = False) -> str:
    """``file:line:col: severity: message``, the source line, a caret underline, then the hint;
    with ``color``, styled as compilers style them on a terminal (the text is the same)."""
    if diagnostic.elsewhere is not None:
        filename, source = diagnostic.elsewhere
    span, name, style = diagnostic.span, shown(filename), functools.partial(painted, color=color)
    where = style(f"{name}:{span.line}:{span.column}:", "bold")
    out = [f"{where} {style(f'{diagnostic.severity}:', diagnostic.severity)} {style(diagnostic.message, 'bold')}"]
    out += _excerpt(source, span, style)
    for label, at in diagnostic.notes:
        out.append(f"{style(f'{name}:{at.line}:{at.column}:', 'bold')} {style('note:', 'note')} {label}")
        out += _excerpt(source, at, style)
    if diagnostic.hint:
        out.append(f"  {style('hint:', 'hint')} {diagnostic.hint}")
    return "\n".join(out)


def render_all_html(diagnostics: Iterable[Diagnostic], source: str, filename: str, *, limit: int = MAX_SHOWN) -> str:
    """``render_all`` as HTML for a ``<pre>``: the same text, escaped, with the offending text of each source
    line shown marked (``<mark class="error">``) and the location in bold."""
    import html

    listed = list(diagnostics)
    out = []
    for d in listed[:limit]:
        text, src = (d.elsewhere[1], d.elsewhere[0]) if d.elsewhere is not None else (source, filename)
        plain = render(d, text, src).split("\n")
        marked = [html.escape(line) for line in plain]
        marked[0] = f"<b>{html.escape(plain[0])}</b>"
        excerpt = _excerpt(text, d.span)
        if excerpt and len(plain) > 2 and plain[1] == excerpt[0]:
            caret = excerpt[1]
            start = len(caret) - len(caret.lstrip(" "))
            end = len(caret.rstrip())
            line = plain[1]
            marked[1] = (
                html.escape(line[:start])
                + f'<mark class="{d.severity}">{html.escape(line[start:end])}</mark>'
                + html.escape(line[end:])
            )
        out.append("\n".join(marked))
    rest = render_all(listed, source, filename, limit=limit).split("\n")[-1] if len(listed) > limit else None
    return "\n".join(out + ([html.escape(rest)] if rest else []))


STYLES = {"bold": "1", "error": "1;31", "warning": "1;35", "note": "1;36", "hint": "1;36", "caret": "1;32"}


def painted(text: str, style: str, *, color: bool) -> str:
    """``text`` in one of ``STYLES`` (ANSI SGR codes, as gcc and clang colour diagnostics), or as it is."""
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m" if color and text else text


@functools.lru_cache(maxsize=4)
def _lines(source: str) -> list[str]:
    """The source's lines, split once per source, as lark counts them: at \\n only (a form feed,
    U+2028 or a lone \\r is no line break to the parser, so the caret must not treat it as one)."""
    return [line.removesuffix("\r") for line in source.split("\n")]


def _excerpt(source: str, span: Span, style: Callable[[str, str], str] = lambda text, _: text) -> list[str]:
    lines = _lines(source)
    if not 1 <= span.line <= len(lines):
        return []
    text = _printable(lines[span.line - 1])
    if len(text) > 200:  # very long lines: show a window around the caret
        lo = max(0, span.column - 1 - 80)
        shown_text, shift = text[lo : lo + 160], lo
    else:
        shown_text, shift = text, 0
    start = min(max(span.column - 1 - shift, 0), len(shown_text))  # (a span from JSON may point anywhere)
    width = (span.end_column - span.column) if span.end_line == span.line else len(shown_text) - start
    width = max(1, min(width, max(1, len(shown_text) - start)))
    return [f"  {shown_text}", "  " + " " * start + style("^" + "~" * (width - 1), "caret")]

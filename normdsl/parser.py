"""Text → Spec: builds the Lark parser once, runs it, and translates Lark's errors into diagnostics."""

from __future__ import annotations

import functools
import json
import re

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from normdsl._paths import data_dir
from normdsl.ast import Arg, InputDecl, Layer, Node, Repeat, Spec, Value
from normdsl.diagnostics import Diagnostic, Span, SpecError

MAX_NESTING = 64  # groups inside groups; deeper specs are rejected before the tree is walked


@functools.cache
def _lark() -> Lark:
    grammar = (data_dir("grammar") / "normdsl.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, *, filename: str = "<spec>") -> Spec:
    """Parse spec text into a :class:`Spec`; raise :class:`SpecError` with positioned diagnostics."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise SpecError([_syntax_diagnostic(exc, text)], text, filename) from None
    _check_nesting(tree, text, filename)
    spec: Spec = _ToAst().transform(tree)
    return Spec(body=spec.body, input=spec.input, filename=filename, source=text)


def _span(meta: object) -> Span:
    m = meta  # lark Meta and Token both carry these attributes
    return Span(m.line, m.column, m.end_line, m.end_column, m.start_pos, m.end_pos)  # type: ignore[attr-defined]


_SIZED = re.compile(r"([A-Za-z_]+)([0-9]+)")


@v_args(meta=True)
class _ToAst(Transformer[Token, Spec]):
    """One method per grammar rule; a rule without one is an internal error, not a stray Tree."""

    def __default__(self, data: str, children: list[object], meta: object) -> object:
        raise NotImplementedError(f"normdsl: grammar rule {data!r} has no AST translation")

    def start(self, meta: object, children: list[object]) -> Spec:
        decl = children[0] if children and isinstance(children[0], InputDecl) else None
        body = tuple(c for c in children if not isinstance(c, InputDecl))
        return Spec(body=body, input=decl)  # type: ignore[arg-type]

    def input_decl(self, meta: object, children: list[Token]) -> InputDecl:
        return InputDecl(tuple(int(t) for t in children[1:]), _span(meta))

    def repeat(self, meta: object, children: list[object]) -> Repeat:
        unit, count = children
        assert isinstance(count, Token)
        body = unit.body if isinstance(unit, Repeat) and unit.count == 1 else (unit,)
        return Repeat(body, int(count), _span(meta), _span(count))  # type: ignore[arg-type]

    def group(self, meta: object, children: list[Node]) -> Repeat:
        return Repeat(tuple(children), 1, _span(meta))

    def bare_layer(self, meta: object, children: list[Token]) -> Layer:
        return _layer(children[0], str(children[0]), (), meta)

    def call_layer(self, meta: object, children: list[object]) -> Layer:
        name = children[0]
        assert isinstance(name, Token)
        return _layer(name, str(name)[:-1], tuple(children[1:]), meta)  # type: ignore[arg-type]

    def kwarg(self, meta: object, children: list[object]) -> Arg:
        key, value = children
        return Arg(str(key), value, _span(meta))  # type: ignore[arg-type]

    def posarg(self, meta: object, children: list[Value]) -> Arg:
        return Arg(None, children[0], _span(meta))

    def int(self, meta: object, children: list[Token]) -> int:
        return int(children[0])

    def float(self, meta: object, children: list[Token]) -> float:
        return float(children[0])

    def string(self, meta: object, children: list[Token]) -> str:
        value: str = json.loads(children[0])  # the grammar admits only JSON's \" \\ \n \t escapes
        return value

    def word(self, meta: object, children: list[Token]) -> Value:
        word = str(children[0])
        return {"true": True, "false": False}.get(word, word)

    def tuple(self, meta: object, children: list[Value]) -> Value:
        return tuple(children)


def _layer(token: Token, name: str, args: tuple[Arg, ...], meta: object) -> Layer:
    sized = _SIZED.fullmatch(name)
    kind, width = (sized[1], int(sized[2])) if sized else (name, None)
    name_span = Span(token.line, token.column, token.line, token.column + len(name), token.start_pos, token.start_pos + len(name))  # type: ignore[arg-type, operator]
    return Layer(kind, width, args, _span(meta), name_span)


def _check_nesting(tree: Tree[Token], text: str, filename: str) -> None:
    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SpecError(
                [
                    Diagnostic(
                        "error",
                        f"groups are nested more than {MAX_NESTING} deep",
                        _span(node.meta),
                        "flatten the spec, or repeat a group instead of nesting it",
                    )
                ],
                text,
                filename,
            )
        nested = depth + (node.data == "group")
        stack.extend((c, nested) for c in node.children if isinstance(c, Tree))


# ---- syntax errors in plain words -------------------------------------------------------------

_WORDS = {
    "NAME": "a layer name",
    "CALL": "a layer with arguments",
    "INPUT_CALL": "input(...)",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a "string"',
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "STAR": "'*'",
    "EQUAL": "'='",
    "$END": "the end of the spec",
}

# Common mistakes, recognised by the parser state they leave it in (lark's match_examples).
_MISTAKES: dict[str, list[str]] = {
    "write arguments right after the name, with no space: gn(16), not gn (16)": [
        "gn (16)",
        "conv64 (k=5)",
        "gn 16",
        "conv64 k=5",
    ],
    "a repetition needs a count after '*', e.g. conv64*3": ["conv64*", "conv64 * relu", "(bn relu)*"],
    "close the argument list with ')'": ["conv64(k=5", "gn(16", "conv64(k=5, s=2"],
    "separate arguments with commas; a pair is written (3, 3)": ["conv64(k=5 s=2)", "conv64(k=3x3)", "maxpool(3 3)"],
    "an argument is written key=value, e.g. conv64(k=5)": ["conv64(k=)", "conv64(=3)", "conv64(k==3)"],
    "close the group with ')'": ["(conv64 bn", "((conv64)*2"],
    "the shape is written input(H, W, C) with whole numbers, e.g. input(224, 224, 3)": [
        "input()",
        "input(a)",
        "input(32, 32.0, 3)",
        "input(32 32)",
    ],
}


_CHAR_HINTS = {
    "'": 'strings use double quotes: name="stem"',
    "{": "{expressions} are not part of the language (yet)",
    "}": "{expressions} are not part of the language (yet)",
    "\ufeff": "remove the byte-order mark (U+FEFF) from the file",
}


def _syntax_diagnostic(exc: UnexpectedInput, text: str) -> Diagnostic:
    pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    if isinstance(exc, UnexpectedCharacters):
        char = text[pos] if pos < len(text) else ""
        shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
        hint = _CHAR_HINTS.get(char) or _expected(exc.allowed)
        return Diagnostic("error", f"unexpected character {shown}", Span.at(text, pos), hint)
    # use_accepts=True would be more precise, but lark 1.3.1 crashes formatting a debug message with it
    hint = exc.match_examples(_lark().parse, _MISTAKES, use_accepts=False)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        if token.type == "INPUT_CALL":
            hint = "input(...) may only be the first statement"
        return Diagnostic(
            "error", f"unexpected {str(token)!r}", _span(token), hint or _expected(exc.accepts or exc.expected)
        )
    expected = _expected(exc.accepts or exc.expected) if isinstance(exc, UnexpectedToken) else None
    end = len(text.rstrip())  # just after the last thing written, not on a trailing empty line
    return Diagnostic("error", "the spec ends too early", Span.at(text, end, 0), hint or expected)


def _expected(names: set[str] | frozenset[str] | None) -> str | None:
    if not names:
        return None
    words = sorted({_WORDS.get(n, n) for n in names if not n.startswith("__")})
    return "expected " + (words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1])

"""A Pygments lexer for normdsl (``.nd`` files, ```` ```normdsl ```` blocks), registered through the
``pygments.lexers`` entry point: Sphinx, Jupyter and every other Pygments user find it by name.

It is no second tokenizer: the text is cut into the grammar's own terminals by lark's lexer (the parser's,
built from ``grammar/normdsl.lark``), and each terminal is given a Pygments token type; layer kinds of the
registry are builtins, keywords are keywords. Text the grammar cannot lex is an ``Error`` token, one
character at a time, and lexing goes on after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from lark.exceptions import UnexpectedCharacters
from pygments.lexer import Lexer
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
    _TokenType,
)

from normdsl.layers import ACTIVATIONS, COMPOSITES, KINDS
from normdsl.parser import _lark

_KEYWORD_CALLS = {"INPUT_CALL", "SCALING_CALL", "RES_CALL", "CAT_CALL", "GATE_CALL"}
_TYPES: dict[str, _TokenType] = {
    "COMMENT": Comment.Single,
    "STRING": String.Double,
    "STD_PATH": String.Other,
    "INT": Number.Integer,
    "FLOAT": Number.Float,
    "EQUAL": Operator,
    "STAR": Operator,
    "PLUS": Operator,
    "MINUS": Operator,
    "SLASH": Operator,
    "__ANON_0": Operator,  # //
    "COMMA": Punctuation,
    "LPAR": Punctuation,
    "RPAR": Punctuation,
    "LBRACE": Punctuation,
    "RBRACE": Punctuation,
    "CLOSE_CALL": Punctuation,
}
_WORDS = frozenset(ACTIVATIONS) - frozenset(KINDS) | {"same", "valid", "true", "false", "body"}
_SCALING_FUNCTIONS = frozenset({"w", "d", "max", "min"})


def token_type(kind: str, text: str) -> _TokenType:
    """The Pygments token of one of the grammar's terminals."""
    if kind in _TYPES:
        return _TYPES[kind]
    if kind in _KEYWORD_CALLS or kind == text.upper():  # input( res( ...; let use scaling shortcut first
        return Keyword
    if kind.startswith("__IGNORE"):
        return Whitespace
    if kind in ("CALL", "WIDTH_OPEN", "NAME"):
        if kind == "NAME" and text in _WORDS:  # (relu6 is an activation, not relu of width 6)
            return Name.Constant
        name = text.rstrip("({").rstrip("0123456789")
        if name in KINDS or name in COMPOSITES or name == "id":
            return Name.Builtin
        if kind == "CALL" and name in _SCALING_FUNCTIONS:
            return Name.Builtin.Pseudo
        return Name.Function if kind != "NAME" else Name
    return Text


class NormdslLexer(Lexer):  # type: ignore[misc]  # (pygments has no type information)
    name = "normdsl"
    aliases: ClassVar[list[str]] = ["normdsl", "nd"]
    filenames: ClassVar[list[str]] = ["*.nd"]
    mimetypes: ClassVar[list[str]] = ["text/x-normdsl"]
    url = "https://github.com/normdsl/normdsl"

    def get_tokens_unprocessed(self, text: str) -> Iterator[tuple[int, _TokenType, str]]:
        start = 0
        while start < len(text):
            key: tuple[int, _TokenType, str] | None = None  # a name, until what follows says it is a key=
            try:
                for token in _lark().lex(text[start:], dont_ignore=True):
                    found = start + (token.start_pos or 0), token_type(token.type, str(token)), str(token)
                    if key is not None and found[1] is not Whitespace:
                        yield (key[0], Name.Attribute, key[2]) if token.type == "EQUAL" else key
                        key = None
                    if token.type == "NAME" and key is None:
                        key = found
                    elif key is None or found[1] is not Whitespace:
                        yield found
                    else:  # whitespace between a name and what follows: held back with the name
                        yield key
                        key = None
                        yield found
                if key is not None:
                    yield key
                return
            except UnexpectedCharacters as exc:
                if key is not None:
                    yield key
                at = start + (exc.pos_in_stream or 0)
                yield at, Error, text[at]
                start = at + 1

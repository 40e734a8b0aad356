"""The spec as written: frozen dataclasses, each node with its source span.

Repetition stays visible (``Repeat``); :func:`expand` flattens it into the layer list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from normdsl.diagnostics import Span

# Argument values: bare words and quoted strings are both ``str``; ``true``/``false`` are bools.
Value = int | float | bool | str | tuple["Value", ...]


@dataclass(frozen=True, slots=True)
class Arg:
    key: str | None  # None for a positional argument
    value: Value
    span: Span


@dataclass(frozen=True, slots=True)
class Layer:
    kind: str  # "conv" of conv64
    width: int | None  # 64 of conv64
    args: tuple[Arg, ...]
    span: Span  # the whole layer, arguments included
    name_span: Span  # just the name: conv64 of conv64(k=5)

    @property
    def positional(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.key is None)

    @property
    def keywords(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.key is not None)


@dataclass(frozen=True, slots=True)
class Repeat:
    """``body`` written ``count`` times: ``conv64*3`` or ``(conv64 bn relu)*3``; a bare group has count 1."""

    body: tuple[Node, ...]
    count: int
    span: Span
    count_span: Span | None = None


Node = Layer | Repeat


@dataclass(frozen=True, slots=True)
class InputDecl:
    shape: tuple[int, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Spec:
    body: tuple[Node, ...]
    input: InputDecl | None = None
    filename: str = "<spec>"
    source: str = field(default="", compare=False, repr=False)

    def to_json(self) -> str:
        return json.dumps(_encode(self), indent=2)

    @staticmethod
    def from_json(text: str) -> Spec:
        spec = _decode(json.loads(text))
        if not isinstance(spec, Spec):
            raise ValueError("JSON does not hold a normdsl Spec")
        return spec


def expand(nodes: tuple[Node, ...]) -> Iterator[Layer]:
    """The flat layer list, repetitions unrolled, in order (check bounds repeat counts first)."""
    for node in nodes:
        if isinstance(node, Layer):
            yield node
        else:
            for _ in range(node.count):
                yield from expand(node.body)


_NODE_TYPES: dict[str, type] = {t.__name__: t for t in (Spec, InputDecl, Repeat, Layer, Arg, Span)}


def _encode(obj: Any) -> Any:
    if type(obj).__name__ in _NODE_TYPES:
        out: dict[str, Any] = {"type": type(obj).__name__}
        out.update({f.name: _encode(getattr(obj, f.name)) for f in fields(obj)})
        return out
    if isinstance(obj, tuple):  # every sequence in the AST is a tuple; JSON has lists
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return tuple(_decode(v) for v in obj)
    if isinstance(obj, dict):
        cls = _NODE_TYPES[obj["type"]]
        return cls(**{k: _decode(v) for k, v in obj.items() if k != "type"})
    return obj

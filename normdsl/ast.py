"""The spec as written: frozen dataclasses, each node with its source span.

Repetition stays visible (``Repeat``); :func:`expand` flattens it into the layer list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from normdsl.diagnostics import Span


@dataclass(frozen=True, slots=True)
class Ref:
    """A block parameter used in a width, count or argument: the f of conv{f}."""

    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    """Integer arithmetic on block parameters: conv{4*f}."""

    op: str  # + - * //
    left: Expr
    right: Expr
    span: Span


Expr = int | Ref | BinOp
# Argument values: bare words and quoted strings are both ``str``; ``true``/``false`` are bools.
Value = int | float | bool | str | tuple["Value", ...] | Ref | BinOp


@dataclass(frozen=True, slots=True)
class Arg:
    key: str | None  # None for a positional argument
    value: Value
    span: Span


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer, or a use of a block (resolved by name when checking): conv64, gn(16), bottleneck(64)."""

    kind: str  # "conv" of conv64
    width: int | Expr | None  # 64 of conv64, 4*f of conv{4*f}
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
    count: Expr
    span: Span
    count_span: Span | None = None


@dataclass(frozen=True, slots=True)
class Residual:
    """``res(body)`` adds the input to the body's output; ``res(body, shortcut=path)`` projects the input first."""

    body: tuple[Node, ...]
    shortcut: tuple[Node, ...] | None
    span: Span


@dataclass(frozen=True, slots=True)
class Concat:
    """``cat(a, b, ...)``: parallel branches from one input, concatenated on the channel axis."""

    branches: tuple[tuple[Node, ...], ...]
    span: Span


Node = Layer | Repeat | Residual | Concat


@dataclass(frozen=True, slots=True)
class InputDecl:
    shape: tuple[int, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Value | None
    span: Span


@dataclass(frozen=True, slots=True)
class BlockDef:
    """``let name(params) = item``, or ``name = item`` without parameters (``norm = bn``)."""

    name: str
    params: tuple[Param, ...]
    body: Node
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Spec:
    body: tuple[Node, ...]
    inputs: tuple[InputDecl, ...] = ()  # as written; check() accepts one, before the first layer
    blocks: tuple[BlockDef, ...] = ()
    filename: str = "<spec>"
    source: str = field(default="", compare=False, repr=False)

    @property
    def input(self) -> InputDecl | None:
        return self.inputs[0] if self.inputs else None

    def to_json(self) -> str:
        return json.dumps(_encode(self), indent=2)

    @staticmethod
    def from_json(text: str) -> Spec:
        spec = _decode(json.loads(text))
        if not isinstance(spec, Spec):
            raise ValueError("JSON does not hold a normdsl Spec")
        return spec


def expand(nodes: tuple[Node, ...]) -> Iterator[Layer]:
    """The layers as written, repetitions unrolled, in order, for specs of literal counts.

    Blocks, residuals and branches are expanded by :func:`normdsl.check`, whose ``Network.layers``
    is the full list; here residual and branch paths are simply listed in order (shortcut first).
    """
    for node in nodes:
        if isinstance(node, Layer):
            yield node
        elif isinstance(node, Repeat):
            if not isinstance(node.count, int):
                raise ValueError(f"repetition count {node.count} needs block parameters; use check()")
            for _ in range(node.count):
                yield from expand(node.body)
        elif isinstance(node, Residual):
            yield from expand(node.shortcut or ())
            yield from expand(node.body)
        else:
            for branch in node.branches:
                yield from expand(branch)


_NODE_TYPES: dict[str, type] = {
    t.__name__: t for t in (Spec, InputDecl, BlockDef, Param, Repeat, Residual, Concat, Layer, Arg, Ref, BinOp, Span)
}


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

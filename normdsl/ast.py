"""The spec as written: frozen dataclasses, each node with its source span.

Repetition stays visible (``Repeat``); :func:`expand` flattens it into the layer list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, assert_never

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


class Word(str):
    """A bare word as written: ``same``, ``relu``, or a block parameter's name (``s=s``), which it
    then stands for. A quoted string (``name="f"``) is a plain ``str`` and stands for itself."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Call:
    """A scaling function in arithmetic: ``w(32)`` (a scaled width), ``d(3)`` (a scaled count),
    ``max(1280, w(1280))``; normdsl.scaling says what each computes."""

    func: str
    args: tuple[Expr, ...]
    span: Span


Expr = int | Ref | BinOp | Call
# Argument values: a bare word is a Word, a quoted string a str; ``true``/``false`` are bools.
Value = int | float | bool | str | tuple["Value", ...] | Ref | BinOp | Call


@dataclass(frozen=True, slots=True)
class Arg:
    """An argument as written: k=3 (key k) or 16 of gn(16) (key None)."""

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
    """``res(body)`` adds the input to the body's output; ``res(body, shortcut=path)`` projects the input first.
    ``gate(body)`` (``gate``) multiplies instead: the input scaled by what the body computes from it."""

    body: tuple[Node, ...]
    shortcut: tuple[Node, ...] | None
    span: Span
    gate: bool = False
    body_first: bool = False  # res(..., first=body): Add()([body, shortcut]), as EfficientNet's add([x, inputs])


@dataclass(frozen=True, slots=True)
class Concat:
    """``cat(a, b, ...)``: parallel branches from one input, concatenated on the channel axis."""

    branches: tuple[tuple[Node, ...], ...]
    span: Span


Node = Layer | Repeat | Residual | Concat


@dataclass(frozen=True, slots=True)
class InputDecl:
    """input(H, W, C): the model's input shape as written."""

    shape: tuple[int, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Param:
    """A block parameter: f, or s=1 with its default."""

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
class ScaleDecl:
    """``scaling(width=1.0, ...)`` (``name`` None: the spec's defaults) or ``scaling b1(depth=1.1, ...)``."""

    name: str | None
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class UseDecl:
    """``use "blocks.nd"`` (a path relative to the spec's file) or ``use std/mbconv`` (``std``: normdsl's own)."""

    path: str
    std: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed spec: the model's items, its input, blocks, uses and scalings, and its text."""

    body: tuple[Node, ...]
    inputs: tuple[InputDecl, ...] = ()  # as written; check() accepts one, before the first layer
    blocks: tuple[BlockDef, ...] = ()
    filename: str = "<spec>"
    source: str = field(default="", compare=False, repr=False)
    uses: tuple[UseDecl, ...] = ()  # other files whose blocks it uses (normdsl.modules reads them)
    scalings: tuple[ScaleDecl, ...] = ()  # scaling defaults and named scales, as written

    @property
    def input(self) -> InputDecl | None:
        return self.inputs[0] if self.inputs else None

    def __repr__(self) -> str:
        shape = f"input {self.input.shape}" if self.input is not None else "no input"
        blocks = f"{len(self.blocks):,} block{'' if len(self.blocks) == 1 else 's'}"
        items = f"{len(self.body):,} item{'' if len(self.body) == 1 else 's'}"
        return f"<Spec {self.filename!r}: {shape}, {blocks}, {items}>"

    def to_json(self) -> str:
        """The spec as JSON (``normdsl.json_schema("spec")`` describes it; its ``schema`` field says which)."""
        return json.dumps({"schema": SCHEMA, **_encode(self)}, indent=2)

    @staticmethod
    def from_json(data: str | bytes | dict[str, Any], *, max_nesting: int = 64) -> Spec:
        """The Spec that :meth:`to_json` wrote, as text or already decoded (a dict). Every field is
        checked against what the grammar can produce (names are identifiers, counts integers,
        operators + - * //, nesting within ``max_nesting``); anything else raises
        :class:`InvalidJSON` (a ValueError) naming where."""
        if isinstance(data, dict):
            return _Decoder(max_nesting).spec(data, "$")
        if not isinstance(data, str | bytes | bytearray):
            raise TypeError(f"Spec.from_json() takes JSON text or a dict, got {type(data).__name__}")
        try:
            decoded = json.loads(data)
        except RecursionError:
            raise InvalidJSON("$", "nested too deeply") from None
        except ValueError as exc:
            raise InvalidJSON("$", f"not JSON ({exc})") from None
        return _Decoder(max_nesting).spec(decoded, "$")


SCHEMA = "urn:normdsl:spec:1"  # the "schema" of to_json's output: normdsl/schemas/spec-1.json


def expand(nodes: Spec | tuple[Node, ...]) -> Iterator[Layer]:
    """The layers as written, repetitions unrolled, in order, for specs of literal counts and no blocks.

    Blocks, residuals and branches are expanded by :func:`normdsl.check`, whose ``Network.layers``
    is the full list; here residual and branch paths are simply listed in order (shortcut first).
    A use of a block (or anything that is not a layer kind) raises ValueError before any layer is
    listed: take the layers of ``check(spec).layers`` instead.
    """
    if isinstance(nodes, Spec):
        blocks, nodes = {b.name for b in nodes.blocks}, nodes.body
    elif isinstance(nodes, tuple | list):
        blocks = set()
    else:
        raise TypeError(f"expand() takes a Spec or its body (a tuple of nodes), got {type(nodes).__name__}")
    for layer in _written(nodes):
        _expandable(layer, blocks)
    return _expand(tuple(nodes))


def _written(nodes: tuple[Node, ...]) -> Iterator[Layer]:
    """Each layer as written, once (repetitions not unrolled)."""
    stack: list[Node] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        match node:
            case Layer():
                yield node
            case Repeat():
                stack.extend(reversed(node.body))
            case Residual():
                stack.extend(reversed((*(node.shortcut or ()), *node.body)))
            case Concat():
                stack.extend(reversed([n for branch in node.branches for n in branch]))
            case _:
                assert_never(node)


def _expandable(layer: Layer, blocks: set[str]) -> None:
    """ValueError if ``layer`` uses a block or names no layer kind: expand() cannot list its layers."""
    from normdsl import plugins  # the registry, with plugins: loaded only for a name it lacks

    where = f"{layer.span.line}:{layer.span.column}"
    name = layer.kind if layer.width is None or not isinstance(layer.width, int) else f"{layer.kind}{layer.width}"
    if layer.kind in blocks or name in blocks:
        use = layer.kind if layer.kind in blocks else name
        raise ValueError(
            f"expand() lists layers as written, but '{use}' at {where} uses a block; "
            "blocks are expanded by check(): use check(spec).layers"
        )
    if plugins.kind(layer.kind) is None:
        raise ValueError(
            f"expand() lists layers as written, but '{layer.kind}' at {where} is no layer kind "
            "(a block of another spec, or a mistake check() would report)"
        )


def _expand(nodes: tuple[Node, ...]) -> Iterator[Layer]:
    for node in nodes:
        match node:
            case Layer():
                yield node
            case Repeat():
                if not isinstance(node.count, int):
                    raise ValueError(f"repetition count {node.count} needs block parameters; use check()")
                for _ in range(node.count):
                    yield from _expand(node.body)
            case Residual():
                yield from _expand(node.shortcut or ())
                yield from _expand(node.body)
            case Concat():
                for branch in node.branches:
                    yield from _expand(branch)
            case _:
                assert_never(node)


_ENCODED = (Spec, InputDecl, BlockDef, Param, Repeat, Residual, Concat, Layer, Arg, Ref, BinOp, Span, UseDecl)
_NODE_TYPES: dict[str, type] = {t.__name__: t for t in (*_ENCODED, Call, ScaleDecl)}


def _encode(obj: Any) -> Any:
    if isinstance(obj, Word):
        return {"type": "Word", "word": str(obj)}
    if type(obj).__name__ in _NODE_TYPES:
        out: dict[str, Any] = {"type": type(obj).__name__}
        out.update({f.name: _encode(getattr(obj, f.name)) for f in fields(obj)})
        return out
    if isinstance(obj, tuple):  # every sequence in the AST is a tuple; JSON has lists
        return [_encode(v) for v in obj]
    return obj


class InvalidJSON(ValueError):
    """JSON that does not hold a Spec as :meth:`Spec.to_json` writes it."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"not a normdsl Spec: {where}: {problem}")


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # the grammar's NAME: block, parameter and kind names
_OPS = ("+", "-", "*", "//")
_FUNCTIONS = ("w", "d", "max", "min")  # normdsl.scaling.FUNCTIONS
_MAX_OFFSET = 16 * 1024 * 1024


class _Decoder:
    """JSON → Spec, checking each field's type and the grammar's rules; ``where`` is a JSON path."""

    def __init__(self, max_nesting: int):
        self.max_nesting = max_nesting

    def obj(
        self, data: object, where: str, kind: str, keys: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("type") != kind:
            raise InvalidJSON(where, f"expected a {kind} object")
        missing = [k for k in keys if k not in data]
        extra = [k for k in data if k not in keys and k not in optional and k != "type"]
        if missing or extra:
            raise InvalidJSON(where, f"{kind} needs the fields {', '.join(keys)}")
        return data

    def items(self, data: object, where: str) -> list[Any]:
        if not isinstance(data, list):
            raise InvalidJSON(where, "expected a list")
        return data

    def name(self, data: object, where: str) -> str:
        if not isinstance(data, str) or not IDENTIFIER.fullmatch(data) or len(data) > 1000:
            raise InvalidJSON(where, f"expected a name (letters, digits, _), got {data!r:.60}")
        return data

    def integer(self, data: object, where: str, lo: int | None = None) -> int:
        if not isinstance(data, int) or isinstance(data, bool) or (lo is not None and data < lo):
            raise InvalidJSON(where, f"expected an integer{'' if lo is None else f' ≥ {lo}'}, got {data!r:.60}")
        return data

    def depth(self, where: str, depth: int) -> int:
        if depth > self.max_nesting:
            raise InvalidJSON(where, f"nested more than {self.max_nesting} deep")
        return depth + 1

    def spec(self, data: object, where: str) -> Spec:
        optional = ("source", "schema", "uses", "scalings")
        d = self.obj(data, where, "Spec", ("body", "inputs", "blocks", "filename"), optional)
        if d.get("schema", SCHEMA) != SCHEMA:
            raise InvalidJSON(f"{where}.schema", f"expected {SCHEMA!r}, got {d['schema']!r:.60}")
        if not isinstance(d["filename"], str) or not isinstance(d.get("source", ""), str):
            raise InvalidJSON(f"{where}.filename", "expected strings for filename and source")
        return Spec(
            body=self.nodes(d["body"], f"{where}.body", 0, empty=True),
            inputs=tuple(self.input(x, f"{where}.inputs[{i}]") for i, x in enumerate(self.items(d["inputs"], where))),
            blocks=tuple(self.block(x, f"{where}.blocks[{i}]") for i, x in enumerate(self.items(d["blocks"], where))),
            filename=d["filename"],
            source=d.get("source", ""),
            uses=tuple(self.use(x, f"{where}.uses[{i}]") for i, x in enumerate(self.items(d.get("uses", []), where))),
            scalings=tuple(
                self.scaling(x, f"{where}.scalings[{i}]")
                for i, x in enumerate(self.items(d.get("scalings", []), where))
            ),
        )

    def scaling(self, data: object, where: str) -> ScaleDecl:
        d = self.obj(data, where, "ScaleDecl", ("name", "args", "span"))
        name = None if d["name"] is None else self.name(d["name"], f"{where}.name")
        args = tuple(self.arg(a, f"{where}.args[{i}]", 0) for i, a in enumerate(self.items(d["args"], where)))
        return ScaleDecl(name, args, self.span(d["span"], f"{where}.span"))

    def use(self, data: object, where: str) -> UseDecl:
        d = self.obj(data, where, "UseDecl", ("path", "std", "span"))
        if not isinstance(d["path"], str) or not isinstance(d["std"], bool):
            raise InvalidJSON(where, "expected a path (a string) and std (true or false)")
        if d["std"] and not IDENTIFIER.fullmatch(d["path"]):
            raise InvalidJSON(f"{where}.path", f"expected a name of normdsl's library, got {d['path']!r:.60}")
        return UseDecl(d["path"], d["std"], self.span(d["span"], f"{where}.span"))

    def span(self, data: object, where: str) -> Span:
        d = self.obj(data, where, "Span", ("line", "column", "end_line", "end_column", "start", "end"))
        line, column, end_line, end_column = (
            self.integer(d[k], f"{where}.{k}", 1) for k in ("line", "column", "end_line", "end_column")
        )
        start, end = self.integer(d["start"], f"{where}.start", 0), self.integer(d["end"], f"{where}.end", 0)
        if end < start:
            raise InvalidJSON(where, "the span ends before it starts")
        if max(line, column, end_line, end_column, end) > _MAX_OFFSET:
            raise InvalidJSON(where, f"positions are at most {_MAX_OFFSET:,} (a spec is at most 10 MiB)")
        return Span(line, column, end_line, end_column, start, end)

    def input(self, data: object, where: str) -> InputDecl:
        d = self.obj(data, where, "InputDecl", ("shape", "span"))
        shape = tuple(self.integer(n, f"{where}.shape[{i}]") for i, n in enumerate(self.items(d["shape"], where)))
        return InputDecl(shape, self.span(d["span"], f"{where}.span"))

    def block(self, data: object, where: str) -> BlockDef:
        d = self.obj(data, where, "BlockDef", ("name", "params", "body", "span", "name_span"))
        params = []
        for i, item in enumerate(self.items(d["params"], f"{where}.params")):
            at = f"{where}.params[{i}]"
            p = self.obj(item, at, "Param", ("name", "default", "span"))
            default = None if p["default"] is None else self.value(p["default"], f"{at}.default", 1)
            params.append(Param(self.name(p["name"], f"{at}.name"), default, self.span(p["span"], f"{at}.span")))
        return BlockDef(
            self.name(d["name"], f"{where}.name"),
            tuple(params),
            self.node(d["body"], f"{where}.body", 1),
            self.span(d["span"], f"{where}.span"),
            self.span(d["name_span"], f"{where}.name_span"),
        )

    def nodes(self, data: object, where: str, depth: int, *, empty: bool = False) -> tuple[Node, ...]:
        """A sequence of nodes: at least one, as the grammar writes them (a spec's body may be empty)."""
        items = self.items(data, where)
        if not items and not empty:
            raise InvalidJSON(where, "expected at least one node")
        return tuple(self.node(x, f"{where}[{i}]", depth) for i, x in enumerate(items))

    def arg(self, data: object, where: str, depth: int) -> Arg:
        a = self.obj(data, where, "Arg", ("key", "value", "span"))
        key = None if a["key"] is None else self.name(a["key"], f"{where}.key")
        return Arg(key, self.value(a["value"], f"{where}.value", depth), self.span(a["span"], f"{where}.span"))

    def node(self, data: object, where: str, depth: int) -> Node:
        depth = self.depth(where, depth)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "Layer":
            d = self.obj(data, where, "Layer", ("kind", "width", "args", "span", "name_span"))
            width = None if d["width"] is None else self.expr(d["width"], f"{where}.width", depth)
            items = self.items(d["args"], f"{where}.args")
            args = [self.arg(item, f"{where}.args[{i}]", depth) for i, item in enumerate(items)]
            span, name_span = self.span(d["span"], f"{where}.span"), self.span(d["name_span"], f"{where}.name_span")
            return Layer(self.name(d["kind"], f"{where}.kind"), width, tuple(args), span, name_span)
        if kind == "Repeat":
            d = self.obj(data, where, "Repeat", ("body", "count", "span", "count_span"))
            count_span = None if d["count_span"] is None else self.span(d["count_span"], f"{where}.count_span")
            body = self.nodes(d["body"], f"{where}.body", depth)
            return Repeat(
                body, self.expr(d["count"], f"{where}.count", depth), self.span(d["span"], f"{where}.span"), count_span
            )
        if kind == "Residual":
            d = self.obj(data, where, "Residual", ("body", "shortcut", "span"), optional=("gate", "body_first"))
            shortcut = None if d["shortcut"] is None else self.nodes(d["shortcut"], f"{where}.shortcut", depth)
            gate, body_first = d.get("gate", False), d.get("body_first", False)
            if not isinstance(gate, bool) or not isinstance(body_first, bool):
                raise InvalidJSON(
                    where, f"expected true or false for gate and body_first, got {gate!r:.30}, {body_first!r:.30}"
                )
            body, span = self.nodes(d["body"], f"{where}.body", depth), self.span(d["span"], f"{where}.span")
            return Residual(body, shortcut, span, gate, body_first)
        if kind == "Concat":
            d = self.obj(data, where, "Concat", ("branches", "span"))
            listed = self.items(d["branches"], where)
            if len(listed) < 2:
                raise InvalidJSON(f"{where}.branches", "cat(...) has at least two branches")
            branches = tuple(self.nodes(b, f"{where}.branches[{i}]", depth) for i, b in enumerate(listed))
            return Concat(branches, self.span(d["span"], f"{where}.span"))
        raise InvalidJSON(where, "expected a Layer, Repeat, Residual or Concat object")

    def expr(self, data: object, where: str, depth: int) -> Expr:
        depth = self.depth(where, depth)
        if isinstance(data, dict) and data.get("type") == "Ref":
            d = self.obj(data, where, "Ref", ("name", "span"))
            return Ref(self.name(d["name"], f"{where}.name"), self.span(d["span"], f"{where}.span"))
        if isinstance(data, dict) and data.get("type") == "BinOp":
            d = self.obj(data, where, "BinOp", ("op", "left", "right", "span"))
            if d["op"] not in _OPS:
                raise InvalidJSON(f"{where}.op", f"expected one of {', '.join(_OPS)}")
            left, right = self.expr(d["left"], f"{where}.left", depth), self.expr(d["right"], f"{where}.right", depth)
            return BinOp(d["op"], left, right, self.span(d["span"], f"{where}.span"))
        if isinstance(data, dict) and data.get("type") == "Call":
            d = self.obj(data, where, "Call", ("func", "args", "span"))
            if d["func"] not in _FUNCTIONS:
                raise InvalidJSON(f"{where}.func", f"expected one of {', '.join(_FUNCTIONS)}")
            items = self.items(d["args"], where)
            args = tuple(self.expr(a, f"{where}.args[{i}]", depth) for i, a in enumerate(items))
            return Call(d["func"], args, self.span(d["span"], f"{where}.span"))
        return self.integer(data, where)

    def value(self, data: object, where: str, depth: int) -> Value:
        if isinstance(data, bool | int | float | str) and not (isinstance(data, float) and data != data):
            return data
        if isinstance(data, dict) and data.get("type") == "Word":
            return Word(self.name(self.obj(data, where, "Word", ("word",))["word"], f"{where}.word"))
        if isinstance(data, list):
            depth = self.depth(where, depth)
            return tuple(self.value(v, f"{where}[{i}]", depth) for i, v in enumerate(data))
        return self.expr(data, where, depth)

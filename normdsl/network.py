"""The checked model: what the checker produces and every emitter reads (summary, source, Keras).
A data module: it imports nothing of normdsl's stages."""

from __future__ import annotations

import math
from dataclasses import dataclass

from normdsl.ast import BlockDef, Spec
from normdsl.diagnostics import Diagnostic, Span
from normdsl.layers import KINDS, LayerKind, Param, Shape, pair
from normdsl.scaling import NO_SCALING, Scaling


@dataclass(frozen=True, slots=True)
class NetLayer:
    """One Keras layer of the checked network: what it is, how it is called, and its static figures."""

    kind: str  # the spec's layer kind (gn), or res / cat for the Add / Concatenate joining paths
    keras_class: str  # GroupNormalization
    module: str | None  # where keras_class lives when it is not keras.layers (a plugin's layer)
    args: tuple[object, ...]  # positional arguments of the Keras call
    kwargs: tuple[tuple[str, object], ...]  # keyword arguments of the Keras call, in order
    inputs: tuple[int, ...]  # the layers it is applied to, by index in Network.layers; -1: the model input
    input_shape: Shape  # without the batch dimension (the first input's, for Add and Concatenate)
    output_shape: Shape
    trainable: int
    non_trainable: int
    macs: int  # multiply-accumulates per sample
    span: Span
    text: str  # the layer as written, on one line: gn(16)
    blocks: tuple[str, ...] = ()  # the blocks it sits in, outermost first
    uses: tuple[Span, ...] = ()  # where each of those blocks is used (in the text that uses it)
    written: Span | None = None  # where it is written when that is not the spec (a used file, --set's text)

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activations(self) -> int:
        """Elements of this layer's output per sample."""
        return math.prod(self.output_shape)

    @property
    def call(self) -> str:
        """The layer as a spec call with its values resolved, only arguments that differ from the
        defaults: ``conv256(k=1)`` for ``conv{4*f}(k=1, s=s)`` used with f=64, s=1 (``text`` for a
        merge, or a kind the registry does not know)."""
        return spelled(self)

    def __repr__(self) -> str:
        where = f"{self.span.line}:{self.span.column}"
        return f"<NetLayer {self.call} ({self.keras_class}) at {where}: {_shape(self.output_shape)}, {self.params:,} params>"


@dataclass(frozen=True, slots=True)
class Network:
    """The checked model: the templates' whole input, and what the direct builder builds."""

    name: str  # a Python identifier, from the spec file's name
    filename: str
    source: str
    input_shape: Shape
    layers: tuple[NetLayer, ...]  # in creation order: every layer after the layers it is applied to
    warnings: tuple[Diagnostic, ...] = ()
    spec: Spec | None = None  # the spec as written (blocks, repetitions), with the norm in use
    output: int = -1  # the index of the layer whose output is the model's (-1: the input itself)
    replaced: tuple[tuple[str, str], ...] = ()  # blocks replaced from outside the spec: (("norm", "gn(32)"),)
    composites: tuple[BlockDef, ...] = ()  # the composite kinds the model uses (se), as blocks of their own
    homes: tuple[tuple[str, str, str], ...] = ()  # blocks from used files: (block, file name, the file's text)
    scaling: Scaling = NO_SCALING  # what w() and d() computed

    @property
    def output_shape(self) -> Shape:
        return self.layers[self.output].output_shape if self.output >= 0 else self.input_shape

    @property
    def trainable(self) -> int:
        return sum(layer.trainable for layer in self.layers)

    @property
    def non_trainable(self) -> int:
        return sum(layer.non_trainable for layer in self.layers)

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def __repr__(self) -> str:
        shapes = f"{_shape(self.input_shape)} → {_shape(self.output_shape)}"
        return f"<Network {self.name!r}: {len(self.layers):,} layers, {shapes}, {self.params:,} params>"

    def _repr_markdown_(self) -> str:
        """The summary table, for notebooks (summary.py prints it; imported here on first use), blocks
        collapsed as far as needed to fit about 40 rows (``summary.compact_depth``)."""
        from normdsl.summary import compact_depth, markdown

        return markdown(self, depth=compact_depth(self))

    def _repr_html_(self) -> str:
        """The summary table as HTML, for notebooks, as compact as the Markdown."""
        from normdsl.summary import compact_depth, html

        return html(self, depth=compact_depth(self))


NORM = "norm"  # the normalization placeholder block: --norm X is --set norm=X


def flag(name: str) -> str:
    """How the replacement of block ``name`` is spelled on the command line (messages, generated comments)."""
    return "--norm" if name == NORM else f"--set {name}"


def _shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def spelled(layer: NetLayer) -> str:
    """How the layer's resolved call is written in a spec: the width glued to the name, then the
    arguments that differ from Keras's defaults by their spec names (a required one positionally:
    ``gn(32)``), values as the grammar writes them. Read back from the Keras call through the registry."""
    kind = KINDS.get(layer.kind)
    if kind is None:
        return layer.text
    if kind.with_args is not None and layer.keras_class == kind.with_args.keras_class:
        kind = kind.with_args
    found = _values(kind, layer)
    if found is None or layer.keras_class != kind.keras_class:
        return layer.text
    width, values = found
    parts = []
    for p in sorted(kind.params, key=lambda p: not (p.required and p.key == kind.positional)):
        if p.keras not in values or _is_default(p, values[p.keras]):
            continue
        value = _value(p, values[p.keras])
        parts.append(value if p.required and p.key == kind.positional else f"{p.key}={value}")
    return f"{kind.name}{'' if width is None else width}" + (f"({', '.join(parts)})" if parts else "")


def _values(kind: LayerKind, layer: NetLayer) -> tuple[object, dict[str, object]] | None:
    """The width and the Keras arguments by keyword of a call keras_call made (None if it cannot have)."""
    args = list(layer.args)
    width = args.pop(0) if kind.width is not None and args else None
    args = args[sum(key is None for key, _ in kind.fixed) :]
    positional = [p for p in kind.params if p.positional]
    if len(args) != len(positional):  # a positional parameter left out: the ones always written are there
        positional = [p for p in positional if p.always]
        if len(args) != len(positional):
            return None
    values: dict[str, object] = {p.keras: value for p, value in zip(positional, args, strict=True)}
    params = {p.keras for p in kind.params}
    values.update((key, value) for key, value in layer.kwargs if key in params)
    return width, values


def _is_default(p: Param, value: object) -> bool:
    if p.required:
        return False
    if p.type == "pair" and p.default is not None and value is not None:
        return pair(value) == pair(p.default)
    return type(value) is type(p.default) and value == p.default


def _value(p: Param, value: object) -> str:
    """A value as the grammar writes it: true, 3, 1e-05, same, "stem", (1, 7)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "(" + ", ".join(_value(p, v) for v in value) + ")"
    if isinstance(value, str) and p.type not in ("choice", "activation"):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return repr(value) if isinstance(value, float) else str(value)

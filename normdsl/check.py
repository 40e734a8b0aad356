"""Spec → Network: expansion, argument validation, shape and parameter inference, warnings.

Every figure equals what Keras computes for the same model; every problem found becomes a
diagnostic, and all of them are raised together.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from normdsl.ast import Arg, Layer, Node, Spec, expand
from normdsl.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from normdsl.layers import KINDS, LayerKind, Problem, Shape, coerce, pair
from normdsl.parser import parse

DEFAULT_INPUT: Shape = (224, 224, 3)  # the seed notebook's shape


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource bounds, checked before anything is expanded."""

    max_layers: int = 100_000  # layers after expanding every repetition
    max_width: int = 1_000_000  # filters / units of one layer
    warn_params: int = 1_000_000_000  # a warning above this many parameters


@dataclass(frozen=True, slots=True)
class NetLayer:
    """One Keras layer of the checked network: what it is, how it is called, and its static figures."""

    kind: str  # the spec's layer kind: gn
    keras_class: str  # GroupNormalization
    args: tuple[object, ...]  # positional arguments of the Keras call
    kwargs: tuple[tuple[str, object], ...]  # keyword arguments of the Keras call, in order
    input_shape: Shape  # without the batch dimension
    output_shape: Shape
    trainable: int
    non_trainable: int
    macs: int  # multiply-accumulates per sample
    span: Span
    text: str  # the layer as written, on one line: gn(16)

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


@dataclass(frozen=True, slots=True)
class Network:
    """The checked model: the templates' whole input, and what the direct builder builds."""

    name: str  # a Python identifier, from the spec file's name
    filename: str
    source: str
    input_shape: Shape
    layers: tuple[NetLayer, ...]
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape if self.layers else self.input_shape

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


def check(spec: Spec | str, *, input_shape: Shape | None = None, limits: Limits = Limits()) -> Network:
    """Check a spec (or spec text) and infer every layer's figures; raise SpecError with all problems."""
    if isinstance(spec, str):
        spec = parse(spec)
    return _Checker(spec, limits).run(input_shape)


@dataclass(frozen=True, slots=True)
class _Call:
    """A layer's validated Keras call."""

    kind: LayerKind
    config: dict[str, object]  # every Keras argument, defaults filled in: what the rules read
    args: tuple[object, ...]
    kwargs: tuple[tuple[str, object], ...]


class _Checker:
    def __init__(self, spec: Spec, limits: Limits):
        self.spec, self.limits = spec, limits
        self.diagnostics: list[Diagnostic] = []

    def error(self, message: str, span: Span, hint: str | None = None) -> None:
        diagnostic = Diagnostic("error", message, span, hint)
        if diagnostic not in self.diagnostics:  # a repeated layer reports its problem once
            self.diagnostics.append(diagnostic)

    def warn(self, message: str, span: Span, hint: str | None = None) -> None:
        diagnostic = Diagnostic("warning", message, span, hint)
        if diagnostic not in self.diagnostics:
            self.diagnostics.append(diagnostic)

    def fail(self) -> SpecError:
        ordered = sorted(self.diagnostics, key=lambda d: (d.span.start, d.severity))
        return SpecError(ordered, self.spec.source, self.spec.filename)

    def run(self, input_shape: Shape | None) -> Network:
        shape = self.input(input_shape)
        if self.count(self.spec.body) > self.limits.max_layers:
            self.error(
                f"the spec expands to more than {self.limits.max_layers:,} layers",
                _whole(self.spec),
                "lower the repetition counts",
            )
        if any(d.severity == "error" for d in self.diagnostics):
            raise self.fail()
        layers = list(expand(self.spec.body))
        calls = {id(layer): self.resolve(layer) for layer in layers}
        net: list[NetLayer] = []
        for layer in layers:
            call = calls[id(layer)]
            # after a layer that could not be resolved, shapes are unknown: only arguments are checked
            shape = None if call is None or shape is None else self.infer(layer, call, shape, net)
        self.check_names(net)
        if not any(d.severity == "error" for d in self.diagnostics):
            self.warnings(net)
        if any(d.severity == "error" for d in self.diagnostics):
            raise self.fail()
        assert shape is not None
        return Network(
            name=_model_name(self.spec.filename),
            filename=self.spec.filename,
            source=self.spec.source,
            input_shape=self.input_shape,
            layers=tuple(net),
            warnings=tuple(self.diagnostics),
        )

    def input(self, override: Shape | None) -> Shape | None:
        decl = self.spec.input
        shape = tuple(override) if override is not None else decl.shape if decl else DEFAULT_INPUT
        if not shape or any(not isinstance(n, int) or n < 1 for n in shape):
            if override is not None or decl is None:
                raise ValueError(f"input shape must be one or more positive integers, got {shape}")
            self.error(
                f"input dimensions must be positive integers, got {shape}",
                decl.span,
                "e.g. input(224, 224, 3) or input(784)",
            )
            return None
        self.input_shape: Shape = shape
        return shape

    def count(self, nodes: tuple[Node, ...]) -> int:
        """Expanded layer count, without expanding; checks repetition counts on the way."""
        total = 0
        for node in nodes:
            if isinstance(node, Layer):
                total += 1
                continue
            if node.count < 1:
                self.error(f"a repetition count must be at least 1, got {node.count}", node.count_span or node.span)
            total += max(node.count, 0) * self.count(node.body)
            if total > self.limits.max_layers:
                return total
        return total

    def resolve(self, layer: Layer) -> _Call | None:
        """Validate a layer's name, width and arguments into a Keras call (or report and return None)."""
        kind = KINDS.get(layer.kind)
        if kind is None:
            if layer.kind == "input":
                self.error("input(...) may only be the first statement", layer.span, "move it to the top of the spec")
            else:
                self.error(
                    f"unknown layer '{layer.kind}'",
                    layer.name_span,
                    did_you_mean(layer.kind, KINDS) or "layers: " + ", ".join(KINDS),
                )
            return None
        ok = True
        values: dict[str, object] = {}  # by Keras keyword
        positional = layer.positional
        if positional and kind.positional is None:
            self.error(f"{kind.name} takes no positional arguments", positional[0].span, _takes(kind))
            ok = False
        elif len(positional) > 1:
            self.error(
                f"{kind.name} takes one positional argument ({kind.positional}), got {len(positional)}",
                positional[1].span,
                _takes(kind),
            )
            ok = False
        named: list[tuple[str, Arg]] = [(kind.positional, positional[0])] if positional and kind.positional else []
        named += [(arg.key, arg) for arg in layer.keywords if arg.key is not None]
        seen: set[str] = set()
        for key, arg in named:
            param = kind.params_by_key.get(key)
            if param is None:
                self.error(
                    f"{kind.name} has no argument '{key}'",
                    arg.span,
                    did_you_mean(key, kind.params_by_key) or _takes(kind),
                )
                ok = False
            elif key in seen:
                self.error(f"argument '{key}' is given twice", arg.span)
                ok = False
            else:
                seen.add(key)
                try:
                    values[param.keras] = coerce(param, arg.value)
                except Problem as problem:
                    self.error(f"{kind.name}: {problem.message}", arg.span, problem.hint)
                    ok = False
        width = self.width(layer, kind)
        for param in kind.params:
            if param.required and param.key not in seen and width is not False:
                self.error(
                    f"{kind.name} needs its {param.keras} argument", layer.span, f"e.g. {kind.name}({_example(param)})"
                )
                ok = False
        if not ok or width is False:
            return None
        return _call(kind, values, width)

    def width(self, layer: Layer, kind: LayerKind) -> int | bool | None:
        """The N of conv<N>: its value, None when the kind has none, False after reporting a problem."""
        if kind.width is None:
            if layer.width is None:
                return None
            how = f"write {kind.name}({layer.width})" if kind.positional else f"write {kind.name}"
            self.error(f"{kind.name} takes no number after its name", layer.name_span, how)
            return False
        if layer.width is None:
            self.error(f"{kind.name} needs its number of {kind.width}", layer.name_span, f"e.g. {kind.name}64")
            return False
        if not 1 <= layer.width <= self.limits.max_width:
            self.error(
                f"{kind.name}: {kind.width} must be from 1 to {self.limits.max_width:,}, got {layer.width}",
                layer.name_span,
            )
            return False
        return layer.width

    def infer(self, layer: Layer, call: _Call, shape: Shape, net: list[NetLayer]) -> Shape | None:
        try:
            figures = call.kind.rule(shape, call.config)
        except Problem as problem:
            self.error(f"{_text(self.spec.source, layer.span)}: {problem.message}", layer.span, problem.hint)
            return None
        for found in figures.problems:
            self.error(f"{_text(self.spec.source, layer.span)}: {found.message}", layer.span, found.hint)
        net.append(
            NetLayer(
                kind=call.kind.name,
                keras_class=call.kind.keras_class,
                args=call.args,
                kwargs=call.kwargs,
                input_shape=shape,
                output_shape=figures.shape,
                trainable=figures.trainable,
                non_trainable=figures.non_trainable,
                macs=figures.macs,
                span=layer.span,
                text=_text(self.spec.source, layer.span),
            )
        )
        return figures.shape

    def check_names(self, net: list[NetLayer]) -> None:
        spans: dict[str, list[Span]] = {}
        for layer in net:
            name = dict(layer.kwargs).get("name")
            if isinstance(name, str):
                spans.setdefault(name, []).append(layer.span)
        for name, where in spans.items():
            if len(where) > 1:
                self.error(
                    f"layer name {name!r} is used {len(where)} times; Keras needs unique names",
                    where[0],
                    "drop name= inside repetitions, or give each layer its own name",
                )

    def warnings(self, net: list[NetLayer]) -> None:
        for before, layer in itertools.pairwise(net):
            if KINDS[before.kind].is_norm and KINDS[layer.kind].is_norm:
                self.warn(
                    f"{layer.text} directly follows another normalization ({before.text})",
                    layer.span,
                    "one normalization is usually enough; remove one of them",
                )
        for layer in net:
            if layer.kind == "dense" and len(layer.input_shape) >= 3:
                self.warn(
                    f"{layer.text} receives a rank-{len(layer.input_shape)} tensor {layer.input_shape} and acts on its last axis only",
                    layer.span,
                    "put flatten or gap before it for a classifier head",
                )
        total = sum(layer.params for layer in net)
        if total > self.limits.warn_params:
            self.warn(
                f"the model has {total:,} parameters",
                _whole(self.spec),
                f"more than the {self.limits.warn_params:,} expected of a spec",
            )


def _call(kind: LayerKind, values: dict[str, object], width: int | None) -> _Call:
    config: dict[str, object] = {p.keras: values.get(p.keras, p.default) for p in kind.params}
    args: list[object] = []
    always: list[tuple[str, object]] = []
    optional: list[tuple[str, object]] = []
    if kind.width is not None:
        config[kind.width] = width
        args.append(width)
    for key, value in kind.fixed:
        if key is None:
            args.append(value)
        else:
            config[key] = value
    for p in kind.params:
        value = config[p.keras]
        if p.always or (p.keras in values and not _same(p.type, value, p.default)):
            if p.positional:
                args.append(value)
            else:
                (always if p.always else optional).append((p.keras, value))
    fixed = [(k, v) for k, v in kind.fixed if k is not None]
    return _Call(kind, config, tuple(args), tuple(always + fixed + optional))


def _same(value_type: str, value: object, default: object) -> bool:
    if value_type == "pair" and default is not None:
        return pair(value) == pair(default)
    return type(value) is type(default) and value == default


def _takes(kind: LayerKind) -> str:
    keys = ", ".join(p.key for p in kind.params)
    return f"{kind.name} takes: {keys}" if keys else f"{kind.name} takes no arguments"


def _example(param: object) -> str:
    return {"groups": "16", "rate": "0.5"}.get(getattr(param, "keras", ""), "...")


def _text(source: str, span: Span) -> str:
    """The layer as written, whitespace collapsed to single spaces (safe on one comment line)."""
    return " ".join(source[span.start : span.end].split())


def _whole(spec: Spec) -> Span:
    return Span.at(spec.source, 0, len(spec.source.split("\n", 1)[0]))


def _model_name(filename: str) -> str:
    stem = re.sub(r"\W", "_", Path(filename).stem, flags=re.ASCII).strip("_")
    return stem if stem and not stem[0].isdigit() and filename != "<spec>" else "model"

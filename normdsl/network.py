"""The checked model: what the checker produces and every emitter reads (summary, source, Keras).
A data module: it imports nothing of normdsl's stages."""

from __future__ import annotations

import math
from dataclasses import dataclass

from normdsl.ast import BlockDef, Spec
from normdsl.diagnostics import Diagnostic, Span
from normdsl.layers import Shape


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
    layers: tuple[NetLayer, ...]  # in creation order: every layer after the layers it is applied to
    warnings: tuple[Diagnostic, ...] = ()
    spec: Spec | None = None  # the spec as written (blocks, repetitions), with the norm in use
    output: int = -1  # the index of the layer whose output is the model's (-1: the input itself)
    replaced: tuple[tuple[str, str], ...] = ()  # blocks replaced from outside the spec: (("norm", "gn(32)"),)
    composites: tuple[BlockDef, ...] = ()  # the composite kinds the model uses (se), as blocks of their own

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


NORM = "norm"  # the normalization placeholder block: --norm X is --set norm=X


def flag(name: str) -> str:
    """How the replacement of block ``name`` is spelled on the command line (messages, generated comments)."""
    return "--norm" if name == NORM else f"--set {name}"

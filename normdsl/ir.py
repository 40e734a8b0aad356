"""The generated program's structure, independent of any framework: a function per spec block,
loops for repetitions, variables for residual and branch paths, as a small typed IR of operations
and data flow (never Python text). program.py builds it; a target (target_keras.py) renders it.

Variables and function names are Python names from program.Namespace; a value is a validated
spec value or a symbolic block-parameter expression (``layers.Code``: ``4 * f``); a layer is the
resolver's call, whose ``config`` holds every parameter's meaning for any target.
"""

from __future__ import annotations

from dataclasses import dataclass

from normdsl.ast import Value
from normdsl.layers import KerasCall, Merge


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an operation comes from: ``groupnorm.nd:4:23`` (or ``--norm``) and ``gn(16)``."""

    place: str
    text: str


@dataclass(frozen=True, slots=True)
class Apply:
    """``dst = layer(src)``."""

    dst: str
    call: KerasCall
    src: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class UseBlock:
    """``dst = block(src, args...)``: a spec block's function, with positional and keyword arguments."""

    dst: str
    function: str
    src: str
    args: tuple[tuple[str | None, Value], ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Join:
    """``dst = merge(srcs)``: the Add of res(...) (shortcut first) or the Concatenate of cat(...)."""

    dst: str
    merge: Merge
    srcs: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Copy:
    """``dst = src``."""

    dst: str
    src: str


@dataclass(frozen=True, slots=True)
class Loop:
    """``body`` on the loop variable ``count`` times (a literal, or a block-parameter expression)."""

    count: Value
    body: tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class Nested:
    """``dst = name(src)`` where ``name`` is a local function of ``x`` running ``body``: loops nested
    deeper than a function may hold continue in it."""

    dst: str
    name: str
    src: str
    body: tuple[Op, ...]


Op = Apply | UseBlock | Join | Copy | Loop | Nested


@dataclass(frozen=True, slots=True)
class Block:
    """A spec block as a function of ``x`` and its parameters (name, default or None); it returns x."""

    name: str
    params: tuple[tuple[str, Value | None], ...]
    origin: Origin  # for a block replaced from outside the spec: place --norm, text the layers given
    replaced: bool
    body: tuple[Op, ...]
    channels: str | None = None  # a composite kind's parameter bound to x's channels, not passed by callers


@dataclass(frozen=True, slots=True)
class Program:
    """The generated module: block functions, the model's operations and its output."""

    blocks: tuple[Block, ...]  # the blocks the model uses, in the order they are defined
    body: tuple[Op, ...]  # the model's operations, from inputs to output
    output: str  # the variable holding the model's output

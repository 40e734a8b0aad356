"""The Keras target: how each IR operation is written as Keras source (the ``TRANSFORMS`` table, one
renderer per operation type, as sqlglot's generators do), and how a resolved call becomes a Keras
layer, in source (:func:`layer_source`) and directly (:func:`make_layer`), both from the same
``KerasCall`` so that the generated module and the direct build cannot drift apart.

A new target is a module like this one: its own table over the same IR.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from normdsl import ir
from normdsl.layers import MERGES, KerasCall, Merge, keras_call
from normdsl.pysource import (
    LINE_LENGTH,
    Function,
    PyCode,
    SafeText,
    SourceProgram,
    Statement,
    comment,
    formatted,
    literal,
    safe_text,
    width,
)

_RETURN = Statement(PyCode("return x"))
_BLANK = Statement(PyCode(""))


Args = tuple[object, ...]
Kwargs = tuple[tuple[str, object], ...]


def layer_source(keras_class: str, module: str | None, args: Args, kwargs: Kwargs) -> str:
    """``layers.Conv2D(32, 3, padding="valid")``: a layer, as source (a plugin's class by its imported name)."""
    written = [literal(a) for a in args] + [f"{key}={literal(value)}" for key, value in kwargs]
    return f"{'' if module else 'layers.'}{keras_class}({', '.join(written)})"


def make_layer(
    keras: Any, keras_class: str, module: str | None, args: Args, kwargs: Kwargs, name: str | None = None
) -> Any:
    """The same layer, made directly with ``keras`` (the direct build): named as the spec names it
    (``kwargs``), else ``name``, else (None) as Keras names it."""
    home = importlib.import_module(module) if module else keras.layers
    return getattr(home, keras_class)(*args, **(({} if name is None else {"name": name}) | dict(kwargs)))


def imports(classes: Iterable[tuple[str | None, str]]) -> tuple[PyCode, ...]:
    """The import lines the plugin layers among (module, class) need: ``from mypackage.layers import Scale``."""
    found = sorted({(module, name) for module, name in classes if module})
    return tuple(PyCode(f"from {module} import {name}") for module, name in found)


def _source(call: KerasCall) -> str:
    return layer_source(call.kind.keras_class, call.kind.module, call.args, call.kwargs)


def merge_call(merge: Merge) -> KerasCall:
    return keras_call(MERGES[merge], {}, None)


def render(program: ir.Program) -> SourceProgram:
    """The program as the templates print it: build_model's statements and one function per block."""
    functions = tuple(_function(block) for block in program.blocks)
    return SourceProgram(functions, _ops(program.body, 1), PyCode(program.output))


def _function(block: ir.Block) -> Function:
    params = ["x"] + [name if default is None else f"{name}={literal(default)}" for name, default in block.params]
    if block.replaced:
        note = safe_text(f"{block.origin.place} {block.origin.text}")
    else:
        note = comment(block.origin.place, block.origin.text)
    channels = (Statement(PyCode(f"{block.channels} = x.shape[-1]")),) if block.channels else ()
    # (black would split a def longer than a line: rare, and not done here)
    body = (*channels, *_ops(block.body, 1), _RETURN)
    return Function(PyCode(block.name), PyCode(", ".join(params)), note, body)


def _ops(ops: tuple[ir.Op, ...], indent: int) -> tuple[Statement, ...]:
    out: list[Statement] = []
    for op in ops:
        out += TRANSFORMS[type(op)](op, indent)
    return tuple(out)


def _statement(code: str, origin: ir.Origin | None, indent: int) -> Statement:
    """A statement at ``indent`` levels, its origin as a comment at the end of the line when it fits."""
    text = formatted(code, indent)
    if origin is None:
        return Statement(text)
    note = comment(origin.place, origin.text)
    trailing = "\n" not in text and 4 * indent + width(code) + 4 + width(note) <= LINE_LENGTH
    return Statement(text, note, trailing)


def _apply(op: ir.Apply, indent: int) -> list[Statement]:
    if op.call.kind.operator is not None:  # tensor arithmetic: x + 3.0
        code = f"{op.dst} = {op.src} {op.call.kind.operator} {literal(op.call.args[0])}"
        return [_statement(code, op.origin, indent)]
    return [_statement(f"{op.dst} = {_source(op.call)}({op.src})", op.origin, indent)]


def _use_block(op: ir.UseBlock, indent: int) -> list[Statement]:
    args = [op.src] + [literal(value) if key is None else f"{key}={literal(value)}" for key, value in op.args]
    return [_statement(f"{op.dst} = {op.function}({', '.join(args)})", op.origin, indent)]


def _join(op: ir.Join, indent: int) -> list[Statement]:
    return [_statement(f"{op.dst} = {_source(merge_call(op.merge))}([{', '.join(op.srcs)}])", op.origin, indent)]


def _copy(op: ir.Copy, indent: int) -> list[Statement]:
    return [Statement(PyCode(f"{op.dst} = {op.src}"))]


def _loop(op: ir.Loop, indent: int) -> list[Statement]:
    head = formatted(f"for _ in range({literal(op.count)}):", indent)
    return [Statement(head, body=_ops(op.body, indent + 1))]


def _nested(op: ir.Nested, indent: int) -> list[Statement]:
    define = Statement(PyCode(f"def {op.name}(x):"), body=(*_ops(op.body, indent + 1), _RETURN))
    use = Statement(formatted(f"{op.dst} = {op.name}({op.src})", indent))
    return [_BLANK, define, _BLANK, use]  # black's blank lines around a nested def


# One renderer per operation type; a missing one is a KeyError at once, and mypy sees the table's type.
TRANSFORMS: dict[type, Callable[[Any, int], list[Statement]]] = {
    ir.Apply: _apply,
    ir.UseBlock: _use_block,
    ir.Join: _join,
    ir.Copy: _copy,
    ir.Loop: _loop,
    ir.Nested: _nested,
}

__all__ = ["TRANSFORMS", "SafeText", "layer_source", "make_layer", "render"]

"""Network → the generated module's structure: a Python function per spec block, loops for
repetitions, variables for residual and branch paths. Every piece of code here is made of
identifiers from the spec (checked, and renamed away from Python's keywords), ``repr()`` of
validated values, and a fixed vocabulary."""

from __future__ import annotations

import builtins
import keyword
from dataclasses import dataclass
from pathlib import Path

from normdsl.ast import Arg, BinOp, BlockDef, Concat, Expr, Layer, Node, Ref, Repeat, Residual, Value
from normdsl.check import Network
from normdsl.diagnostics import one_line
from normdsl.graph import block_used
from normdsl.layers import KINDS, MERGES, Code, KerasCall, coerce, keras_call

LINE_LENGTH = 88  # black's default, which the output is formatted with
_RESERVED = {"x", "inputs", "layers", "keras", "build_model", "range", "input_shape", "tf"}


@dataclass(frozen=True, slots=True)
class Statement:
    code: str  # one line of Python: x = layers.Conv2D(32, 3, padding="valid")(x), or for _ in range(3):
    comment: str = ""  # where it comes from in the spec: groupnorm.nd:4:23  gn(16)
    trailing: bool = False  # the comment ends the line (it fits black's 88 columns); else it stands above
    body: tuple[Statement, ...] = ()  # the loop body, for a for statement


@dataclass(frozen=True, slots=True)
class Function:
    """A spec block as a Python function: def bottleneck(x, f, s=1): ... return x."""

    name: str
    signature: str  # x, f, s=1
    comment: str
    body: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Program:
    functions: tuple[Function, ...]  # the blocks the model uses, in the order they are defined
    body: tuple[Statement, ...]  # build_model's statements, from inputs to x
    output: str  # the variable holding the model's output


def py_name(name: str) -> str:
    """A spec identifier as a Python name that is no keyword, builtin or name the generated code uses."""
    taken = keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _RESERVED or hasattr(builtins, name)
    return name + "_" if taken else name


def program(network: Network) -> Program:
    assert network.spec is not None
    return _Builder(network).build()


class _Builder:
    def __init__(self, network: Network):
        assert network.spec is not None
        self.network, self.spec = network, network.spec
        self.blocks = {b.name: b for b in self.spec.blocks}
        self.replaced = dict(network.replaced)
        self.file = one_line(Path(network.filename).name)
        self.used: set[str] = set()

    def build(self) -> Program:
        body = self.seq(self.spec.body, "inputs", "x", frozenset(), 1, None)
        rendered: dict[str, Function] = {}
        while todo := [name for name in self.blocks if name in self.used and name not in rendered]:
            for name in todo:  # rendering a block finds the blocks it uses
                rendered[name] = self.function(self.blocks[name])
        functions = tuple(rendered[name] for name in self.blocks if name in rendered)
        return Program(functions, body, "x" if self.spec.body else "inputs")

    def function(self, block: BlockDef) -> Function:
        params = frozenset(p.name for p in block.params)
        signature = ", ".join(
            [
                "x",
                *(
                    py_name(p.name) + ("" if p.default is None else f"={self.value(p.default, frozenset())!r}")
                    for p in block.params
                ),
            ]
        )
        body = self.seq((block.body,), "x", "x", params, 1, block.name if block.name in self.replaced else None)
        if block.name in self.replaced:
            comment = f"--{block.name} {one_line(self.replaced[block.name])}"
        else:
            head = f"{block.name}({', '.join(p.name for p in block.params)})" if block.params else block.name
            comment = f"{self.file}:{block.span.line}:{block.span.column}  block {head}"
        return Function(py_name(block.name), signature, comment, (*body, Statement("return x")))

    # ---- statements --------------------------------------------------------------------------

    def seq(
        self, nodes: tuple[Node, ...], src: str, dst: str, params: frozenset[str], depth: int, external: str | None
    ) -> tuple[Statement, ...]:
        """Statements applying ``nodes`` to variable ``src``, leaving the result in ``dst``."""
        out: list[Statement] = []
        for node in nodes:
            out += self.node(node, src, dst, params, depth, external)
            src = dst
        if src != dst:
            out.append(Statement(f"{dst} = {src}"))
        return tuple(out)

    def node(
        self, node: Node, src: str, dst: str, params: frozenset[str], depth: int, external: str | None
    ) -> list[Statement]:
        if isinstance(node, Layer):
            return [self.layer(node, src, dst, params, depth, external)]
        if isinstance(node, Repeat):
            if node.count == 1:
                return list(self.seq(node.body, src, dst, params, depth, external))
            first = [] if src == dst else [Statement(f"{dst} = {src}")]
            loop = self.seq(node.body, dst, dst, params, depth + 1, external)
            return [*first, Statement(f"for _ in range({self.expr(node.count, params)}):", body=loop)]
        suffix = "" if depth == 1 else f"_{depth}"
        if isinstance(node, Residual):
            shortcut, body = f"shortcut{suffix}", f"y{suffix}"
            out = list(self.seq(node.shortcut, src, shortcut, params, depth + 1, external)) if node.shortcut else []
            if not node.shortcut:
                shortcut = src
            out += self.seq(node.body, src, body, params, depth + 1, external)
            call = keras_call(MERGES["res"], {}, None)
            return [
                *out,
                self.statement(f"{dst} = {_call_code(call)}([{shortcut}, {body}])", "res", node, depth, external),
            ]
        assert isinstance(node, Concat)
        names = [f"branch{suffix}_{i}" for i in range(1, len(node.branches) + 1)]
        out = []
        for name, branch in zip(names, node.branches, strict=True):
            out += self.seq(branch, src, name, params, depth + 1, external)
        call = keras_call(MERGES["cat"], {}, None)
        return [*out, self.statement(f"{dst} = {_call_code(call)}([{', '.join(names)}])", "cat", node, depth, external)]

    def layer(
        self, layer: Layer, src: str, dst: str, params: frozenset[str], depth: int, external: str | None
    ) -> Statement:
        block = block_used(self.blocks, layer)
        if block is not None:
            self.used.add(block.name)
            args = [src] + [
                self.code(a, params) if a.key is None else f"{py_name(a.key)}={self.code(a, params)}"
                for a in layer.args
            ]
            return self.statement(f"{dst} = {py_name(block.name)}({', '.join(args)})", None, layer, depth, external)
        kind = KINDS[layer.kind]
        if kind.with_args is not None and any(a.key != "name" for a in layer.args):
            kind = kind.with_args
        values: dict[str, object] = {}
        for arg in layer.args:
            key = arg.key if arg.key is not None else kind.positional
            param = kind.params_by_key[key]  # type: ignore[index]
            value = self.value(arg.value, params)
            values[param.keras] = value if isinstance(value, Code) else coerce(param, value)
        width = None if layer.width is None else self.value(layer.width, params)
        call = keras_call(kind, values, width)
        return self.statement(f"{dst} = {_call_code(call)}({src})", None, layer, depth, external)

    def statement(self, code: str, text: str | None, node: Node, depth: int, external: str | None) -> Statement:
        if external is not None:
            source, where = self.replaced[external], f"--{external}"
        else:
            source, where = self.network.source, f"{self.file}:{node.span.line}:{node.span.column}"
        comment = f"{where}  {text or one_line(source[node.span.start : node.span.end])}"
        trailing = 4 * depth + len(code) + 2 + len(f"# {comment}") <= LINE_LENGTH
        return Statement(code, comment, trailing)

    # ---- values ------------------------------------------------------------------------------

    def code(self, arg: Arg, params: frozenset[str]) -> str:
        return repr(self.value(arg.value, params))

    def value(self, value: Value, params: frozenset[str]) -> object:
        """A concrete value as itself; a parameter or arithmetic on parameters as Code."""
        if isinstance(value, str) and value in params:
            return Code(py_name(value))
        if isinstance(value, Ref | BinOp):
            return Code(self.expr(value, params))
        if isinstance(value, tuple):
            items = [self.value(v, params) for v in value]
            return (
                Code("(" + ", ".join(repr(v) for v in items) + ")")
                if any(isinstance(v, Code) for v in items)
                else tuple(items)
            )
        return value

    def expr(self, expr: Expr, params: frozenset[str]) -> str:
        if isinstance(expr, int):
            return repr(expr)
        if isinstance(expr, Ref):
            return py_name(expr.name)
        left, right = self.expr(expr.left, params), self.expr(expr.right, params)
        if isinstance(expr.left, BinOp) and _PRECEDENCE[expr.left.op] < _PRECEDENCE[expr.op]:
            left = f"({left})"
        if isinstance(expr.right, BinOp) and _PRECEDENCE[expr.right.op] <= _PRECEDENCE[expr.op]:
            right = f"({right})"
        return f"{left} {expr.op} {right}"


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}


def _call_code(call: KerasCall) -> str:
    args = [repr(a) for a in call.args] + [f"{key}={value!r}" for key, value in call.kwargs]
    return f"layers.{call.kind.keras_class}({', '.join(args)})"

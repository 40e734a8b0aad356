"""Network → the generated program's structure (ir.Program): a function per spec block, loops for
repetitions, variables for residual and branch paths. Framework-independent: a target renders it
(target_keras.py).

Identifiers from the spec go through :class:`Namespace` (checked, renamed away from Python's
keywords, builtins, the names of the template in use and the variables the code makes itself, and
deduplicated); calls come from the one resolver; values stay typed (a block parameter is ``Code``)."""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from normdsl import ir
from normdsl.ast import (
    IDENTIFIER,
    Arg,
    BinOp,
    BlockDef,
    Call,
    Concat,
    Expr,
    Layer,
    Node,
    Ref,
    Repeat,
    Residual,
    Value,
    Word,
)
from normdsl.diagnostics import one_line
from normdsl.graph import block_used, is_identity, merge_of
from normdsl.layers import COMPOSITES, KINDS, MERGES, Code, Merge
from normdsl.network import Network, flag
from normdsl.pysource import literal
from normdsl.resolve import resolve

MAX_LOOPS = 16  # loops nested in one function; Python refuses more than 20 statically nested blocks

# The variables generated code makes itself: y, shortcut_2, branch_1, branch_3_2, repeat_4.
_INTERNAL = re.compile(r"(y|shortcut|branch|repeat)(_[0-9]+)*")


def _reserved(name: str, template: frozenset[str]) -> bool:
    return (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or hasattr(builtins, name)
        or name in template
        or _INTERNAL.fullmatch(name) is not None
    )


class Namespace:
    """Python names for the spec's identifiers: a block's function, a block's parameters. Each is
    the spec's name, with ``_`` appended while it is reserved or already taken, so that no two
    meanings share a name (a parameter never hides a block function or a name of the template).

    ``reserved``: every name the template's code defines or reads (emit_source finds them by
    rendering the template); ``imported``: the names the module imports (plugin layer classes)."""

    def __init__(
        self,
        blocks: tuple[BlockDef, ...],
        imported: frozenset[str] = frozenset(),
        *,
        reserved: frozenset[str],
    ):
        taken: set[str] = set(imported)
        self.functions: dict[str, str] = {}
        for block in blocks:
            self.functions[block.name] = _fresh(block.name, taken, reserved)
        self.params: dict[tuple[str, str], str] = {}
        for block in blocks:
            local = set(taken)  # a parameter hides no block function
            for param in block.params:
                self.params.setdefault((block.name, param.name), _fresh(param.name, local, reserved))

    def function(self, block: str) -> str:
        return self.functions[block]

    def param(self, block: str, name: str) -> str:
        return self.params[(block, name)]


def _fresh(name: str, taken: set[str], reserved: frozenset[str]) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a spec identifier (letters, digits and _, not starting with a digit)")
    if name.startswith("_"):  # generated names never start with _ (the safety check refuses _ names: __import__)
        name = "u" + name
    while _reserved(name, reserved) or name in taken:
        name += "_"
    taken.add(name)
    return name


def program(network: Network, *, reserved: frozenset[str]) -> ir.Program:
    """The program of a checked network; no spec identifier takes a name of ``reserved`` (the names
    the template it is printed with defines or reads)."""
    assert network.spec is not None
    return _Builder(network, reserved).build()


@dataclass(frozen=True, slots=True)
class _Where:
    """Where operations are being made: the block's parameters (spec name → Python name), the
    nesting of paths (for variable names), the loops around them in this function, and the block
    replaced from outside the spec (--norm) they belong to."""

    scope: dict[str, str]
    depth: int = 1
    loops: int = 0
    external: str | None = None

    def inner(self, *, loop: bool = False) -> _Where:
        return _Where(self.scope, self.depth + 1, self.loops + loop, self.external)


class _Builder:
    def __init__(self, network: Network, reserved: frozenset[str]):
        assert network.spec is not None
        self.network, self.spec = network, network.spec
        self.blocks = {b.name: b for b in (*self.spec.blocks, *network.composites)}
        imported = frozenset(n.keras_class for n in network.layers if n.module)
        self.names = Namespace((*self.spec.blocks, *network.composites), imported, reserved=reserved)
        self.composites = {b.name for b in network.composites}
        # blocks whose text is not the spec's: where their operations come from, and that text
        self.sources = {name: (flag(name), text, False) for name, text in network.replaced}
        self.sources |= {name: (name, COMPOSITES[name].definition, False) for name in self.composites}
        self.sources |= {name: (Path(file).name, text, True) for name, file, text in network.homes}
        self.file = one_line(Path(network.filename).name)
        self.used: set[str] = set()
        self.helpers = 0  # local functions made for loops nested too deep

    def build(self) -> ir.Program:
        body = self.seq(self.spec.body, "inputs", "x", _Where({}))
        made: dict[str, ir.Block] = {}
        while todo := [name for name in self.blocks if name in self.used and name not in made]:
            for name in todo:  # making a block finds the blocks it uses
                made[name] = self.block(self.blocks[name])
        blocks = tuple(made[name] for name in self.blocks if name in made)
        return ir.Program(blocks, body, "x" if self.spec.body else "inputs")

    def block(self, block: BlockDef) -> ir.Block:
        scope = {p.name: self.names.param(block.name, p.name) for p in block.params}
        composite = block.name in self.composites
        passed = block.params[1:] if composite else block.params  # a composite's first: x's channels
        params = tuple((scope[p.name], None if p.default is None else self.value(p.default, {})) for p in passed)
        external = block.name if block.name in self.sources else None
        body = self.seq((block.body,), "x", "x", _Where(scope, external=external))
        head = f"{block.name}({', '.join(p.name for p in block.params)})" if block.params else block.name
        file, text, positioned = self.sources.get(block.name, (self.file, "", True))
        if composite:
            origin = ir.Origin("normdsl", f"composite kind {block.name}")
        elif not positioned:  # replaced from outside the spec: the option and its text
            origin = ir.Origin(file, text)
        else:
            origin = ir.Origin(f"{file}:{block.span.line}:{block.span.column}", f"block {head}")
        channels = scope[block.params[0].name] if composite else None
        replaced = external is not None and not composite and not positioned
        return ir.Block(self.names.function(block.name), params, origin, replaced, body, channels)

    # ---- operations --------------------------------------------------------------------------

    def seq(self, nodes: tuple[Node, ...], src: str, dst: str, where: _Where) -> tuple[ir.Op, ...]:
        """Operations applying ``nodes`` to variable ``src``, leaving the result in ``dst``."""
        out: list[ir.Op] = []
        for node in nodes:
            out += self.node(node, src, dst, where)
            src = dst
        if src != dst:
            out.append(ir.Copy(dst, src))
        return tuple(out)

    def node(self, node: Node, src: str, dst: str, where: _Where) -> list[ir.Op]:
        match node:
            case Layer() if is_identity(node) and node.kind not in self.blocks:
                return [] if src == dst else [ir.Copy(dst, src)]
            case Layer():
                return [self.layer(node, src, dst, where)]
            case Repeat(count=1):
                return list(self.seq(node.body, src, dst, where))
            case Repeat() if where.loops >= MAX_LOOPS:  # a local function starts a new count of nested blocks
                self.helpers += 1
                name = f"repeat_{self.helpers}"  # (before the body, which may make helpers of its own)
                body = self.node(node, "x", "x", _Where(where.scope, where.depth, 0, where.external))
                return [ir.Nested(dst, name, src, tuple(body))]
            case Repeat():
                first: list[ir.Op] = [] if src == dst else [ir.Copy(dst, src)]
                loop = self.seq(node.body, dst, dst, where.inner(loop=True))
                return [*first, ir.Loop(self.count(node.count, where.scope), loop)] if loop else first
            case Residual():
                suffix = "" if where.depth == 1 else f"_{where.depth}"
                shortcut, y = f"shortcut{suffix}", f"y{suffix}"
                out = list(self.seq(node.shortcut, src, shortcut, where.inner())) if node.shortcut else []
                if not node.shortcut:
                    shortcut = src
                out += self.seq(node.body, src, y, where.inner())
                merge = merge_of(node)
                srcs = (y, shortcut) if node.body_first else (shortcut, y)
                return [*out, ir.Join(dst, merge, srcs, self.origin(node, MERGES[merge].name, where))]
            case Concat():
                suffix = "" if where.depth == 1 else f"_{where.depth}"
                names = tuple(f"branch{suffix}_{i}" for i in range(1, len(node.branches) + 1))
                out = []
                for name, branch in zip(names, node.branches, strict=True):
                    out += self.seq(branch, src, name, where.inner())
                return [*out, ir.Join(dst, Merge.CAT, names, self.origin(node, "cat", where))]
            case _:
                assert_never(node)

    def layer(self, layer: Layer, src: str, dst: str, where: _Where) -> ir.Op:
        block = block_used(self.blocks, layer)
        if block is not None:
            self.used.add(block.name)
            args = tuple(
                (None if a.key is None else self.names.param(block.name, a.key), self.value(a.value, where.scope))
                for a in layer.args
            )
            return ir.UseBlock(dst, self.names.function(block.name), src, args, self.origin(layer, None, where))
        resolved = [Arg(a.key, self.value(a.value, where.scope), a.span) for a in layer.args]
        width = None if layer.width is None else self.value(layer.width, where.scope)
        call, issues = resolve(KINDS[layer.kind], width, resolved, span=layer.span, name_span=layer.name_span)
        if call is None:  # the checker accepted the spec, so only a bug gets here
            raise ValueError(f"{layer.kind}: {'; '.join(issue.message for issue in issues)}")
        return ir.Apply(dst, call, src, self.origin(layer, None, where))

    def origin(self, node: Node, text: str | None, where: _Where) -> ir.Origin:
        if where.external is not None:
            place, source, positioned = self.sources[where.external]
            if positioned:
                place = f"{place}:{node.span.line}:{node.span.column}"
            return ir.Origin(place, text or one_line(source[node.span.start : node.span.end]))
        place = f"{self.file}:{node.span.line}:{node.span.column}"
        return ir.Origin(place, text or one_line(self.network.source[node.span.start : node.span.end]))

    # ---- values ------------------------------------------------------------------------------

    def count(self, count: Expr, scope: dict[str, str]) -> Value:
        return count if isinstance(count, int) else Code(self.expr(count, scope))

    def value(self, value: Value, scope: dict[str, str]) -> Value:
        """A concrete value as itself; a parameter or arithmetic on parameters as Code."""
        if isinstance(value, Word) and value in scope:
            return Code(scope[value])
        if isinstance(value, Ref | BinOp | Call) and (folded := self.fold(value)) is not None:
            return folded  # w(32) at the network's scale: a number
        if isinstance(value, Ref | BinOp | Call):
            return Code(self.expr(value, scope))
        if isinstance(value, tuple):
            items = tuple(self.value(v, scope) for v in value)
            return Code(literal(items)) if any(isinstance(v, Code) for v in items) else items
        return value

    def fold(self, expr: Expr) -> int | None:
        """The value of an expression holding a scaling function and no parameter (None otherwise)."""
        if not _calls(expr):
            return None
        match expr:
            case int():
                return expr
            case Ref():
                return None
            case Call():
                args = [self.fold(a) if not isinstance(a, int) else a for a in expr.args]
                numbers = tuple(a for a in args if a is not None)
                return self.network.scaling.call(expr.func, numbers) if len(numbers) == len(args) else None
            case BinOp():
                left = expr.left if isinstance(expr.left, int) else self.fold(expr.left)
                right = expr.right if isinstance(expr.right, int) else self.fold(expr.right)
                if left is None or right is None:
                    return None
                return {"+": left + right, "-": left - right, "*": left * right, "//": left // right}[expr.op]
            case _:
                assert_never(expr)

    def expr(self, expr: Expr, scope: dict[str, str]) -> str:
        if isinstance(expr, int):
            return repr(expr)
        if isinstance(expr, Ref):
            return scope[expr.name]
        if isinstance(expr, Call):  # the checker allows scaling functions of values only: w(32), not w(f)
            folded = self.fold(expr)
            assert folded is not None, expr
            return repr(folded)
        left, right = self.expr(expr.left, scope), self.expr(expr.right, scope)
        if isinstance(expr.left, BinOp) and _PRECEDENCE[expr.left.op] < _PRECEDENCE[expr.op]:
            left = f"({left})"
        if isinstance(expr.right, BinOp) and _PRECEDENCE[expr.right.op] <= _PRECEDENCE[expr.op]:
            right = f"({right})"
        return f"{left} {expr.op} {right}"


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}


def _calls(expr: Expr) -> bool:
    """Whether an expression calls a scaling function."""
    match expr:
        case Call():
            return True
        case BinOp():
            return _calls(expr.left) or _calls(expr.right)
        case _:
            return False

"""Network → the generated module's structure: a Python function per spec block, loops for
repetitions, variables for residual and branch paths.

Every token of code here is typed: identifiers from the spec go through :class:`Namespace` (checked,
renamed away from Python's keywords, builtins, the templates' names and the variables the code makes
itself, and deduplicated), values are ``repr()`` of validated Python values, and the rest is a fixed
vocabulary; the result is :class:`PyCode`. Spec text reaches the output only as :class:`SafeText`,
made by :func:`safe_text`, in comments and docstrings."""

from __future__ import annotations

import builtins
import functools
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from normdsl.ast import Arg, BinOp, BlockDef, Concat, Expr, Layer, Node, Ref, Repeat, Residual, Value, Word
from normdsl.diagnostics import one_line
from normdsl.graph import block_used
from normdsl.layers import KINDS, MERGES, Code, KerasCall, Merge, keras_call
from normdsl.network import Network, flag
from normdsl.resolve import resolve

LINE_LENGTH = 88  # black's default, which the output is formatted with
MAX_LOOPS = 16  # loops nested in one function; Python refuses more than 20 statically nested blocks

# Every module-level name the templates define, import or read, and the locals of build_model:
# spec identifiers never take them (tests/test_security.py checks the list against every template).
TEMPLATE_NAMES = frozenset(
    [
        "x",
        "inputs",
        "input_shape",
        "layers",
        "keras",
        "tf",
        "np",
        "plt",
        "argparse",
        "json",
        "warnings",
        "Path",
        "build_model",
        "classifier",
        "strategy_for",
        "synthetic_data",
        "folder_data",
        "main",
        "INPUT_SHAPE",
        "NUM_CLASSES",
        "SYNCHRONIZED_BATCH_NORM",
        "EPOCHS",
        "BATCH_SIZE",
        "LEARNING_RATE",
        "SAMPLES",
        "DATA_DIR",
        "train",
        "validation",
        "num_classes",
        "model",
        "history",
        "results",
    ]
)
# The variables generated code makes itself: y, shortcut_2, branch_1, branch_3_2, repeat_4.
_INTERNAL = re.compile(r"(y|shortcut|branch|repeat)(_[0-9]+)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PyCode(str):
    """Python source made from typed values: identifiers from a Namespace, repr() of validated
    values and a fixed vocabulary. Templates print it as it is."""

    def __html__(self) -> str:  # the Jinja environment prints only PyCode, SafeText and numbers
        return self


class SafeText(str):
    """Text for one line of a comment or a docstring, escaped by :func:`safe_text`."""

    def __html__(self) -> str:
        return self


NO_COMMENT = SafeText()
_CODING = re.compile(r"(coding)([:=])", re.IGNORECASE)
_QUOTES = re.compile(r'"(?=")|(?<=")"|^"|"$')


def safe_text(text: str) -> SafeText:
    """Any text as one line that is inert in a ``#`` comment and in a triple-quoted docstring:
    line and paragraph separators, tabs and other whitespace become spaces, control and format
    characters are escaped (``\\x00``, ``\\u202e``), backslashes get a backslash (no escape forms),
    so does a double quote next to another or at either end (no ``\"\"\"`` ends a docstring early, none
    merges with the template's), and ``coding:``/``coding=`` get a space (no encoding declaration,
    PEP 263). Spaces are kept: a spec line keeps its indentation."""
    if not text.isprintable():
        text = "".join(_safe_char(c) for c in text)
    text = _QUOTES.sub(r'\\"', text.rstrip().replace("\\", "\\\\"))
    return SafeText(_CODING.sub(r"\1 \2", text))


def _safe_char(c: str) -> str:
    if c.isprintable():
        return c
    if c.isspace():
        return " "
    return c.encode("unicode_escape").decode("ascii")  # \x00, \u202e: its backslash is doubled after


@dataclass(frozen=True, slots=True)
class Statement:
    code: PyCode  # a statement (black-split when longer than a line): x = layers.Conv2D(32, 3)(x), for _ in range(3):
    comment: SafeText = NO_COMMENT  # where it comes from in the spec: groupnorm.nd:4:23  gn(16)
    trailing: bool = False  # the comment ends the line (it fits black's 88 columns); else it stands above
    body: tuple[Statement, ...] = ()  # the body of a for loop or a local def


@dataclass(frozen=True, slots=True)
class Function:
    """A spec block as a Python function: def bottleneck(x, f, s=1): ... return x."""

    name: PyCode
    signature: PyCode  # x, f, s=1
    comment: SafeText
    body: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Program:
    functions: tuple[Function, ...]  # the blocks the model uses, in the order they are defined
    body: tuple[Statement, ...]  # build_model's statements, from inputs to x
    output: PyCode  # the variable holding the model's output


def _reserved(name: str) -> bool:
    return (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or hasattr(builtins, name)
        or name in TEMPLATE_NAMES
        or _INTERNAL.fullmatch(name) is not None
    )


class Namespace:
    """Python names for the spec's identifiers: a block's function, a block's parameters. Each is
    the spec's name, with ``_`` appended while it is reserved or already taken, so that no two
    meanings share a name (a parameter never hides a block function or a template name)."""

    def __init__(self, blocks: tuple[BlockDef, ...]):
        taken: set[str] = set()
        self.functions: dict[str, str] = {}
        for block in blocks:
            self.functions[block.name] = _fresh(block.name, taken)
        self.params: dict[tuple[str, str], str] = {}
        for block in blocks:
            local = set(taken)  # a parameter hides no block function
            for param in block.params:
                self.params.setdefault((block.name, param.name), _fresh(param.name, local))

    def function(self, block: str) -> PyCode:
        return PyCode(self.functions[block])

    def param(self, block: str, name: str) -> PyCode:
        return PyCode(self.params[(block, name)])


def _fresh(name: str, taken: set[str]) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a spec identifier (letters, digits and _, not starting with a digit)")
    if name.startswith("_"):  # generated names never start with _ (the safety check refuses _ names: __import__)
        name = "u" + name
    while _reserved(name) or name in taken:
        name += "_"
    taken.add(name)
    return name


def program(network: Network) -> Program:
    assert network.spec is not None
    return _Builder(network).build()


@dataclass(frozen=True, slots=True)
class _Where:
    """Where statements are being made: the block's parameters (spec name → Python name), the
    nesting of paths (for variable names), the loops around them in this function, and the block
    replaced from outside the spec (--norm) they belong to."""

    scope: dict[str, PyCode]
    depth: int = 1
    loops: int = 0
    external: str | None = None
    indent: int = 1  # levels of four spaces the statements stand at

    def inner(self, *, loop: bool = False) -> _Where:
        return _Where(self.scope, self.depth + 1, self.loops + loop, self.external, self.indent + loop)


class _Builder:
    def __init__(self, network: Network):
        assert network.spec is not None
        self.network, self.spec = network, network.spec
        self.blocks = {b.name: b for b in self.spec.blocks}
        self.names = Namespace(self.spec.blocks)
        self.replaced = dict(network.replaced)
        self.file = one_line(Path(network.filename).name)
        self.used: set[str] = set()
        self.helpers = 0  # local functions made for loops nested too deep

    def build(self) -> Program:
        body = self.seq(self.spec.body, "inputs", "x", _Where({}))
        rendered: dict[str, Function] = {}
        while todo := [name for name in self.blocks if name in self.used and name not in rendered]:
            for name in todo:  # rendering a block finds the blocks it uses
                rendered[name] = self.function(self.blocks[name])
        functions = tuple(rendered[name] for name in self.blocks if name in rendered)
        return Program(functions, body, PyCode("x" if self.spec.body else "inputs"))

    def function(self, block: BlockDef) -> Function:
        scope = {p.name: self.names.param(block.name, p.name) for p in block.params}
        defaults = [
            scope[p.name] + ("" if p.default is None else f"={literal(self.value(p.default, {}))}")
            for p in block.params
        ]
        external = block.name if block.name in self.replaced else None
        body = self.seq((block.body,), "x", "x", _Where(scope, external=external))
        if external is not None:
            comment = safe_text(f"{flag(block.name)} {self.replaced[block.name]}")
        else:
            head = f"{block.name}({', '.join(p.name for p in block.params)})" if block.params else block.name
            comment = _comment(f"{self.file}:{block.span.line}:{block.span.column}", f"block {head}")
        signature = PyCode(", ".join(["x", *defaults]))  # (black would split a def longer than a line: rare)
        return Function(self.names.function(block.name), signature, comment, (*body, _RETURN))

    # ---- statements --------------------------------------------------------------------------

    def seq(self, nodes: tuple[Node, ...], src: str, dst: str, where: _Where) -> tuple[Statement, ...]:
        """Statements applying ``nodes`` to variable ``src``, leaving the result in ``dst``."""
        out: list[Statement] = []
        for node in nodes:
            out += self.node(node, src, dst, where)
            src = dst
        if src != dst:
            out.append(Statement(PyCode(f"{dst} = {src}")))
        return tuple(out)

    def node(self, node: Node, src: str, dst: str, where: _Where) -> list[Statement]:
        match node:
            case Layer():
                return [self.layer(node, src, dst, where)]
            case Repeat(count=1):
                return list(self.seq(node.body, src, dst, where))
            case Repeat() if where.loops >= MAX_LOOPS:  # a local function starts a new count of nested blocks
                self.helpers += 1
                helper = f"repeat_{self.helpers}"
                body = self.node(node, "x", "x", _Where(where.scope, where.depth, 0, where.external, where.indent + 1))
                define = Statement(PyCode(f"def {helper}(x):"), body=(*body, _RETURN))
                use = Statement(_formatted(f"{dst} = {helper}({src})", where.indent))
                return [_BLANK, define, _BLANK, use]  # black's blank lines around a nested def
            case Repeat():
                first = [] if src == dst else [Statement(PyCode(f"{dst} = {src}"))]
                loop = self.seq(node.body, dst, dst, where.inner(loop=True))
                head = _formatted(f"for _ in range({self.expr(node.count, where.scope)}):", where.indent)
                return [*first, Statement(head, body=loop)]
            case Residual():
                suffix = "" if where.depth == 1 else f"_{where.depth}"
                shortcut, y = f"shortcut{suffix}", f"y{suffix}"
                out = list(self.seq(node.shortcut, src, shortcut, where.inner())) if node.shortcut else []
                if not node.shortcut:
                    shortcut = src
                out += self.seq(node.body, src, y, where.inner())
                call = _call_code(keras_call(MERGES[Merge.RES], {}, None))
                return [*out, self.statement(f"{dst} = {call}([{shortcut}, {y}])", "res", node, where)]
            case Concat():
                suffix = "" if where.depth == 1 else f"_{where.depth}"
                names = [f"branch{suffix}_{i}" for i in range(1, len(node.branches) + 1)]
                out = []
                for name, branch in zip(names, node.branches, strict=True):
                    out += self.seq(branch, src, name, where.inner())
                call = _call_code(keras_call(MERGES[Merge.CAT], {}, None))
                return [*out, self.statement(f"{dst} = {call}([{', '.join(names)}])", "cat", node, where)]
            case _:
                assert_never(node)

    def layer(self, layer: Layer, src: str, dst: str, where: _Where) -> Statement:
        block = block_used(self.blocks, layer)
        if block is not None:
            self.used.add(block.name)
            args = [src] + [
                (
                    self.code(a, where.scope)
                    if a.key is None
                    else f"{self.names.param(block.name, a.key)}={self.code(a, where.scope)}"
                )
                for a in layer.args
            ]
            return self.statement(f"{dst} = {self.names.function(block.name)}({', '.join(args)})", None, layer, where)
        resolved = [Arg(a.key, self.value(a.value, where.scope), a.span) for a in layer.args]
        width = None if layer.width is None else self.value(layer.width, where.scope)
        call, issues = resolve(KINDS[layer.kind], width, resolved, span=layer.span, name_span=layer.name_span)
        if call is None:  # the checker accepted the spec, so only a bug gets here
            raise ValueError(f"{layer.kind}: {'; '.join(issue.message for issue in issues)}")
        return self.statement(f"{dst} = {_call_code(call)}({src})", None, layer, where)

    def statement(self, code: str, text: str | None, node: Node, where: _Where) -> Statement:
        if where.external is not None:
            source, place = self.replaced[where.external], flag(where.external)
        else:
            source, place = self.network.source, f"{self.file}:{node.span.line}:{node.span.column}"
        comment = _comment(place, text or one_line(source[node.span.start : node.span.end]))
        formatted = _formatted(code, where.indent)
        trailing = "\n" not in formatted and 4 * where.indent + len(code) + 4 + len(comment) <= LINE_LENGTH
        return Statement(formatted, comment, trailing)

    # ---- values ------------------------------------------------------------------------------

    def code(self, arg: Arg, scope: dict[str, PyCode]) -> str:
        return literal(self.value(arg.value, scope))

    def value(self, value: Value, scope: dict[str, PyCode]) -> Value:
        """A concrete value as itself; a parameter or arithmetic on parameters as Code."""
        if isinstance(value, Word) and value in scope:
            return Code(scope[value])
        if isinstance(value, Ref | BinOp):
            return Code(self.expr(value, scope))
        if isinstance(value, tuple):
            items = [self.value(v, scope) for v in value]
            return Code(literal(tuple(items))) if any(isinstance(v, Code) for v in items) else tuple(items)
        return value

    def expr(self, expr: Expr, scope: dict[str, PyCode]) -> str:
        if isinstance(expr, int):
            return repr(expr)
        if isinstance(expr, Ref):
            return scope[expr.name]
        left, right = self.expr(expr.left, scope), self.expr(expr.right, scope)
        if isinstance(expr.left, BinOp) and _PRECEDENCE[expr.left.op] < _PRECEDENCE[expr.op]:
            left = f"({left})"
        if isinstance(expr.right, BinOp) and _PRECEDENCE[expr.right.op] <= _PRECEDENCE[expr.op]:
            right = f"({right})"
        return f"{left} {expr.op} {right}"


def _comment(place: str, text: str) -> SafeText:
    """``groupnorm.nd:4:23  gn(16)``: where, two spaces, what."""
    return SafeText(f"{safe_text(place)}  {safe_text(text)}")


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}
_RETURN = Statement(PyCode("return x"))
_BLANK = Statement(PyCode(""))


def _call_code(call: KerasCall) -> str:
    args = [literal(a) for a in call.args] + [f"{key}={literal(value)}" for key, value in call.kwargs]
    return f"layers.{call.kind.keras_class}({', '.join(args)})"


def literal(value: object) -> str:
    """A validated value as Python source, as black writes it (strings in double quotes); a
    parameter expression (Code) as itself."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"' if value.isprintable() and not set(value) & {'"', "\\"} else repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


@functools.lru_cache(maxsize=4096)
def _formatted(code: str, indent: int) -> PyCode:
    """A statement as black writes it at ``indent`` levels: as it is when it fits the line, else
    split by black (once per distinct statement: formatting the whole module is what made large
    specs slow to build)."""
    if 4 * indent + len(code) <= LINE_LENGTH:
        return PyCode(code)
    import black  # slow to import: only when a statement needs it

    mode = black.Mode(line_length=max(LINE_LENGTH - 4 * indent, 1))
    if code.endswith(":"):  # a for or def header: black needs a body, which is dropped again
        return PyCode(black.format_str(code + "\n    pass\n", mode=mode).rstrip("\n").rsplit("\n", 1)[0])
    return PyCode(black.format_str(code, mode=mode).rstrip("\n"))

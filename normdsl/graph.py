"""Spec → instances: blocks called with their arguments, parameters substituted, repetitions
unrolled, residual and branch paths wired. The result is the model's graph in creation order
(a shortcut path before its body, as keras.applications builds them)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol, assert_never

from normdsl.ast import Arg, BinOp, BlockDef, Call, Concat, Expr, Layer, Node, Ref, Repeat, Residual, Spec, Value, Word
from normdsl.diagnostics import Span, did_you_mean, one_line
from normdsl.layers import IDENTITY, MERGES, Merge
from normdsl.limits import Limits
from normdsl.scaling import FUNCTIONS, Scaling

MODEL_INPUT = -1  # Instance.inputs entry: the model's input tensor
UNKNOWN = -2  # Instance.inputs entry: a tensor whose producer could not be expanded


@dataclass(frozen=True, slots=True)
class Use:
    """A block use on the way to an instance: block ``block`` used at ``span``."""

    block: str
    span: Span


@dataclass(frozen=True, slots=True)
class Instance:
    """A layer or merge of the expanded graph, its arguments evaluated, wired to its inputs."""

    kind: str  # a layer kind (checked against the registry later); for a merge, its name (res, cat)
    width: int | None
    args: tuple[Arg, ...]  # values evaluated: no Ref or BinOp left
    inputs: tuple[int, ...]  # producers, by index; MODEL_INPUT or UNKNOWN
    span: Span  # where it is written in the spec (for a replaced block: where it is used)
    text: str  # as written, on one line
    stack: tuple[Use, ...]  # the block uses it sits in, outermost first
    merge: Merge | None = None  # the Add of a res(...), the Multiply of a gate(...), the Concatenate of a cat(...)
    round: str | None = None  # the innermost repetition around it, for messages: "the 4th of conv8*5"
    written: Span | None = None  # where it is written when that is not the spec (--set's text, a composite's)


class Report(Protocol):
    def __call__(
        self,
        message: str,
        span: Span,
        hint: str | None,
        notes: tuple[tuple[str, Span], ...],
        *,
        elsewhere: tuple[str, str] | None = None,
    ) -> None: ...


_SIZE_UNKNOWN = 10**30  # sizes are capped here: beyond any limit


class TooBig(Exception):
    """Expansion went past the layer limit after all (a safety net behind the size pass)."""


class Expander:
    def __init__(
        self,
        spec: Spec,
        blocks: dict[str, BlockDef],
        sources: dict[str, str],
        limits: Limits,
        report: Report,
        composites: dict[str, BlockDef] | None = None,
        homes: dict[str, tuple[str, str]] | None = None,
        scaling: Scaling | None = None,
    ):
        """``sources``: the text of blocks not written in the spec (--set's, composites'), by name;
        ``composites``: the composite kinds' blocks, expanded once their input's channels are known."""
        self.spec, self.blocks, self.sources, self.limits, self.report = spec, blocks, sources, limits, report
        self.composites = composites or {}
        self.scaling = scaling or Scaling()  # what w() and d() compute
        self.moved = {m.span: m.moved for m in self.scaling.moved}
        self.widths: dict[Span, tuple[int, int, int]] = {}  # each w() evaluated: argument, rounded, used
        self.homes = homes or {}  # blocks of used files: (file name, text), where their problems are shown
        self.instances: list[Instance] = []
        self.too_big = False  # beyond limits.max_layers: nothing was expanded
        self.quiet = 0  # > 0 while sizing: problems are not reported twice
        self.visits = 0
        self.rounds: list[str] = []  # the repetitions being expanded, innermost last
        self.nesting = 0  # groups, residuals and branches around the node being expanded, through block uses
        self.sizes: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.texts: dict[str, str] = {}  # text as written → on one line (each distinct text once, shared)
        self.numbered = any(name[-1:].isdigit() for name in blocks)  # whether b60 may name a block

    def run(self) -> list[Instance]:
        """Expand the spec, after making sure (without expanding) that it stays within the layer limit.
        The instances are handed over: the expander keeps no reference to them."""
        total = 0
        self.quiet += 1  # sizing: problems are left to the expansion to report
        try:
            for node in self.spec.body:
                total += min(self._size(node, {}, ()), _SIZE_UNKNOWN)
                if total > self.limits.max_layers:
                    self.too_big = True
                    figure = f"{total:,} layers" if total < _SIZE_UNKNOWN else "too many layers to count"
                    message = f"the spec expands to {figure}, more than the limit of {self.limits.max_layers:,}"
                    self.report(message, node.span, "lower the repetition counts or block uses", ())
                    return []
        finally:
            self.quiet -= 1
        x = MODEL_INPUT
        try:
            for node in self.spec.body:
                x = self.node(node, x, {}, ())
        except TooBig:
            self.too_big = True
            self.report(
                f"the spec expands to more than {self.limits.max_layers:,} layers", self.spec.body[0].span, None, ()
            )
        instances, self.instances = self.instances, []
        return instances

    # ---- size, without expanding -------------------------------------------------------------

    def _size(self, node: Node, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        """How many layers ``node`` expands to (while ``quiet``: problems are left to the expansion to report)."""
        self.visits += 1
        if self.visits > 10 * self.limits.max_layers:
            return _SIZE_UNKNOWN  # the spec is too intricate to count: as good as too big
        if isinstance(node, Layer):
            return self._size_layer(node, env, stack)
        if self.nesting >= self.limits.max_nesting:
            return 0  # the expansion reports it
        self.nesting += 1
        try:
            return self._size_nested(node, env, stack)
        finally:
            self.nesting -= 1

    def _size_nested(self, node: Repeat | Residual | Concat, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        match node:
            case Repeat():
                count = self.value(node.count, env, stack)
                if not isinstance(count, int) or count <= 0:
                    return 0
                return min(count * sum(self._size(n, env, stack) for n in node.body), _SIZE_UNKNOWN)
            case Residual():
                paths: tuple[tuple[Node, ...], ...] = (node.shortcut or (), node.body)
            case Concat():
                paths = node.branches
            case _:
                assert_never(node)
        return 1 + sum(self._size(n, env, stack) for path in paths for n in path)

    def _size_layer(self, node: Layer, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        block = self.block_used(node)
        if block is None and is_identity(node):
            return 0
        if block is None and node.kind in self.composites and len(stack) < self.limits.max_call_depth:
            composite = self.composites[node.kind]  # its size does not depend on the channels
            return self._size(
                composite.body, {p.name: 1 for p in composite.params}, (*stack, Use(node.kind, node.span))
            )
        if block is None:
            return 1
        if block.name in (u.block for u in stack) or len(stack) >= self.limits.max_call_depth:
            return 0
        bound = self.bind(block, node, env, stack)
        if bound is None:
            return 0
        key = (block.name, tuple(sorted((k, repr(v)) for k, v in bound.items())))
        if key not in self.sizes:
            self.sizes[key] = self._size(block.body, bound, (*stack, Use(block.name, node.span)))
        return self.sizes[key]

    # ---- one node ---------------------------------------------------------------------------

    def node(self, node: Node, x: int, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        if isinstance(node, Layer):
            return self.layer(node, x, env, stack)
        if self.nesting >= self.limits.max_nesting:
            self.problem(
                f"groups, residuals and branches nest more than {self.limits.max_nesting} deep (with those of the blocks used)",
                node.span,
                stack,
                "flatten a block, or repeat a group instead of nesting it",
            )
            return UNKNOWN
        self.nesting += 1
        try:
            return self.nested(node, x, env, stack)
        finally:
            self.nesting -= 1

    def nested(self, node: Repeat | Residual | Concat, x: int, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        match node:
            case Repeat():
                count = self.count(node, env, stack)
                written = count > 1 and (not stack or stack[-1].block not in self.sources)
                text = one_line(self.spec.source[node.span.start : node.span.end]) if written else ""
                for i in range(count):
                    if written:  # shape problems say which round: the 4th of conv8*5
                        self.rounds.append(f"the {_ordinal(i + 1)} of {text}")
                    try:
                        x = self.seq(node.body, x, env, stack)
                    finally:
                        if written:
                            self.rounds.pop()
                return x
            case Residual():
                shortcut = self.seq(node.shortcut, x, env, stack) if node.shortcut else x
                body = self.seq(node.body, x, env, stack)
                merge = merge_of(node)
                paths = (body, shortcut) if node.body_first else (shortcut, body)
                return self.merge(merge, paths, node.span, stack)
            case Concat():
                branches = tuple(self.seq(branch, x, env, stack) for branch in node.branches)
                return self.merge(Merge.CAT, branches, node.span, stack)
            case _:
                assert_never(node)

    def merge(self, merge: Merge, inputs: tuple[int, ...], span: Span, stack: tuple[Use, ...]) -> int:
        name = MERGES[merge].name
        return self.add(name, inputs, self.where(span, stack)[0], name, stack, merge=merge)

    def seq(self, nodes: tuple[Node, ...], x: int, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        for node in nodes:
            x = self.node(node, x, env, stack)
        return x

    def add(
        self,
        kind: str,
        inputs: tuple[int, ...],
        span: Span,
        text: str,
        stack: tuple[Use, ...],
        width: int | None = None,
        args: tuple[Arg, ...] = (),
        *,
        merge: Merge | None = None,
        written: Span | None = None,
    ) -> int:
        if len(self.instances) >= self.limits.max_layers:
            raise TooBig
        self.instances.append(
            Instance(
                kind, width, args, inputs, span, text, stack, merge, self.rounds[-1] if self.rounds else None, written
            )
        )
        return len(self.instances) - 1

    def block_used(self, layer: Layer) -> BlockDef | None:
        """``block_used``, quicker when no block's name ends in digits (no conv16 can name one)."""
        if layer.width is None:
            return self.blocks.get(layer.kind)
        return block_used(self.blocks, layer) if self.numbered else None

    def layer(self, layer: Layer, x: int, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        block = self.block_used(layer)
        if block is not None:
            return self.call(block, layer, x, env, stack)
        if layer.kind == IDENTITY and is_identity(layer):
            return x
        if layer.kind in self.composites and layer.width is not None:
            hint = f"write {layer.kind}(...): its widths come from its input's channels"
            self.problem(f"{layer.kind} takes no width", layer.name_span, stack, hint)
            return UNKNOWN
        width: int | None = None
        if type(layer.width) is int:
            width = layer.width
        elif layer.width is not None:
            value = self.value(layer.width, env, stack)
            if value is None:
                return UNKNOWN
            if not isinstance(value, int) or isinstance(value, bool):
                self.problem(f"the width of {layer.kind} must be an integer, got {value!r}", layer.name_span, stack)
                return UNKNOWN
            width = value
        args: tuple[Arg, ...] | None = layer.args
        for arg in layer.args:  # values that stand for themselves are taken as they are (and so are the args)
            if type(arg.value) not in _CONSTANT and not (type(arg.value) is Word and arg.value not in env):
                args = self.arguments(layer.args, env, stack)
                break
        if args is None:
            return UNKNOWN
        span, text = self.where(layer.span, stack)
        written = None if span is layer.span else layer.span
        return self.add(layer.kind, (x,), span, text, stack, width, args, written=written)

    def arguments(self, args: tuple[Arg, ...], env: dict[str, Value], stack: tuple[Use, ...]) -> tuple[Arg, ...] | None:
        """The arguments with their values evaluated (None after reporting why one has none)."""
        out = []
        for arg in args:
            value = self.value(arg.value, env, stack)
            if value is None:
                return None
            out.append(arg if value is arg.value else Arg(arg.key, value, arg.span))
        return tuple(out)

    def where(self, span: Span, stack: tuple[Use, ...]) -> tuple[Span, str]:
        """Span and text of a node; inside a block not written in the spec (--norm, a composite), the
        text from that block's source and the span of the innermost use written in the spec."""
        if not stack or stack[-1].block not in self.sources:
            return span, self.text(self.spec.source[span.start : span.end])
        text = self.text(self.sources[stack[-1].block][span.start : span.end])
        inner = max(i for i in range(len(stack)) if i == 0 or stack[i - 1].block not in self.sources)
        return stack[inner].span, text

    def text(self, written: str) -> str:
        """``written`` on one line, computed once per distinct text (one string shared by its layers)."""
        text = self.texts.get(written)
        if text is None:
            text = self.texts[written] = one_line(written)
        return text

    def composite(self, inst: Instance, channels: int) -> list[Instance]:
        """A composite kind's layers for an input of ``channels`` channels, indexed from 0, applied
        to MODEL_INPUT (standing for the composite's input); [] after reporting a problem."""
        block = self.composites[inst.kind]
        channels_param = block.params[0].name
        if any(a.key == channels_param for a in inst.args):
            hint = f"{inst.kind}'s {channels_param} is its input's channels: leave it out"
            self.problem(f"{channels_param} cannot be given to {inst.kind}", inst.span, inst.stack, hint)
            return []
        use = Layer(inst.kind, None, (Arg(None, channels, inst.span), *inst.args), inst.span, inst.span)
        outer, self.instances = self.instances, []
        try:
            x = self.call(block, use, MODEL_INPUT, {}, inst.stack)
            return self.instances if x != UNKNOWN else []
        except TooBig:
            self.problem(f"{inst.text} expands to more than {self.limits.max_layers:,} layers", inst.span, inst.stack)
            return []
        finally:
            self.instances = outer

    # ---- blocks -----------------------------------------------------------------------------

    def call(self, block: BlockDef, use: Layer, x: int, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        path = [u.block for u in stack]
        if block.name in path:
            cycle = " → ".join([*path[path.index(block.name) :], block.name])
            self.problem(
                f"block '{block.name}' uses itself ({cycle})",
                use.span,
                stack,
                "a block may use other blocks, not itself",
            )
            return UNKNOWN
        if len(stack) >= self.limits.max_call_depth:
            self.problem(f"blocks are nested more than {self.limits.max_call_depth} deep", use.span, stack)
            return UNKNOWN
        bindings = self.bind(block, use, env, stack)
        if bindings is None:
            return UNKNOWN
        return self.node(block.body, x, bindings, (*stack, Use(block.name, use.span)))

    def bind(
        self, block: BlockDef, use: Layer, env: dict[str, Value], stack: tuple[Use, ...]
    ) -> dict[str, Value] | None:
        names = [p.name for p in block.params]
        bound: dict[str, Value] = {}
        ok = True
        keys = [a.key is not None for a in use.args]
        if any(earlier and not later for earlier, later in itertools.pairwise(keys)):
            late = use.args[keys.index(True) + keys[keys.index(True) :].index(False)]
            ok = self.problem(
                f"block '{block.name}': a positional argument follows a keyword argument",
                late.span,
                stack,
                "write positional arguments first: " + _signature(block),
            )
        positional = use.positional
        if len(positional) > len(names):
            ok = self.problem(
                f"block '{block.name}' takes {len(names)} argument(s), got {len(positional)}",
                positional[len(names)].span,
                stack,
                _signature(block),
            )
        for name, arg in zip(names, positional, strict=False):
            value = self.value(arg.value, env, stack)
            ok = ok and value is not None
            bound[name] = value  # type: ignore[assignment]
        for arg in use.keywords:
            assert arg.key is not None
            if arg.key not in names:
                ok = self.problem(
                    f"block '{block.name}' has no parameter '{arg.key}'",
                    arg.span,
                    stack,
                    did_you_mean(arg.key, names) or _signature(block),
                )
            elif arg.key in bound:
                ok = self.problem(f"parameter '{arg.key}' is given twice", arg.span, stack)
            else:
                value = self.value(arg.value, env, stack)
                ok = ok and value is not None
                bound[arg.key] = value  # type: ignore[assignment]
        for param in block.params:
            if param.name not in bound:
                if param.default is None:
                    ok = self.problem(
                        f"block '{block.name}' needs its parameter '{param.name}'", use.span, stack, _signature(block)
                    )
                else:
                    bound[param.name] = param.default
        return bound if ok else None

    # ---- values -----------------------------------------------------------------------------

    def count(self, node: Repeat, env: dict[str, Value], stack: tuple[Use, ...]) -> int:
        value = self.value(node.count, env, stack)
        span = node.count_span or node.span
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(f"a repetition count must be an integer, got {value!r}", span, stack)
            return 0
        if isinstance(node.count, int) and value < 1:
            self.problem(f"a repetition count must be at least 1, got {value}", span, stack)
            return 0
        if value < 0:
            self.problem(f"a repetition count must not be negative, got {value}", span, stack)
            return 0
        if value > self.limits.max_layers:
            raise TooBig
        return value

    def value(self, value: Value, env: dict[str, Value], stack: tuple[Use, ...]) -> Value | None:
        """The value with parameters substituted, or None after reporting why it has none."""
        if isinstance(value, Word):
            return env.get(value, value)  # a bare word naming a parameter is that parameter: s=s
        if isinstance(value, tuple):
            items = tuple(self.value(v, env, stack) for v in value)
            return None if None in items else items  # type: ignore[return-value]
        if isinstance(value, Ref | BinOp | Call):
            return self.expr(value, env, stack)
        return value

    def expr(self, expr: Expr, env: dict[str, Value], stack: tuple[Use, ...]) -> Value | None:
        if isinstance(expr, int):
            return expr
        if isinstance(expr, Ref):
            if expr.name not in env:
                hint = did_you_mean(expr.name, env) or (
                    "block parameters: " + ", ".join(env)
                    if env
                    else "parameters exist only inside a block: let name(f) = conv{f}"
                )
                self.problem(f"'{expr.name}' is not a parameter here", expr.span, stack, hint)
                return None
            return env[expr.name]
        if isinstance(expr, Call):
            return self.call_function(expr, env, stack)
        left, right = self.expr(expr.left, env, stack), self.expr(expr.right, env, stack)
        if left is None or right is None:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right)):
            self.problem(f"arithmetic needs integers, got {left!r} {expr.op} {right!r}", expr.span, stack)
            return None
        assert isinstance(left, int) and isinstance(right, int)
        if expr.op == "//" and right == 0:
            self.problem("division by zero", expr.span, stack)
            return None
        result = {"+": left + right, "-": left - right, "*": left * right, "//": left // right if right else 0}[expr.op]
        if abs(result) > 10**12:
            self.problem(f"{result} is too large a number", expr.span, stack)
            return None
        return result

    def call_function(self, call: Call, env: dict[str, Value], stack: tuple[Use, ...]) -> Value | None:
        """``w(32)``, ``d(3)``, ``max(a, b)``, ``min(a, b)`` on integers, at the spec's scale."""
        arity = FUNCTIONS.get(call.func)
        if arity is None or len(call.args) != arity:
            hint = "w(width) and d(count) scale; max(a, b) and min(a, b)"
            self.problem(f"no function {call.func}() of {len(call.args)} argument(s) here", call.span, stack, hint)
            return None
        values = [self.expr(a, env, stack) for a in call.args]
        if any(v is None for v in values):
            return None
        numbers = tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool))
        if len(numbers) != len(values):
            self.problem(f"{call.func}() needs integers, got {', '.join(map(repr, values))}", call.span, stack)
            return None
        result = self.scaling.call(call.func, numbers)
        if call.func == "w":  # (moved for the group counts consuming it: --round-for-groups)
            plain, result = result, self.moved.get(call.span, result)
            self.widths[call.span] = (numbers[0], plain, result)
        if abs(result) > 10**12:
            self.problem(f"{result} is too large a number", call.span, stack)
            return None
        return result

    def problem(self, message: str, span: Span, stack: tuple[Use, ...], hint: str | None = None) -> bool:
        if self.quiet:
            return False
        home = self.homes.get(stack[-1].block) if stack else None
        if home is not None:  # inside a used file: shown there
            self.report(message + context(stack, span), span, hint, (), elsewhere=home)
        else:  # inside a composite or --set's text: shown where it is used
            shown = self.where(span, stack)[0]
            self.report(message + context(stack, span), shown, hint, notes(stack, shown))
        return False


def enclosing(stack: tuple[Use, ...], span: Span) -> tuple[Use, ...]:
    """The block uses around a problem, less a use standing exactly where it is reported (norm → gn)."""
    uses = list(stack)
    while uses and uses[-1].span == span:
        uses.pop()
    return tuple(uses)


def context(stack: tuple[Use, ...], span: Span, *, with_use: bool = True) -> str:
    """`` in block 'b' used at 7:1`` for a problem inside a block ('' at the top level)."""
    uses = enclosing(stack, span)
    if not uses:
        return ""
    use = uses[-1]
    return f" in block '{use.block}'" + (f" used at {use.span.line}:{use.span.column}" if with_use else "")


def notes(stack: tuple[Use, ...], span: Span) -> tuple[tuple[str, Span], ...]:
    return tuple((f"block '{use.block}' is used here", use.span) for use in reversed(enclosing(stack, span)))


def merge_of(node: Residual) -> Merge:
    """The join of a res(...) or gate(...), its operands in the order written (first=body)."""
    if node.gate:
        return Merge.GATE_BODY_FIRST if node.body_first else Merge.GATE
    return Merge.RES_BODY_FIRST if node.body_first else Merge.RES


def is_identity(layer: Layer) -> bool:
    """``id``: the input itself (a branch of cat or res that is no layer), unless a block is named so."""
    return layer.kind == IDENTITY and layer.width is None and not layer.args


def block_used(blocks: dict[str, BlockDef], layer: Layer) -> BlockDef | None:
    """The block a layer uses, if it names one: b(8), or b60 (a name ending in digits, not a width)."""
    if layer.width is None:
        return blocks.get(layer.kind)
    return blocks.get(f"{layer.kind}{layer.width}") if isinstance(layer.width, int) else None


_CONSTANT = frozenset({int, float, bool, str})  # values that are themselves (a Word may name a parameter)


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _signature(block: BlockDef) -> str:
    params = ", ".join(p.name if p.default is None else f"{p.name}={p.default!r}" for p in block.params)
    return f"{block.name}({params})"

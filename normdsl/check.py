"""Spec → Network: block and repetition expansion (graph.py), argument validation, shape and
parameter inference, warnings.

Every figure equals what Keras computes for the same model; every problem found becomes a
diagnostic, and all of them are raised together.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypedDict, assert_never

from normdsl import plugins, scaling
from normdsl.ast import (
    Arg,
    BinOp,
    BlockDef,
    Call,
    Concat,
    Layer,
    Node,
    Ref,
    Repeat,
    Residual,
    ScaleDecl,
    Spec,
    Value,
    Word,
)
from normdsl.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from normdsl.graph import MODEL_INPUT, Expander, Instance, Use, context, notes
from normdsl.hints import layer_hint
from normdsl.layers import (
    ACTIVATIONS,
    COMPOSITES,
    KINDS,
    MERGES,
    Figures,
    KerasCall,
    Problem,
    Shape,
    keras_call,
    split_problem,
)
from normdsl.limits import DEFAULT_LIMITS, Limits
from normdsl.network import NORM, NetLayer, Network, flag
from normdsl.parser import parse
from normdsl.resolve import resolve
from normdsl.scaling import Moved, Scaling, nearest_multiple
from normdsl.util import paused_gc

if TYPE_CHECKING:
    from normdsl.modules import Home

DEFAULT_INPUT: Shape = (224, 224, 3)  # the seed notebook's shape


def check(
    spec: Spec | str,
    *,
    input_shape: Shape | None = None,
    norm: str | None = None,
    replace: Mapping[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    scale: str | None = None,
    width: float | None = None,
    depth: float | None = None,
    round_for_groups: bool = False,
) -> Network:
    """Check a spec (or spec text) and infer every layer's figures; raise SpecError with all problems.

    ``replace`` replaces parameterless blocks everywhere by other layers (``{"norm": "gn(32)"}``, the
    CLI's ``--set norm=gn(32)``); ``norm="gn(32)"`` is the shorthand for the ``norm`` placeholder.
    ``scale`` picks one of the spec's named scales (``scaling b1(...)``); ``width`` and ``depth``
    override the multipliers that ``w()`` and ``d()`` use. ``round_for_groups`` moves a scaled
    width that a group normalization or grouped convolution cannot split to the nearest width every
    consumer accepts (``Network.scaling.moved`` says which and why).
    """
    if not isinstance(limits, Limits):
        raise TypeError(f"check(limits=...) must be a normdsl.Limits, got {type(limits).__name__}")
    if isinstance(spec, str):
        spec = parse(spec, limits=limits)
    if not isinstance(spec, Spec):
        raise TypeError(f"check(spec=...) must be a Spec or spec text, got {type(spec).__name__}")
    replacements = _replacements(norm, replace)
    if input_shape is not None:
        input_shape = _input_shape(input_shape, limits)
    overrides = _scale_overrides(scale, width, depth)
    moved: tuple[Moved, ...] = ()
    with paused_gc():
        try:
            for _ in range(_REGROUP_ROUNDS):  # a moved width may meet another consumer: at most a few rounds
                try:
                    return _Checker(spec, limits).run(input_shape, replacements, overrides, moved, round_for_groups)
                except _Regroup as again:
                    moved = again.moved
            return _Checker(spec, limits).run(input_shape, replacements, overrides, moved)
        except RecursionError:  # a safety net: every walk is bounded by the limits
            message = "the spec is nested too deeply to check"
            raise SpecError(
                [Diagnostic("error", message, _whole(spec), "flatten it")], spec.source, spec.filename
            ) from None


class Options(TypedDict, total=False):
    """check()'s options, which render() and build_model() pass on for a spec or its text."""

    input_shape: Shape | None
    norm: str | None
    replace: Mapping[str, str] | None
    limits: Limits
    scale: str | None
    width: float | None
    depth: float | None
    round_for_groups: bool


def _input_shape(shape: object, limits: Limits) -> Shape:
    """The API's ``input_shape``: one or more positive integers (no bools), each within the limit."""
    if not isinstance(shape, tuple | list) or not shape:
        raise TypeError(f"check(input_shape=...) must be a tuple of positive integers, got {shape!r:.80}")
    for n in shape:
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"check(input_shape=...) must hold integers, got {shape!r:.80}")
        if not 1 <= n <= limits.max_dim:
            raise ValueError(f"input_shape must hold integers from 1 to {limits.max_dim:,}, got {shape!r:.80}")
    return tuple(shape)


class _Checker:
    def __init__(self, spec: Spec, limits: Limits):
        self.spec, self.limits = spec, limits
        self.diagnostics: list[Diagnostic] = []
        self.resolved: dict[tuple[object, ...], KerasCall] = {}
        # (id(call), input shapes) → (call, figures, whether a dimension is above the limit)
        self.inferred: dict[tuple[int, tuple[Shape, ...]], tuple[KerasCall, Figures, bool]] = {}
        self.stacks: dict[int, tuple[tuple[Use, ...], tuple[str, ...], tuple[Span, ...]]] = {}
        self.block_names: list[str] = []
        self.reported: set[tuple[Span, str, tuple[str, str] | None]] = set()
        self.warned: set[Diagnostic] = set()
        # group-norm divisibility problems, gathered per site: (instance, groups) → channel counts
        self.splits: dict[tuple[Span, str, str, int], tuple[Instance, list[int]]] = {}

    def error(
        self,
        message: str,
        span: Span,
        hint: str | None = None,
        notes: tuple[tuple[str, Span], ...] = (),
        key: str = "",
        elsewhere: tuple[str, str] | None = None,
    ) -> None:
        """Report an error once per site and problem (``key``: the message less where its block was used)."""
        if (span, key or message, elsewhere) not in self.reported:
            self.reported.add((span, key or message, elsewhere))
            self.diagnostics.append(Diagnostic("error", message, span, hint, notes, elsewhere))

    def at(
        self,
        inst: Instance,
        span: Span,
        before: str,
        after: str = "",
        hint: str | None = None,
        *,
        written: bool = False,
    ) -> None:
        """Report ``before`` + where the instance's block is used + ``after``; with ``written``, ``span``
        is in the text the instance is written in (its own, for a layer given by --norm/--set)."""
        message = before + context(inst.stack, span) + after
        key = before + context(inst.stack, span, with_use=False) + after
        replaced = inst.stack[-1].block if written and inst.written and inst.stack else None
        if replaced in self.replacements:  # a problem of --norm's text: shown there, once
            assert replaced is not None
            self.error(before + after, span, hint, (), key, (flag(replaced), self.replacements[replaced]))
            return
        home = self.homes.get(inst.stack[-1].block) if inst.written and inst.stack else None
        if home is not None:  # written in a used file: shown there
            self.error(message, span if written else inst.written or span, hint, (), key, home)
            return
        if written and inst.written:  # a composite's text is not the user's: show where it is used
            span = inst.span
        shown = self.expander.where(span, inst.stack)[0]  # inside a composite or --set's text: its use
        self.error(message, shown, hint, notes(inst.stack, shown), key)

    def warn(
        self, message: str, span: Span, hint: str | None = None, *, elsewhere: tuple[str, str] | None = None
    ) -> None:
        diagnostic = Diagnostic("warning", message, span, hint, elsewhere=elsewhere)
        if diagnostic not in self.warned:
            self.warned.add(diagnostic)
            self.diagnostics.append(diagnostic)

    def failed(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def fail(self) -> SpecError:
        ordered = sorted(self.diagnostics, key=lambda d: (d.span.start, d.severity))
        return SpecError(ordered, self.spec.source, self.spec.filename)

    def run(
        self,
        input_shape: Shape | None,
        replacements: dict[str, str],
        overrides: dict[str, object] | None = None,
        moved: tuple[Moved, ...] = (),
        regroup: bool = False,
    ) -> Network:
        self.replacements = replacements
        self.used: dict[str, tuple[BlockDef, Home]] = {}  # the blocks of the files the spec uses
        if self.spec.uses:  # (modules, and pathlib with it, only then: each costs a check's start milliseconds)
            from normdsl import modules

            loaded = modules.load(self.spec, self.limits)
            self.used = loaded.blocks
            self.diagnostics += loaded.diagnostics
        self.scaling = dataclasses.replace(self.scale(dict(overrides or {})), moved=moved)
        if input_shape is None and self.scaling.input is not None:  # the scale's resolution (EfficientNet B1: 240)
            channels = self.spec.input.shape[-1] if self.spec.input is not None else DEFAULT_INPUT[-1]
            input_shape = (self.scaling.input, self.scaling.input, channels)
        shape = self.input(input_shape)
        blocks = self.blocks(replacements)
        self.block_names = list(blocks)
        if self.failed():
            raise self.fail()
        composites = {name: block for name, block in _composites().items() if name not in blocks}
        sources = replacements | {name: COMPOSITES[name].definition for name in composites}
        sources |= {name: text for name, (_, text) in self.homes.items() if name not in replacements}
        self.expander = expander = Expander(
            self.spec, blocks, sources, self.limits, self.error, composites, self.homes, self.scaling
        )
        instances = expander.run()
        if expander.too_big:
            raise self.fail()
        used: set[str] = set()
        stack: tuple[Use, ...] | None = None
        for inst in instances:  # (instances of one block use share its stack: each looked at once)
            if inst.stack is not stack:
                stack = inst.stack
                used.update(use.block for use in stack)
        for name in sorted(replacements.keys() - used):
            text, option = replacements[name], flag(name)
            hint: str | None
            if name == NORM:
                hint = "write norm where a normalization goes, and declare its default: norm = bn"
                message = "the spec has no norm placeholder: the norm given changes nothing"
            else:
                message = f"the spec uses no block '{name}': {option} changes nothing"
                hint = did_you_mean(name, [b.name for b in self.spec.blocks])
            whole = Span.at(text, 0, len(text.split("\n", 1)[0]))
            self.warn(message, whole, hint, elsewhere=(option, text))
        net, output = self.infer_all(instances, shape)
        del instances  # freed here, before the network is put together
        if regroup and self.splits and (again := self.regroup()) is not None:
            raise _Regroup(again)
        self.check_names(net)
        if not self.failed():
            self.warnings(net)
        if self.failed():
            raise self.fail()
        return Network(
            name=_model_name(self.spec.filename),
            filename=self.spec.filename,
            source=self.spec.source,
            input_shape=self.input_shape,
            layers=tuple(net),
            warnings=tuple(self.diagnostics),
            spec=dataclasses.replace(self.spec, blocks=tuple(blocks.values())),
            output=output,
            replaced=tuple(replacements.items()),
            homes=tuple((name, *home) for name, home in self.homes.items() if name in used),
            scaling=self.scaling,
            composites=tuple(composites[name] for name in sorted(self.blocks_in(net) & composites.keys())),
        )

    def blocks_in(self, net: list[NetLayer]) -> set[str]:
        """The blocks the layers sit in (the layers of one block use share a tuple: each looked at once)."""
        found: set[str] = set()
        blocks: tuple[str, ...] = ()
        for layer in net:
            if layer.blocks is not blocks:
                blocks = layer.blocks
                found.update(blocks)
        return found

    def scale(self, overrides: dict[str, object]) -> Scaling:
        """The scaling in use: the spec's defaults, then the named scale chosen, then ``overrides``."""
        named: dict[str, ScaleDecl] = {}
        defaults = [d for d in self.spec.scalings if d.name is None]
        for extra in defaults[1:]:
            self.error("scaling(...) is given twice", extra.span, "keep one; name the others: scaling b1(...)")
        for decl in self.spec.scalings:
            if decl.name is not None and decl.name in named:
                self.error(f"scale '{decl.name}' is defined twice", decl.span, "rename one of them")
            elif decl.name is not None:
                named[decl.name] = decl
            for arg in decl.args:
                why: str | None = "give each setting by name: scaling(width=1.0)"
                if arg.key is not None:
                    why = scaling.problem(arg.key, _setting(arg.value))
                if why is not None:
                    self.error(why, arg.span)
        chosen = overrides.pop("name", None)
        if chosen is not None and chosen not in named:
            listed = ", ".join(named) or "none (declare them: scaling b1(width=1.1))"
            raise ScaleError(f"scale {chosen!r}: the spec's scales are {listed}")
        settings: dict[str, object] = {}
        for decl in [*defaults[:1], *([named[chosen]] if isinstance(chosen, str) else [])]:
            settings.update({a.key: _setting(a.value) for a in decl.args if a.key})
        settings.update(overrides)
        return scaling.make(settings, chosen if isinstance(chosen, str) else None)

    def input(self, override: Shape | None) -> Shape | None:
        decl = self.spec.input
        for extra in self.spec.inputs[1:]:
            self.error("the input shape is given twice", extra.span, "keep one input(...) statement")
        first_layer = min((node.span.start for node in self.spec.body), default=None)
        if decl is not None and first_layer is not None and decl.span.start > first_layer:
            self.error("input(...) must come before the first layer", decl.span, "move it to the top of the spec")
        shape = tuple(override) if override is not None else decl.shape if decl else DEFAULT_INPUT
        if not shape or any(not isinstance(n, int) or not 1 <= n <= self.limits.max_dim for n in shape):
            assert decl is not None  # check() validated an override, and the default is valid
            hint = f"e.g. input(224, 224, 3) or input(784); each dimension at most {self.limits.max_dim:,}"
            self.error(
                f"input dimensions must be from 1 to {self.limits.max_dim:,}, got {_shown(shape)}", decl.span, hint
            )
            return None
        self.input_shape: Shape = shape
        return shape

    def blocks(self, replacements: dict[str, str]) -> dict[str, BlockDef]:
        """The spec's blocks by name (validated), with the replacements made (--set, --norm)."""
        blocks: dict[str, BlockDef] = {}
        homes: dict[str, Home | None] = {}
        own = [(block, None) for block in self.spec.blocks]
        for block, home in [*own, *self.used.values()]:
            where = None if home is None else (home.filename, home.source)
            if block.name in KINDS:
                hint = f"rename the block, e.g. my_{block.name}"
                message = f"'{block.name}' is a layer of the language; a block cannot redefine it"
                self.error(message, block.name_span, hint, elsewhere=where)
            elif block.name in blocks and homes[block.name] is None and home is not None:
                other = blocks[block.name].name_span
                message = f"block '{block.name}' is defined in {home.filename} and in {self.spec.filename}:{other.line}:{other.column}"
                self.error(message, block.name_span, "rename one of them", elsewhere=where)
            elif block.name in blocks:
                self.error(f"block '{block.name}' is defined twice", block.name_span, "rename one of them")
            names = [p.name for p in block.params]
            for param in block.params:
                if names.count(param.name) > 1:
                    message = f"parameter '{param.name}' appears twice in block '{block.name}'"
                    self.error(message, param.span, elsewhere=where)
                if param.name in _VALUE_WORDS and param.name in _words(block.body):
                    message = f"parameter '{param.name}' of block '{block.name}' hides the word {param.name}: in the body, {param.name} means the parameter"
                    self.warn(message, param.span, f"rename the parameter, e.g. {param.name}_", elsewhere=where)
                if param.default is not None and _symbolic(param.default):
                    hint = f"write a value ({param.name}=4), and compute in the body: conv{{2*{param.name}}}"
                    message = f"the default of parameter '{param.name}' must be a value"
                    self.error(message, param.span, hint, elsewhere=where)
            for call in _parameter_calls(block.body):
                hint = f"pass the scaled value in where the block is used: {block.name}({{{call.func}(32)}})"
                message = f"{call.func}() of a block parameter: scaling functions take values known where the model is laid out"
                self.error(message, call.span, hint, elsewhere=where)
            defaults = [p.default is not None for p in block.params]
            if any(earlier and not later for earlier, later in itertools.pairwise(defaults)):
                first = block.params[defaults.index(True)]
                hint = f"put the parameters with defaults last: let {block.name}(f, s=1) = ..."
                message = f"block '{block.name}': a parameter without a default follows '{first.name}', which has one"
                self.error(message, block.name_span, hint, elsewhere=where)
            blocks.setdefault(block.name, block)
            homes.setdefault(block.name, home)
        self.homes = {name: (home.filename, home.source) for name, home in homes.items() if home is not None}
        for name, text in replacements.items():
            option, whole = flag(name), Span.at(text, 0, len(text))
            if name in KINDS:
                raise ValueError(f"{option}: '{name}' is a layer of the language, not a block; --set replaces blocks")
            override = parse(text, filename=option, limits=self.limits)
            if override.inputs or override.blocks or not override.body:
                message = f"{option} takes layers, e.g. gn(32) or bn(eps=1e-5)"
                raise SpecError([Diagnostic("error", message, whole)], text, option)
            body = override.body[0] if len(override.body) == 1 else Repeat(override.body, 1, whole)
            old = blocks.get(name)
            if old is not None and old.params:
                self.error(f"a block with parameters cannot be replaced by {option}", old.name_span)
            blocks[name] = BlockDef(name, (), body, whole, whole)
        return blocks

    def infer_all(self, instances: list[Instance], shape: Shape | None) -> tuple[list[NetLayer], int]:
        """Resolve and infer every instance (consuming the list); return the network's layers and the
        output layer's index."""
        net: list[NetLayer] = []
        output = self.infer_list(instances, None if shape is None else -1, net)
        self.report_splits()
        return net, -1 if output is None else output

    def infer_list(self, instances: list[Instance], given: int | None, net: list[NetLayer]) -> int | None:
        """Infer ``instances`` (inputs by index in the list; MODEL_INPUT is the layer ``given``, -1 the
        model's input, None unknown) into ``net``; return the last one's layer index (None when unknown).
        Composites expand here. The list is consumed: each instance is let go once inferred."""
        known: list[int | None] = []  # by instance: its layer's index in net (-1: the model's input)
        composites = self.expander.composites
        instances.reverse()
        while instances:
            inst = instances.pop()
            known.append(None)
            if inst.merge is None and inst.kind in composites:
                x = self.known(inst.inputs[0], known, given)
                if x is not None:
                    inner = self.expander.composite(inst, self.shape(x, net)[-1])
                    known[-1] = self.infer_list(inner, x, net) if inner else None
                continue
            call = self.resolve(inst)
            if call is None:
                continue
            if len(inst.inputs) == 1:  # (most layers: self.known and self.shape written out, no tuple but the key)
                j = inst.inputs[0]
                x = known[j] if j >= 0 else given if j == MODEL_INPUT else None
                if x is None:
                    continue  # an input's shape is unknown: the arguments were checked, the shapes cannot be
                shapes: tuple[Shape, ...] = (net[x].output_shape if x >= 0 else self.input_shape,)
                inputs: tuple[int, ...] = inst.inputs if x == j else (x,)
            else:
                found = [self.known(j, known, given) for j in inst.inputs]
                if None in found:
                    continue
                inputs = tuple(found)  # type: ignore[arg-type]
                shapes = tuple(self.shape(j, net) for j in inputs)
                if inputs == inst.inputs:
                    inputs = inst.inputs  # (the same numbers: one tuple for both)
            layer = self.infer(inst, call, shapes, inputs)
            if layer is not None:
                known[-1] = len(net)
                net.append(layer)
        return known[-1] if known else None

    @staticmethod
    def known(j: int, known: list[int | None], given: int | None) -> int | None:
        """The layer index of instance ``j``'s output (-1: the model's input; None: unknown)."""
        return known[j] if j >= 0 else given if j == MODEL_INPUT else None

    def shape(self, index: int, net: list[NetLayer]) -> Shape:
        """The output shape of layer ``index`` (-1: the model's input)."""
        return net[index].output_shape if index >= 0 else self.input_shape

    def report_splits(self) -> None:
        """Group norms that cannot split their channels: one error per site, and one for all the
        sites of one decision made outside the spec (--norm "gn(48)" in every norm of a ResNet)."""
        decisions: dict[tuple[str, str, int], list[tuple[Span, Instance, list[int]]]] = {}
        for (span, text, _, groups), (inst, channels) in self.splits.items():
            replaced = next((use.block for use in inst.stack if use.block in self.replacements), None)
            if replaced is not None:
                decisions.setdefault((replaced, text, groups), []).append((span, inst, channels))
                continue
            self.report_split(span, inst, text, channels, groups)
        for (name, text, groups), sites in decisions.items():
            if len(sites) == 1:
                span, inst, channels = sites[0]
                self.report_split(span, inst, text, channels, groups)
                continue
            counts = [n for _, _, channels in sites for n in channels]
            problem = split_problem(counts, groups)
            problem.hint = (problem.hint or "") + "".join(self.scaled(c, groups) for c in sorted(set(counts)))
            spans = sorted({span for span, _, _ in sites}, key=lambda s: s.start)
            places = ", ".join(f"{s.line}:{s.column}" for s in spans)
            message = f"{flag(name)} {text}: {problem.message}, at {len(spans)} uses of {name} ({places})"
            self.error(message, spans[0], problem.hint)

    def regroup(self) -> tuple[Moved, ...] | None:
        """Scaled widths moved to the nearest multiple of the divisor and of every group count that
        fails on them (a width is found by its value among the w() calls); None if nothing moves."""
        found = {m.span: m for m in self.scaling.moved}
        for (_, text, _, groups), (_, channels) in self.splits.items():
            for span, (argument, plain, used) in self.expander.widths.items():
                if used not in channels:
                    continue
                old = found.get(span)
                consumers = (*old.consumers, text) if old and text not in old.consumers else (text,)
                counts = tuple(sorted({*(old.groups if old else ()), groups}))
                step = math.lcm(self.scaling.divisor, *counts)
                target = nearest_multiple(plain, step)
                found[span] = Moved(
                    span, argument, self.scaling.width, plain, target, self.scaling.divisor, consumers, counts
                )
        moved = tuple(sorted(found.values(), key=lambda m: m.span.start))
        return moved if moved != self.scaling.moved else None

    def scaled(self, channels: int, groups: int) -> str:
        """What a failing group count has to do with scaling: the w() call that made the width, if one did."""
        for span, (argument, plain, used) in self.expander.widths.items():
            if used == channels:
                target = nearest_multiple(plain, math.lcm(self.scaling.divisor, groups))
                return (
                    f"; {channels} is w({argument}) at {span.line}:{span.column} ({self.scaling.describe()});"
                    f" --round-for-groups would make it {target}"
                )
        return ""

    def report_split(self, span: Span, inst: Instance, text: str, channels: list[int], groups: int) -> None:
        problem = split_problem(channels, groups)
        problem.hint = (problem.hint or "") + "".join(self.scaled(c, groups) for c in sorted(set(channels)))
        if len(set(channels)) == 1:
            self.at(inst, span, text, f": {problem.message}", problem.hint)
        else:  # one site, many uses: name the block, not one of its uses
            where = context(inst.stack, span, with_use=False)
            self.error(f"{text}{where}: {problem.message}", span, problem.hint, notes(inst.stack, span))

    def resolve(self, inst: Instance) -> KerasCall | None:
        """Validate an instance's kind, width and arguments into a Keras call (or report and return None)."""
        if inst.merge is not None:
            merge = ("merge", inst.merge)
            if merge not in self.resolved:
                self.resolved[merge] = keras_call(MERGES[inst.merge], {}, None)
            return self.resolved[merge]
        # A valid call depends only on the values; an invalid one is resolved again at each site,
        # so that every site reports its problem.
        key = (inst.kind, inst.width, _args_key(inst.args) if inst.args else ())
        call = self.resolved.get(key)
        if call is None:
            call = self._resolve(inst)
            if call is not None:
                self.resolved[key] = call
        return call

    def _resolve(self, inst: Instance) -> KerasCall | None:
        kind = plugins.kind(inst.kind)
        if kind is None:
            hint = layer_hint(inst.kind, [*KINDS, *COMPOSITES, *self.block_names]) or "layers: " + ", ".join(KINDS)
            if inst.kind == NORM:
                hint = "declare the default normalization, e.g. norm = bn, or pass --norm gn(32)"
            self.at(inst, _name_span(inst), f"unknown layer '{inst.kind}'", "", hint, written=True)
            return None
        span = inst.written or inst.span
        call, issues = resolve(
            kind, inst.width, inst.args, span=span, name_span=_name_span(inst), max_width=self.limits.max_width
        )
        for issue in issues:
            self.at(inst, issue.span, issue.message, "", issue.hint, written=True)
        return call

    def infer(
        self, inst: Instance, call: KerasCall, shapes: tuple[Shape, ...], inputs: tuple[int, ...]
    ) -> NetLayer | None:
        found = self.inferred.get((id(call), shapes))
        if found is None:
            try:
                found = self.figures(call, shapes)
            except Problem as problem:
                text = inst.text if inst.round is None else f"{inst.text} ({inst.round})"
                self.at(inst, inst.span, text, f": {problem.message}", problem.hint)
                return None
        _, figures, too_big = found
        if too_big:
            message = f": its output {_shown(figures.shape)} has a dimension above the limit of {self.limits.max_dim:,}"
            self.at(inst, inst.span, inst.text, message)
            return None
        for issue in figures.problems:
            if issue.split is None:
                self.at(inst, inst.span, inst.text, f": {issue.message}", issue.hint)
                continue
            channels, groups = issue.split
            site = (inst.span, inst.text, context(inst.stack, inst.span, with_use=False), groups)
            self.splits.setdefault(site, (inst, []))[1].append(channels)
        if inst.stack:
            blocks, uses = self.blocks_of(inst.stack)
        else:
            blocks = uses = ()
        kind = call.kind
        return NetLayer(  # (positionally: a tenth of the checker's time on a large spec goes into making these)
            kind.name,
            kind.keras_class,
            kind.module,
            call.args,
            call.kwargs,
            inputs,
            shapes[0],  # input_shape
            figures.shape,
            figures.trainable,
            figures.non_trainable,
            figures.macs,
            inst.span,
            inst.text,
            blocks,
            uses,
            inst.written,
        )

    def blocks_of(self, stack: tuple[Use, ...]) -> tuple[tuple[str, ...], tuple[Span, ...]]:
        """The blocks of a stack of uses and where each is used, made once per stack (and shared by
        its layers; the stack is kept with them: its id stays its own)."""
        found = self.stacks.get(id(stack))
        if found is None:
            found = self.stacks[id(stack)] = (stack, tuple(u.block for u in stack), tuple(u.span for u in stack))
        return found[1], found[2]

    def figures(self, call: KerasCall, shapes: tuple[Shape, ...]) -> tuple[KerasCall, Figures, bool]:
        """A call's figures for its input shapes, computed once per distinct call and shapes (the call is
        kept with them: its id stays its own), and whether a dimension of its output is above the limit."""
        key = (id(call), shapes)
        found = self.inferred.get(key)
        if found is None:
            figures = call.kind.rule(shapes, call.config)
            found = self.inferred[key] = (call, figures, max(figures.shape, default=0) > self.limits.max_dim)
        return found

    def allowed(self, layer: NetLayer, what: str) -> bool:
        """Whether a pragma allows ``what`` at the layer: in the spec, or in the used file it is written in."""
        home = self.homes.get(layer.blocks[-1]) if layer.blocks and layer.written else None
        if home is not None and layer.written is not None and _allowed(home[1], layer.written, what):
            return True
        return _allowed(self.spec.source, layer.span, what)

    def check_names(self, net: list[NetLayer]) -> None:
        spans: dict[str, list[Span]] = {}
        names: dict[int, object] = {}  # the name in each distinct kwargs tuple (alive in net: ids stay theirs)
        for layer in net:
            key = id(layer.kwargs)
            if key not in names:
                names[key] = dict(layer.kwargs).get("name")
            name = names[key]
            if isinstance(name, str):
                spans.setdefault(name, []).append(layer.span)
        for name, where in spans.items():
            if name in KERAS_NAMES:
                hint = f"Keras names the model's input {name!r}; choose another name"
                self.error(f"layer name {name!r} is taken by Keras", where[0], hint)
            elif (auto := _auto_name().fullmatch(name)) is not None:
                hint = f"Keras names unnamed layers {auto[1]}, {auto[1]}_1, ...; choose another name"
                self.error(f"layer name {name!r} may be taken by Keras", where[0], hint)
            elif len(where) > 1:
                message = f"layer name {name!r} is used {len(where)} times; Keras needs unique names"
                self.error(
                    message, where[0], "drop name= inside repetitions and blocks, or give each layer its own name"
                )

    def warnings(self, net: list[NetLayer]) -> None:
        norms = {name for name, kind in KINDS.items() if kind.is_norm}
        total = 0
        for layer in net:
            total += layer.trainable + layer.non_trainable
            constant = _constant_output(layer)
            if constant is not None:
                self.warn(constant[0], layer.span, constant[1])
            if layer.kind in norms:
                before = [net[i] for i in layer.inputs if i >= 0]
                if len(before) == 1 and before[0].kind in norms:
                    message = f"{layer.text} directly follows another normalization ({before[0].text})"
                    self.warn(message, layer.span, "one normalization is usually enough; remove one of them")
            elif layer.kind == "dense" and len(layer.input_shape) >= 3 and not self.allowed(layer, _POINTWISE):
                self.warn(
                    f"{layer.text} receives a rank-{len(layer.input_shape)} tensor {layer.input_shape} and acts on its last axis only",
                    layer.span,
                    "for a classifier head, put flatten or gap before it; for a per-position dense, as in a"
                    f" ConvNeXt block, end the line with # normdsl: allow({_POINTWISE})",
                )
        if total > self.limits.warn_params:
            hint = f"more than the {self.limits.warn_params:,} expected of a spec"
            self.warn(f"the model has {total:,} parameters", _whole(self.spec), hint)


def _constant_output(layer: NetLayer) -> tuple[str, str] | None:
    """Why the layer outputs the same whatever its input, and a hint (None when it does not): a
    normalization whose mean and variance are over a single value outputs its offset (x - mean is 0),
    a softmax over a single value is 1 (a log_softmax 0). (It runs for every layer: the shapes and the
    class are looked at before the keyword arguments.)"""
    keras_class, shape = layer.keras_class, layer.input_shape
    if layer.output_shape[-1:] == (1,):
        kwargs = dict(layer.kwargs)
        activation = layer.args[0] if keras_class == "Activation" and layer.args else kwargs.get("activation")
        if activation in ("softmax", "log_softmax"):
            always = 1 if activation == "softmax" else 0
            hint = "for one output (a binary classifier) use sigmoid, or give the layer more units"
            return f"{layer.text}: a {activation} over one value always outputs {always}", hint
    if keras_class == "LayerNormalization" and shape[-1] == 1:
        over = "over one channel"
        hint = "a layer norm needs more than one channel: put it before the layer that narrows to one, or use bn"
    elif keras_class == "GroupNormalization" and math.prod(shape[:-1]) == 1:
        groups = dict(layer.kwargs).get("groups")
        if groups == -1:
            over = "each channel over one value"
            hint = "an instance norm needs more than one pixel: put it before the pooling, flatten or dense, or use ln"
        elif groups == shape[-1]:
            over = f"each of its {groups} groups over one value"
            hint = "use fewer groups, or put it before the pooling, flatten or dense"
        else:
            return None
    else:
        return None
    if dict(layer.kwargs).get("axis") != -1:
        return None
    return f"{layer.text} normalizes {over}: it outputs its offset (beta) whatever the input", hint


@functools.cache
def _composites() -> dict[str, BlockDef]:
    """The composite kinds' definitions, parsed (once)."""
    out = {}
    for name, composite in COMPOSITES.items():
        (block,) = parse(composite.definition, filename=name).blocks
        out[name] = block
    return out


_REGROUP_ROUNDS = 8


class _Regroup(Exception):
    """The widths to move before checking again (round_for_groups)."""

    def __init__(self, moved: tuple[Moved, ...]):
        self.moved = moved


class ScaleError(ValueError):
    """A scale the spec does not declare, or a multiplier out of range (``scale=``, ``width=``, ``depth=``)."""


def _setting(value: Value) -> object:
    """A scaling setting's value: a word (round=ceil) as its text."""
    return str(value) if isinstance(value, Word) else value


def _scale_overrides(scale: str | None, width: float | None, depth: float | None) -> dict[str, object]:
    """``scale=``, ``width=`` and ``depth=`` as overrides of the spec's scaling (TypeError/ValueError on misuse)."""
    out: dict[str, object] = {}
    if scale is not None:
        if not isinstance(scale, str):
            raise TypeError(
                f"check(scale=...) must be the name of one of the spec's scales, got {type(scale).__name__}"
            )
        out["name"] = scale
    for key, value in (("width", width), ("depth", depth)):
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"check({key}=...) must be a number, got {type(value).__name__}")
            if (why := scaling.problem(key, value)) is not None:
                raise ScaleError(f"check({key}=...): {why}")
            out[key] = float(value)
    return out


def _replacements(norm: str | None, replace: Mapping[str, str] | None) -> dict[str, str]:
    """``norm=`` and ``replace=`` as one mapping of block name → layers (TypeError/ValueError on misuse)."""
    out: dict[str, str] = {}
    if replace is not None:
        if not isinstance(replace, Mapping):
            raise TypeError(f"check(replace=...) must map block names to layers, got {type(replace).__name__}")
        out.update(replace)
    if norm is not None:
        if not isinstance(norm, str):
            raise TypeError(f"check(norm=...) must be spec text such as 'gn(32)', got {type(norm).__name__}")
        if NORM in out:
            raise ValueError("give the norm once: norm=... or replace={'norm': ...}")
        out[NORM] = norm
    for name, text in out.items():
        if not isinstance(name, str) or not name.isidentifier() or not isinstance(text, str):
            message = f"check(replace=...) maps block names to spec text such as 'gn(32)', got {name!r}: {text!r:.60}"
            raise TypeError(message)
    return out


# Words that mean something as argument values (pad=same, act=relu, interp=nearest).
_VALUE_WORDS = frozenset(c for k in KINDS.values() for p in k.params for c in p.choices) | frozenset(ACTIVATIONS)


def _words(node: Node) -> set[str]:
    """The bare words a block body uses as argument values."""
    match node:
        case Layer():
            found: set[str] = set()
            stack: list[object] = [a.value for a in node.args]
            while stack:
                value = stack.pop()
                if isinstance(value, Word):
                    found.add(value)
                elif isinstance(value, tuple):
                    stack.extend(value)
            return found
        case Repeat():
            return set().union(*(_words(n) for n in node.body))
        case Residual():
            return set().union(*(_words(n) for n in (*node.body, *(node.shortcut or ()))))
        case Concat():
            return set().union(*(_words(n) for branch in node.branches for n in branch))
        case _:
            assert_never(node)


_POINTWISE = "pointwise-dense"  # the pragma allowing a dense on a rank ≥ 3 tensor
_PRAGMA = re.compile(r"#\s*normdsl:\s*allow\(([a-z, -]*)\)")


_WHOLE_SPEC = re.compile(r"^[ \t]*" + _PRAGMA.pattern, re.MULTILINE)


def _allowed(source: str, span: Span, what: str) -> bool:
    """Whether the pragma ``# normdsl: allow(what)`` ends the line at ``span``, or stands on a line
    of its own (then it holds for the whole text)."""
    per_line, whole = _pragmas(source)
    return what in whole or what in per_line.get(span.line, ())


@functools.lru_cache(maxsize=8)
def _pragmas(source: str) -> tuple[dict[int, frozenset[str]], frozenset[str]]:
    """A text's pragmas, read once per text (not once per warned layer): what each line allows, and
    what lines of their own allow for the whole text."""
    per_line: dict[int, frozenset[str]] = {}
    whole: set[str] = set()
    for number, line in enumerate(source.split("\n"), 1):
        if (found := _PRAGMA.search(line)) is not None:
            allowed = frozenset(w.strip() for w in found[1].split(","))
            per_line[number] = allowed
            if _WHOLE_SPEC.match(line):
                whole |= allowed
    return per_line, frozenset(whole)


def _parameter_calls(node: Node) -> list[Call]:
    """The scaling functions in a block body whose arguments use a parameter (w(f)): the generated
    code writes scaled values as numbers, so they must be known where the model is laid out."""
    found: list[Call] = []
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        match item:
            case Layer():
                stack += [item.width, *(a.value for a in item.args)]
            case Repeat():
                stack += [*item.body, item.count]
            case Residual():
                stack += [*item.body, *(item.shortcut or ())]
            case Concat():
                stack += [n for branch in item.branches for n in branch]
            case Call() if _uses_parameter(item):
                found.append(item)
            case BinOp():
                stack += [item.left, item.right]
            case tuple():
                stack += list(item)
    return found


def _uses_parameter(expr: object) -> bool:
    match expr:
        case Ref() | Word():
            return True
        case BinOp():
            return _uses_parameter(expr.left) or _uses_parameter(expr.right)
        case Call():
            return any(_uses_parameter(a) for a in expr.args)
        case _:
            return False


def _symbolic(value: object) -> bool:
    """Whether a value holds arithmetic or a parameter's name ({f}, {2*f})."""
    return isinstance(value, Ref | BinOp | Call) or (isinstance(value, tuple) and any(_symbolic(v) for v in value))


KERAS_NAMES = frozenset({"input_layer"})  # names Keras gives layers of every functional model


def snake_case(keras_class: str) -> str:
    """The name Keras gives an unnamed layer of a class (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", keras_class)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


# conv2d, conv2d_1, re_lu_3: the names Keras makes up for unnamed layers of the classes specs use
_CLASSES = {k.keras_class for k in KINDS.values()} | {k.with_args.keras_class for k in KINDS.values() if k.with_args}
_CLASSES |= {k.keras_class for k in MERGES.values()}


@functools.cache
def _auto_name() -> re.Pattern[str]:
    """A pattern of those names (compiled on first need: a spec naming no layer never does)."""
    return re.compile("(" + "|".join(sorted(snake_case(c) for c in _CLASSES)) + r")(_[0-9]+)?")


def _shown(shape: Shape) -> str:
    """A shape for a message, huge numbers shortened."""
    return "(" + ", ".join(str(n) if n < 10**15 else f"{str(n)[:6]}…({len(str(n))} digits)" for n in shape) + ")"


def _args_key(args: tuple[Arg, ...]) -> tuple[tuple[object, ...], ...]:
    """Evaluated arguments as a key of their values: an int or a string with its type (a bare word
    is not a quoted string; True, a bool, is not 1), anything else by its repr (a float: -0.0 is not
    0.0; a tuple: (1, True) is not (1, 1))."""
    return tuple([(a.key, type(a.value), a.value) if type(a.value) in _EXACT else (a.key, repr(a.value)) for a in args])


_EXACT = frozenset({int, str, Word})


def _name_span(inst: Instance) -> Span:
    """The span of an instance's name: the first characters of its span (in the text it is written
    in), up to its arguments."""
    span = inst.written or inst.span
    n = len(inst.text.split("(", 1)[0].split("{", 1)[0])
    if span.end_line != span.line and n > span.end - span.start:
        return span
    return Span(span.line, span.column, span.line, span.column + n, span.start, span.start + n)


def _whole(spec: Spec) -> Span:
    return Span.at(spec.source, 0, len(spec.source.split("\n", 1)[0]))


def _model_name(filename: str) -> str:
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(filename))[0], flags=re.ASCII).strip("_")
    return stem if stem and not stem[0].isdigit() and filename != "<spec>" else "model"

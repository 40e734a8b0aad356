"""THE resolver: what a spec call means, decided once.

``resolve(kind, width, args)`` turns a layer kind of the registry, its width and its arguments into
a :class:`KerasCall` (the Keras class, positional and keyword arguments, every parameter's value),
or the problems that stop it. The checker calls it with concrete values and reports the problems as
diagnostics; the code generator calls it with symbolic values (``layers.Code``: a block parameter
such as ``4 * f``), which are written as they are. No other module interprets arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from normdsl.ast import Arg
from normdsl.diagnostics import Span, did_you_mean
from normdsl.layers import Code, KerasCall, LayerKind, Param, Problem, coerce, keras_call


@dataclass(frozen=True, slots=True)
class Issue:
    """Why a call cannot be resolved, where."""

    message: str
    span: Span
    hint: str | None = None


def variant(kind: LayerKind, args: Sequence[Arg]) -> LayerKind:
    """The kind a call uses: relu(max=6) is ReLU, plain relu stays Activation("relu")."""
    if kind.with_args is not None and any(a.key != "name" for a in args):
        return kind.with_args
    return kind


def resolve(
    kind: LayerKind,
    width: object,
    args: Sequence[Arg],
    *,
    span: Span,
    name_span: Span,
    max_width: int | None = None,
) -> tuple[KerasCall | None, list[Issue]]:
    """The Keras call of ``kind`` with ``width`` and ``args`` (Code values taken as they are), or
    None and every problem found (a width problem stops the rest: the call has no shape)."""
    kind = variant(kind, args)
    issues: list[Issue] = []
    positional = [a for a in args if a.key is None]
    if positional and kind.positional is None:
        issues.append(Issue(f"{kind.name} takes no positional arguments", positional[0].span, takes(kind)))
    elif len(positional) > 1:
        message = f"{kind.name} takes one positional argument ({kind.positional}), got {len(positional)}"
        issues.append(Issue(message, positional[1].span, takes(kind)))
    named: list[tuple[str, Arg]] = [(kind.positional, positional[0])] if positional and kind.positional else []
    named += [(arg.key, arg) for arg in args if arg.key is not None]
    values: dict[str, object] = {}  # by Keras keyword
    seen: set[str] = set()
    for key, arg in named:
        param = kind.params_by_key.get(key)
        if param is None:
            hint = did_you_mean(key, kind.params_by_key) or takes(kind)
            issues.append(Issue(f"{kind.name} has no argument '{key}'", arg.span, hint))
        elif key in seen:
            issues.append(Issue(f"argument '{key}' is given twice", arg.span))
        else:
            seen.add(key)
            try:
                values[param.keras] = arg.value if isinstance(arg.value, Code) else coerce(param, arg.value)
            except Problem as problem:
                issues.append(Issue(f"{kind.name}: {problem.message}", arg.span, problem.hint))
    width_issue = _width_issue(kind, width, name_span, max_width)
    if width_issue is not None:
        return None, [*issues, width_issue]
    for param in kind.params:
        if param.required and param.key not in seen:
            issues.append(
                Issue(f"{kind.name} needs its {param.keras} argument", span, f"e.g. {kind.name}({_example(param)})")
            )
    return (None if issues else keras_call(kind, values, width)), issues


def _width_issue(kind: LayerKind, width: object, name_span: Span, max_width: int | None) -> Issue | None:
    """What is wrong with the N of conv<N>, if anything."""
    if kind.width is None:
        if width is None:
            return None
        how = f"write {kind.name}({width})" if kind.positional else f"write {kind.name}"
        return Issue(f"{kind.name} takes no number after its name", name_span, how)
    if width is None:
        return Issue(f"{kind.name} needs its number of {kind.width}", name_span, f"e.g. {kind.name}64")
    if isinstance(width, int) and max_width is not None and not 1 <= width <= max_width:
        return Issue(f"{kind.name}: {kind.width} must be from 1 to {max_width:,}, got {width}", name_span)
    return None


def takes(kind: LayerKind) -> str:
    keys = ", ".join(p.key for p in kind.params)
    return f"{kind.name} takes: {keys}" if keys else f"{kind.name} takes no arguments"


def _example(param: Param) -> str:
    return {"groups": "16", "rate": "0.5"}.get(param.keras, "...")

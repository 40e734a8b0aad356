"""The registry as documentation: ``normdsl kinds`` (text and JSON) and the README's layer table,
all generated from ``layers.KINDS``, so that what is documented is what the checker accepts."""

from __future__ import annotations

import json

from normdsl import plugins
from normdsl.layers import COMPOSITES, KINDS, LayerKind, Param


def _default(param: Param) -> str:
    if param.required:
        return "required"
    if param.default is None:
        return "none"
    if isinstance(param.default, bool):
        return "true" if param.default else "false"
    return str(param.default)


def _spec_form(kind: LayerKind) -> str:
    name = kind.name + ("<N>" if kind.width else "")
    return f"{name}({kind.positional}=...)" if kind.positional else name


def _as_dict(kind: LayerKind) -> dict[str, object]:
    variant = kind.with_args
    return {
        "kind": kind.name,
        "keras_class": kind.keras_class,
        "doc": kind.doc,
        "width": kind.width,
        "positional": kind.positional,
        "normalization": kind.is_norm,
        "origin": plugins.ORIGINS.get(kind.name, "normdsl"),
        "module": kind.module or "keras.layers",
        "fixed": {str(k): v for k, v in kind.fixed if k is not None},
        "params": [
            {"key": p.key, "keras": p.keras, "allowed": p.describe(), "default": _default(p)} for p in kind.params
        ],
        "with_arguments": _as_dict(variant) if variant is not None else None,
    }


def _composite(name: str) -> dict[str, object]:
    c = COMPOSITES[name]
    return {"kind": c.name, "composite": True, "doc": c.doc, "definition": c.definition, "origin": "normdsl"}


def as_json() -> str:
    """Every kind, the installed plugins' too, then the composite kinds."""
    plugins.load()
    return json.dumps([*(_as_dict(kind) for kind in KINDS.values()), *map(_composite, COMPOSITES)], indent=2)


def as_text() -> str:
    """Every kind, the installed plugins' too (with where they come from)."""
    plugins.load()
    out = []
    for kind in KINDS.values():
        origin = (
            f"  [{plugins.ORIGINS[kind.name]}, {kind.module or 'keras.layers'}]" if kind.name in plugins.ORIGINS else ""
        )
        out.append(f"{_spec_form(kind)}  →  {kind.keras_class}: {kind.doc}{origin}")
        for variant in (kind, kind.with_args):
            if variant is None:
                continue
            if variant is kind.with_args:
                out.append(f"  with arguments  →  {variant.keras_class}")
            for p in variant.params:
                out.append(f"  {p.key:<10} {p.keras:<16} {p.describe()}; default {_default(p)}")
    for c in COMPOSITES.values():
        out.append(f"{c.name}  →  composite: {c.doc}")
        out.append(f"  {c.definition}")
        out.append("  (its first parameter is the input's channels; callers pass the others)")
    return "\n".join(out)


def markdown_table() -> str:
    """The README's layer table: one row per built-in kind, its arguments with their Keras keywords."""
    rows = ["| spec | Keras | what it is | arguments (spec → Keras; default) |", "|---|---|---|---|"]
    for kind in KINDS.values():
        if kind.name in plugins.ORIGINS:
            continue
        variants = [kind] + ([kind.with_args] if kind.with_args else [])
        args = "; ".join(
            ", ".join(f"`{p.key}` → `{p.keras}` ({_default(p)})" for p in v.params)
            + ("" if v is kind else f" (with arguments: `{v.keras_class}`)")
            for v in variants
        )
        rows.append(f"| `{_spec_form(kind)}` | `{kind.keras_class}` | {kind.doc} | {args} |")
    for c in COMPOSITES.values():
        rows.append(f"| `{c.name}` | (composite) | {c.doc} | `{c.definition}`: `c` is the input's channels |")
    return "\n".join(rows)

"""normdsl: a compact model-spec language for Keras."""

from __future__ import annotations

import json as _json
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any
from typing import Literal as _Literal

from normdsl._version import __version__
from normdsl.ast import Spec, expand
from normdsl.check import check
from normdsl.diagnostics import Diagnostic, Span, SpecError
from normdsl.diagrams import diagram
from normdsl.limits import Limits
from normdsl.network import NetLayer, Network
from normdsl.parser import parse
from normdsl.summary import callable_summary as summary

if _TYPE_CHECKING:
    from normdsl.emit_keras import build_model
    from normdsl.emit_source import render
    from normdsl.emit_torch import build_module, copy_weights
    from normdsl.fmt import format_spec as format
    from normdsl.importer import from_keras

__all__ = [
    "Diagnostic",
    "Limits",
    "NetLayer",
    "Network",
    "Span",
    "Spec",
    "SpecError",
    "__version__",
    "build_model",
    "build_module",
    "check",
    "copy_weights",
    "diagram",
    "expand",
    "format",
    "from_keras",
    "json_schema",
    "load_ipython_extension",
    "parse",
    "render",
    "summary",
]

SCHEMAS = {"spec": "spec-1.json", "summary": "summary-1.json"}  # the JSON outputs' schemas, by name


def json_schema(name: _Literal["spec", "summary"]) -> dict[str, _Any]:
    """The JSON Schema of ``parse --json`` (``Spec.to_json``: "spec") or ``summary --json`` ("summary")
    output, as shipped in the package; a document's ``"schema"`` field is its schema's ``$id``."""
    if name not in SCHEMAS:
        raise ValueError(f"json_schema() knows {', '.join(map(repr, SCHEMAS))}, got {name!r:.60}")
    from importlib import resources  # (slow to import: only here)

    text = resources.files(__name__).joinpath("schemas", SCHEMAS[name]).read_text(encoding="utf-8")
    schema: dict[str, _Any] = _json.loads(text)
    return schema


def load_ipython_extension(ipython: _Any) -> None:
    """``%load_ext normdsl``: the ``%%normdsl`` cell magic (normdsl/ipython.py; IPython is imported only here)."""
    from normdsl.ipython import register

    register(ipython)


def __getattr__(name: str) -> _Any:
    """render, build_model and format are imported on first use: checking a spec never loads jinja2, black
    or the formatter."""
    if name == "render":
        from normdsl.emit_source import render

        return render
    if name == "format":
        from normdsl.fmt import format_spec

        return format_spec
    if name == "from_keras":
        from normdsl.importer import from_keras

        return from_keras
    if name == "build_model":
        from normdsl.emit_keras import build_model

        return build_model
    if name in ("build_module", "copy_weights"):  # the PyTorch target: torch only when called
        from normdsl import emit_torch

        return getattr(emit_torch, name)
    raise AttributeError(f"module 'normdsl' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (``__all__``), as ``help()`` and completion show it."""
    return sorted(__all__)

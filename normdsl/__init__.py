"""normdsl: a compact model-spec language for Keras."""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any
from typing import Literal as _Literal

from normdsl._version import __version__

# (normdsl.check and normdsl.summary are also modules: importing one sets the package's attribute to the module
# unless the function is bound here first, so these two are not lazy.)
from normdsl.check import check
from normdsl.summary import callable_summary as summary

if _TYPE_CHECKING:
    from normdsl.ast import Spec, expand
    from normdsl.diagnostics import Diagnostic, Span, SpecError
    from normdsl.diagrams import diagram
    from normdsl.emit_keras import build_model
    from normdsl.emit_source import render
    from normdsl.emit_torch import build_module, copy_weights
    from normdsl.fmt import format_spec as format
    from normdsl.importer import from_keras
    from normdsl.limits import Limits
    from normdsl.network import NetLayer, Network
    from normdsl.parser import parse

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
    import json

    schema: dict[str, _Any] = json.loads(text)
    return schema


def load_ipython_extension(ipython: _Any) -> None:
    """``%load_ext normdsl``: the ``%%normdsl`` cell magic (normdsl/ipython.py; IPython is imported only here)."""
    from normdsl.ipython import register

    register(ipython)


# Each public name, and where it lives: imported on first use, so that `import normdsl` and the command line
# load only what they use (checking a spec never loads jinja2, black, the formatter or a framework).
_HOMES = {
    "Spec": ("normdsl.ast", "Spec"),
    "expand": ("normdsl.ast", "expand"),
    "Diagnostic": ("normdsl.diagnostics", "Diagnostic"),
    "Span": ("normdsl.diagnostics", "Span"),
    "SpecError": ("normdsl.diagnostics", "SpecError"),
    "diagram": ("normdsl.diagrams", "diagram"),
    "build_model": ("normdsl.emit_keras", "build_model"),
    "render": ("normdsl.emit_source", "render"),
    "build_module": ("normdsl.emit_torch", "build_module"),
    "copy_weights": ("normdsl.emit_torch", "copy_weights"),
    "format": ("normdsl.fmt", "format_spec"),
    "from_keras": ("normdsl.importer", "from_keras"),
    "Limits": ("normdsl.limits", "Limits"),
    "NetLayer": ("normdsl.network", "NetLayer"),
    "Network": ("normdsl.network", "Network"),
    "parse": ("normdsl.parser", "parse"),
}


def __getattr__(name: str) -> _Any:
    """A public name, imported from its module on first use (see _HOMES)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'normdsl' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _HOMES[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value  # the next use is a plain global
    return value


def __dir__() -> list[str]:
    """The public API (``__all__``), as ``help()`` and completion show it."""
    return sorted(__all__)

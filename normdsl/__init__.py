"""normdsl: a compact model-spec language for Keras."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from normdsl._version import __version__
from normdsl.ast import Spec, expand
from normdsl.check import check
from normdsl.diagnostics import Diagnostic, Span, SpecError
from normdsl.limits import Limits
from normdsl.network import NetLayer, Network
from normdsl.parser import parse

if TYPE_CHECKING:
    from normdsl.emit_keras import build_model
    from normdsl.emit_source import render

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
    "check",
    "expand",
    "parse",
    "render",
]


def __getattr__(name: str) -> Any:
    """render and build_model are imported on first use: checking a spec never loads jinja2 or black."""
    if name == "render":
        from normdsl.emit_source import render

        return render
    if name == "build_model":
        from normdsl.emit_keras import build_model

        return build_model
    raise AttributeError(f"module 'normdsl' has no attribute {name!r}")

"""normdsl: a compact model-spec language for Keras."""

__version__ = "0.1.0"

from normdsl.ast import Spec, expand
from normdsl.check import NetLayer, Network, check
from normdsl.diagnostics import Diagnostic, Span, SpecError
from normdsl.emit_keras import build_model
from normdsl.emit_source import render
from normdsl.limits import Limits
from normdsl.parser import parse

__all__ = [
    "Diagnostic",
    "Limits",
    "NetLayer",
    "Network",
    "Span",
    "Spec",
    "SpecError",
    "build_model",
    "check",
    "expand",
    "parse",
    "render",
]

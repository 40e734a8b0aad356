"""Resource bounds on a spec, configurable in the API: a spec beyond them is rejected with a
diagnostic, before anything is expanded or walked recursively."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_layers: int = 100_000  # layers after multiplying out every repetition and block use
    max_nesting: int = 64  # groups, residual/branch paths, tuples and arithmetic inside each other
    max_call_depth: int = 64  # blocks using blocks
    max_width: int = 1_000_000  # filters / units of one layer
    warn_params: int = 1_000_000_000  # a warning above this many parameters


DEFAULT_LIMITS = Limits()

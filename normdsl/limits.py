"""Resource bounds on a spec, configurable in the API: a spec beyond them is rejected with a
diagnostic, before anything is expanded or walked recursively."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Every resource bound of parsing, checking and expanding a spec."""

    max_layers: int = 100_000  # layers after multiplying out every repetition and block use (and as written)
    max_nodes: int = 500_000  # syntax nodes the parser builds (layers, arguments, numbers): bounds its work
    max_nesting: int = 64  # groups, residual/branch paths, tuples and arithmetic inside each other
    max_call_depth: int = 64  # blocks using blocks
    max_width: int = 1_000_000  # filters / units of one layer
    max_dim: int = 2**31 - 1  # any dimension of any tensor, the input's included
    warn_params: int = 1_000_000_000  # a warning above this many parameters

    def __post_init__(self) -> None:
        for name in ("max_layers", "max_nodes", "max_nesting", "max_call_depth", "max_width", "max_dim", "warn_params"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = Limits()

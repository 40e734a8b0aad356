"""Stand-in for ``matplotlib`` (see permissive.py)."""

from permissive import module_getattr

__getattr__ = module_getattr("matplotlib")

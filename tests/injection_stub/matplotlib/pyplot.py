"""Stand-in for ``matplotlib.pyplot`` (see permissive.py)."""

from permissive import module_getattr

__getattr__ = module_getattr("plt")

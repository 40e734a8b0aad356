"""Stand-in for ``keras.layers`` (see permissive.py): every layer class."""

from permissive import module_getattr

__getattr__ = module_getattr("layers")

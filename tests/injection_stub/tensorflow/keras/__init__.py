"""Stand-in for ``tensorflow.keras`` (see permissive.py): ``keras.Input``, ``keras.Model``, ``keras.callbacks``, ..."""

from permissive import module_getattr

from tensorflow.keras import layers

__all__ = ["layers"]
__getattr__ = module_getattr("keras")

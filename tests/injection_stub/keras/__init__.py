"""Stand-in for ``keras`` (Keras 3; see permissive.py): ``keras.Input``, ``keras.Model``, ``keras.callbacks``, ..."""

from permissive import module_getattr

from keras import layers

__all__ = ["layers"]
__getattr__ = module_getattr("keras")

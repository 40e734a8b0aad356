"""Stand-in for ``tensorflow`` (see permissive.py): ``tf.data``, ``tf.config``, ``tf.distribute``, ..."""

from permissive import module_getattr

from tensorflow import keras

__all__ = ["keras"]
__getattr__ = module_getattr("tf")

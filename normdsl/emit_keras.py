"""Network → keras.Model. The only module that imports TensorFlow, and only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from normdsl.ast import Spec
from normdsl.check import Network, check
from normdsl.layers import Shape

if TYPE_CHECKING:
    import keras


class TensorFlowMissing(ImportError):
    pass


def keras_module() -> Any:
    """``tensorflow.keras``, imported on first use, or a clear TensorFlowMissing."""
    try:
        from tensorflow import keras
    except ImportError as exc:
        raise TensorFlowMissing(
            f'building Keras models needs TensorFlow ({exc}); install it with: pip install "normdsl[tf]"'
        ) from None
    return keras


def build_model(spec: Spec | Network | str, *, input_shape: Shape | None = None) -> keras.Model:
    """Build the checked network as a functional ``keras.Model``, layer for layer as the generated code does."""
    network = spec if isinstance(spec, Network) else check(spec, input_shape=input_shape)
    keras = keras_module()
    inputs = keras.Input(shape=network.input_shape)
    x = inputs
    for layer in network.layers:
        x = getattr(keras.layers, layer.keras_class)(*layer.args, **dict(layer.kwargs))(x)
    return keras.Model(inputs=inputs, outputs=x, name=network.name)


def differences(model: Any, network: Network) -> list[str]:
    """Where a Keras model's layers disagree with the checker's figures (empty when they agree)."""
    found: list[str] = []
    built = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    if len(built) != len(network.layers):
        return [f"Keras has {len(built)} layers, the checker {len(network.layers)}"]
    for i, (k, ours) in enumerate(zip(built, network.layers, strict=True), 1):
        theirs = (
            type(k).__name__,
            tuple(k.output.shape[1:]),
            sum(int(w.numpy().size) for w in k.trainable_weights),
            sum(int(w.numpy().size) for w in k.non_trainable_weights),
        )
        mine = (ours.keras_class, ours.output_shape, ours.trainable, ours.non_trainable)
        if theirs != mine:
            found.append(f"layer {i} ({ours.text}): Keras {theirs} != checker {mine}")
    return found

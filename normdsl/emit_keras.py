"""Network → keras.Model. The only module that imports Keras (and with it its backend: TensorFlow,
JAX or PyTorch, as KERAS_BACKEND says), and only when called."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Unpack

from normdsl.ast import Spec
from normdsl.check import Options, check, snake_case
from normdsl.layers import KINDS
from normdsl.network import NetLayer, Network
from normdsl.target_keras import make_layer

if TYPE_CHECKING:
    import keras


class BackendMissing(ImportError):
    """Keras 3, or the backend it is configured for, is not installed."""


TensorFlowMissing = BackendMissing  # (its name when TensorFlow was the only backend)

INSTALL = (
    'pip install "normdsl[tensorflow]", "normdsl[jax]" or "normdsl[torch]" '
    "(KERAS_BACKEND=jax or KERAS_BACKEND=torch picks the other backends; TensorFlow is the default)"
)


def keras_module() -> Any:
    """``keras`` (Keras 3 on the backend KERAS_BACKEND names), imported on first use, or a clear BackendMissing."""
    try:
        import keras
    except ImportError as exc:
        raise BackendMissing(
            f"building Keras models needs Keras 3 and its backend ({exc}); install one: {INSTALL}"
        ) from None
    return keras


def build_model(spec: Spec | Network | str, **options: Unpack[Options]) -> keras.Model:
    """Build the checked network as a functional ``keras.Model``, layer for layer as the generated code
    does; for a spec or its text, ``options`` are check()'s."""
    return build(spec if isinstance(spec, Network) else check(spec, **options))[0]


def build(network: Network) -> tuple[Any, list[Any]]:
    """The model, and its Keras layers in the order of ``network.layers`` (Keras lists them its own way)."""
    keras = keras_module()
    inputs = keras.Input(shape=network.input_shape)
    outputs: list[Any] = []
    built: list[Any] = []
    names = auto_names(network)
    for i, layer in enumerate(network.layers):
        tensors = [inputs if i < 0 else outputs[i] for i in layer.inputs]
        operator = _operator(layer)
        if operator is not None:  # tensor arithmetic: an operation of Keras's graph, not a layer
            value = layer.args[0]
            outputs.append(tensors[0] + value if operator == "+" else tensors[0] * value)
            built.append(None)
            continue
        made = make_layer(keras, layer.keras_class, layer.module, layer.args, layer.kwargs, names[i])
        outputs.append(made(tensors if len(tensors) > 1 else tensors[0]))
        built.append(made)
    output = outputs[network.output] if network.output >= 0 else inputs
    return keras.Model(inputs=inputs, outputs=output, name=network.name), built


def _operator(layer: NetLayer) -> str | None:
    kind = KINDS.get(layer.kind)
    return None if kind is None else kind.operator


def auto_names(network: Network) -> list[str | None]:
    """The names Keras gives the unnamed layers of the generated module in a fresh session (conv2d,
    conv2d_1, batch_normalization, re_lu, add, ...: per class, in the order the layers are made;
    None for a layer the spec names). Passing them spares Keras's own naming, which makes ResNet-50
    build about 25% slower; the checker refuses user names of that form, so none collides."""
    taken = {str(v) for layer in network.layers for k, v in layer.kwargs if k == "name"}
    counts: Counter[str] = Counter()
    names: list[str | None] = []
    # x + 3.0 is an operation Keras names itself (add, add_1, ... from a counter of its own): the Add and
    # Multiply layers beside such operations are left to Keras's naming too, or the names could collide
    operations = {snake_case(layer.keras_class) for layer in network.layers if _operator(layer) is not None}
    for layer in network.layers:
        if any(k == "name" for k, _ in layer.kwargs) or snake_case(layer.keras_class) in operations:
            names.append(None)
            continue
        base = snake_case(layer.keras_class)
        name = base if counts[base] == 0 else f"{base}_{counts[base]}"
        counts[base] += 1
        while name in taken:  # (only a plugin's class, whose name the checker does not know, can get here)
            name += "_"
        names.append(name)
    return names


def differences(model: Any, network: Network) -> list[str]:
    """Where a Keras model disagrees with the checker (empty when they agree).

    Keras lists a branching model's layers in its own order, so layers are compared as a multiset
    of (class, output shape, trainable, non-trainable), plus the totals.
    """
    theirs = Counter(
        (
            type(k).__name__,
            tuple(k.output.shape[1:]),
            sum(int(w.numpy().size) for w in k.trainable_weights),
            sum(int(w.numpy().size) for w in k.non_trainable_weights),
        )
        for k in model.layers
        if type(k).__name__ != "InputLayer"
    )
    mine = Counter(
        (layer.keras_class, layer.output_shape, layer.trainable, layer.non_trainable)
        for layer in network.layers
        if _operator(layer) is None  # tensor arithmetic is no layer of Keras's model
    )
    found = [f"Keras has {n} × {row}, the checker {mine[row]}" for row, n in (theirs - mine).items()]
    found += [f"the checker has {n} × {row}, Keras {theirs[row]}" for row, n in (mine - theirs).items()]
    if model.count_params() != network.params:
        found.append(f"Keras counts {model.count_params():,} params, the checker {network.params:,}")
    return found

"""Language v3's layers (issue 13), each against the Keras layer the reference says it means,
written here by hand: same classes, shapes, parameter counts and configs, and the same function
(the built model's output equals the hand-written model's with the same weights)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import configs, keras_rows

import normdsl

CASES: list[tuple[str, Any]] = [
    ("rescale(0.5)", lambda L, K: L.Rescaling(0.5)),
    ("rescale(0.0078125, offset=-1.0)", lambda L, K: L.Rescaling(scale=0.0078125, offset=-1.0)),
    ("normalize", lambda L, K: L.Normalization(axis=-1)),
    (
        "normalize(mean=(1, 2, 3, 4), var=(1, 4, 9, 16))",
        lambda L, K: L.Normalization(mean=[1, 2, 3, 4], variance=[1, 4, 9, 16]),
    ),
    ("normalize(mean=0.5, var=2.0)", lambda L, K: L.Normalization(mean=0.5, variance=2.0)),
    ("bn(center=false)", lambda L, K: L.BatchNormalization(center=False)),
    ("bn(scale=false, center=false)", lambda L, K: L.BatchNormalization(center=False, scale=False)),
    ("hardswish", lambda L, K: L.Activation("hard_swish")),
    ("hardsigmoid", lambda L, K: L.Activation("hard_sigmoid")),
    ("swish", lambda L, K: L.Activation("swish")),
    ("linear", lambda L, K: L.Activation("linear")),
    ("conv8(act=hard_swish)", lambda L, K: L.Conv2D(8, 3, activation="hard_swish")),
    ("conv8(init=he_normal)", lambda L, K: L.Conv2D(8, 3, kernel_initializer="he_normal")),
    ("dense5(init=zeros)", lambda L, K: L.Dense(5, kernel_initializer="zeros")),
    ("dropout(0.2, noise=(1, 1, 1))", lambda L, K: L.Dropout(0.2, noise_shape=(None, 1, 1, 1))),
    ("layerscale4(1e-6)", lambda L, K: _convnext().LayerScale(1e-6, 4)),
    ("droppath(0.1)", lambda L, K: _convnext().StochasticDepth(0.1)),
]


def _convnext() -> Any:
    from keras.src.applications import convnext  # where keras.applications defines its own layers

    return convnext


@pytest.mark.parametrize(("spec", "make"), CASES, ids=[c[0] for c in CASES])
def test_each_new_layer_is_the_keras_layer_it_names(keras: Any, spec: str, make: Any) -> None:
    network = normdsl.check(f"input(6, 6, 4) {spec}")
    inputs = keras.Input((6, 6, 4))
    reference = keras.Model(inputs, make(keras.layers, keras)(inputs))
    built = normdsl.build_model(network)
    assert keras_rows(built) == keras_rows(reference)
    assert network.params == reference.count_params()
    assert configs(built) == configs(reference)
    built.set_weights(reference.get_weights())
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 4)).astype("float32")
    assert np.allclose(np.asarray(built(x)), np.asarray(reference(x)), atol=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("normalize(mean=(1, 2))", "give both mean= and var="),
        ("normalize(mean=(1, 2), var=(1, 2))", "has 2 values for 4 channels"),
        ("layerscale8(1e-6)", "it scales 8 channels but receives 4"),
        ("dropout(0.2, noise=(0, 1, 1))", "'noise' must be a shape"),
        ("conv8(init=kaiming)", "'init' must be"),
        ("droppath(1.0)", "'p' must be"),
    ],
)
def test_misused_new_layers_are_diagnostics(spec: str, message: str) -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(f"input(6, 6, 4) {spec}")
    assert message in caught.value.render()


def test_the_generated_module_imports_keras_applications_own_layers(keras: Any) -> None:
    network = normdsl.check("input(6, 6, 4) layerscale4(1e-6) droppath(0.1)")
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(normdsl.render(network), "<generated>", "exec"), namespace)
    model = namespace["build_model"]()
    assert [type(layer) for layer in model.layers[1:]] == [_convnext().LayerScale, _convnext().StochasticDepth]


def test_id_is_the_input_itself_in_a_branch(keras: Any) -> None:
    """DenseNet's concatenation of a block's input with its output, and an explicit identity shortcut."""
    network = normdsl.check("input(6, 6, 4) cat(id, conv8(pad=same)) res(conv12(pad=same), shortcut=id) (id)*3")
    L = keras.layers
    inputs = keras.Input((6, 6, 4))
    x = L.Concatenate(axis=-1)([inputs, L.Conv2D(8, 3, padding="same")(inputs)])
    x = L.Add()([x, L.Conv2D(12, 3, padding="same")(x)])
    reference = keras.Model(inputs, x)
    for built in (normdsl.build_model(network), _generated(network)):
        assert keras_rows(built) == keras_rows(reference)
        built.set_weights(reference.get_weights())
        data = np.random.default_rng(2).standard_normal((2, 6, 6, 4)).astype("float32")
        assert np.allclose(np.asarray(built(data)), np.asarray(reference(data)), atol=1e-6)


def _generated(network: normdsl.Network) -> Any:
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(normdsl.render(network), "<generated>", "exec"), namespace)
    return namespace["build_model"]()


def test_a_block_named_id_is_the_specs() -> None:
    network = normdsl.check("let id = relu\ninput(4) id")
    assert [layer.kind for layer in network.layers] == ["relu"]


def test_first_body_writes_the_adds_operands_as_efficientnet_does(keras: Any) -> None:
    """EfficientNet's layers.add([x, inputs]): the body first. The graph's operand order is Keras's."""
    network = normdsl.check("input(6, 6, 4) res(conv4(pad=same), first=body) gate(sigmoid, first=body)")
    L = keras.layers
    inputs = keras.Input((6, 6, 4))
    x = L.add([L.Conv2D(4, 3, padding="same")(inputs), inputs])
    reference = keras.Model(inputs, L.Multiply()([L.Activation("sigmoid")(x), x]))
    for built in (normdsl.build_model(network), _generated(network)):
        assert _operands(built) == _operands(reference)
    spec = normdsl.parse("res(relu, first=body)")
    assert normdsl.Spec.from_json(spec.to_json()) == spec and spec.body[0].body_first  # type: ignore[union-attr]


def _operands(model: Any) -> list[list[str]]:
    """For each merge layer, the classes of the layers its operands come from, in order."""
    merges = [layer for layer in model.layers if type(layer).__name__ in ("Add", "Multiply")]
    return [[type(t._keras_history.operation).__name__ for t in layer.input] for layer in merges]


def test_first_takes_body_or_shortcut() -> None:
    with pytest.raises(normdsl.SpecError, match="first= takes body or shortcut, got middle"):
        normdsl.parse("res(relu, first=middle)")


def test_tensor_arithmetic_is_mobilenet_v3s_hard_sigmoid_exactly(keras: Any) -> None:
    """keras.applications.mobilenet_v3.hard_sigmoid: layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0), operations, not layers."""
    from keras.src.applications.mobilenet_v3 import hard_sigmoid

    network = normdsl.check("input(6, 6, 4) conv4(pad=same) plus(3.0) relu(max=6) times(0.16666666666666666)")
    L = keras.layers
    inputs = keras.Input((6, 6, 4))
    reference = keras.Model(inputs, hard_sigmoid(L.Conv2D(4, 3, padding="same")(inputs)))
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 4)).astype("float32") * 4
    for built in (normdsl.build_model(network), _generated(network)):
        assert [type(op).__name__ for op in built.operations] == [type(op).__name__ for op in reference.operations]
        built.set_weights(reference.get_weights())
        assert np.array_equal(np.asarray(built(x)), np.asarray(reference(x)))  # the same operations: bitwise
    assert network.params == reference.count_params()

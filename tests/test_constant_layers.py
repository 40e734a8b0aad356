"""A layer that outputs the same whatever its input is a warning: a normalization whose mean and
variance are over a single value (it outputs its offset beta), a softmax over one value (always 1; a
log_softmax always 0). Keras is the oracle: each layer of the model normdsl builds is fed two different
random inputs of its own input shape, and the checker warns of exactly the normalizations and softmaxes
whose output does not change."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import random_model, spec_text

import normdsl
from normdsl.network import NetLayer

CONSTANT = [
    "input(8)\ndense1 softmax",
    "input(8)\ndense1(act=softmax)",
    "input(8)\ndense1(act=log_softmax)",
    "input(6, 6, 3)\nconv1(k=1, act=softmax)",
    "input(6, 6, 3)\nconv1(k=1) ln",
    "input(8)\ndense1 ln(eps=1e-5)",
    "input(6, 6, 3)\ngap in",
    "input(8)\ndense4 in",
    "input(1, 1, 3)\nconv4(k=1) gn(4)",
    "input(8)\ndense1 gn(1)",
]
NORMALIZATIONS = ("LayerNormalization", "GroupNormalization", "BatchNormalization")
VARYING = [  # the same layers one value wider: no warning, and their output changes with the input
    "input(8)\ndense2 softmax",
    "input(8)\ndense2(act=log_softmax)",
    "input(6, 6, 3)\nconv2(k=1) ln",
    "input(6, 6, 3)\nin",
    "input(2, 1, 3)\nconv4(k=1) gn(4)",
    "input(8)\ndense4 gn(2)",
    "input(8)\ndense1 bn",
]


def warned(net: normdsl.Network) -> set[int]:
    """The layers the checker says output the same whatever their input."""
    spans = {w.span for w in net.warnings if "whatever the input" in w.message or "always outputs" in w.message}
    return {i for i, layer in enumerate(net.layers) if layer.span in spans}


def constant(keras: Any, layer: Any, net_layer: NetLayer) -> bool:
    """Whether the Keras layer, fed two different random inputs of its input shape, outputs the same up to
    the rounding of x - mean (a few ulps of x, times gamma / sqrt(eps): a normalization over one value)."""
    rng = np.random.default_rng(7)  # (64 samples: a norm over two values outputs about ±gamma + beta, by sign)
    x1, x2 = (rng.normal(0.5, 3.0, (64, *net_layer.input_shape)).astype(np.float32) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Keras's own warning of a softmax over one value: see below)
        y1, y2 = (np.asarray(layer(x, training=False)) for x in (x1, x2))
    gamma = max((float(np.abs(w.numpy()).max()) for w in layer.weights if "gamma" in w.path), default=1.0)
    eps = getattr(layer, "epsilon", 1.0)
    bound = 8 * np.finfo(np.float32).eps * max(np.abs(x1).max(), np.abs(x2).max()) * gamma / np.sqrt(eps)
    return bool(np.abs(y1 - y2).max() <= bound)


def randomize(model: Any) -> None:
    """Offsets away from 0 and scales around 1, so that a constant output is not mistaken for 0."""
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if any(name in weight.path for name in ("beta", "bias", "gamma")):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))


def agree_with_keras(keras: Any, net: normdsl.Network) -> set[int]:
    """The checker's warnings against Keras: every warned layer is constant, every normalization and softmax
    not warned is not. Returns the layers warned."""
    keras.backend.clear_session()
    model = normdsl.build_model(net)
    randomize(model)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert len(layers) == len(net.layers)
    said = warned(net)
    for i, (layer, net_layer) in enumerate(zip(layers, net.layers, strict=True)):
        activation = (
            net_layer.args[0] if net_layer.keras_class == "Activation" else dict(net_layer.kwargs).get("activation")
        )
        watched = net_layer.keras_class in NORMALIZATIONS or activation in ("softmax", "log_softmax")
        if i in said or (watched and len(net_layer.inputs) == 1):
            assert constant(keras, layer, net_layer) == (i in said), (net_layer.text, net_layer.input_shape)
    return said


@pytest.mark.parametrize("spec", CONSTANT)
def test_a_layer_that_outputs_the_same_whatever_its_input_is_a_warning(keras: Any, spec: str) -> None:
    net = normdsl.check(spec)
    assert agree_with_keras(keras, net) == {len(net.layers) - 1}
    (warning,) = net.warnings
    assert warning.hint and warning.span.line == 2


@pytest.mark.parametrize("spec", VARYING)
def test_the_same_layers_over_more_than_one_value_are_not(keras: Any, spec: str) -> None:
    net = normdsl.check(spec)
    assert agree_with_keras(keras, net) == set() and net.warnings == ()


def test_keras_itself_warns_of_a_softmax_over_one_value(keras: Any) -> None:
    """Where the checker says a softmax always outputs 1, Keras's softmax says so too, when it runs."""
    keras.backend.clear_session()
    model = normdsl.build_model(normdsl.check("input(8)\ndense1 softmax"))
    with pytest.warns(UserWarning, match="This axis has size 1"):
        out = model(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(out), 1.0)


@settings(max_examples=max(10, settings().max_examples // 10), deadline=None)
@given(random_model())
def test_random_specs_warn_of_exactly_the_layers_keras_computes_as_constant(keras: Any, model: Any) -> None:
    try:
        net = normdsl.check(spec_text(*model))
    except normdsl.SpecError:
        return  # the oracle tests cover invalid specs
    agree_with_keras(keras, net)

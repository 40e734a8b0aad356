"""Composite kinds and the gate: ``se(r=4)`` expands, once its input's channels are known, into the
layers of a squeeze-and-excitation, and must compute what Keras's own squeeze-excitation computes
(EfficientNet's code, written out below by hand); ``gate(...)`` is Keras's Multiply()([x, body])."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import keras_rows

import normdsl
from normdsl.layers import COMPOSITES

SPEC = """\
input(16, 16, 3)
let mb(f) = (conv{f}(pad=same) bn relu se(r=8))
conv16 se mb(32) se(2, act=silu, gating=sigmoid) gap dense10
"""


def reference(keras: Any) -> Any:
    """The same model in Keras, squeeze-excitation as EfficientNet writes it (conv 1×1 on a pooled map)."""
    L = keras.layers

    def se(x: Any, r: int, act: str = "relu") -> Any:
        c = x.shape[-1]
        y = L.GlobalAveragePooling2D(keepdims=True)(x)
        y = L.Conv2D(c // r, 1, activation=act)(y)
        y = L.Conv2D(c, 1, activation="sigmoid")(y)
        return L.multiply([x, y])

    inputs = keras.Input((16, 16, 3))
    x = se(L.Conv2D(16, 3)(inputs), 4)
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(32, 3, padding="same")(x)))
    x = se(se(x, 8), 2, "silu")
    return keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


def generated_module(network: normdsl.Network, folder: Path) -> Any:
    path = folder / "se_model.py"
    path.write_text(normdsl.render(network), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("se_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["se_model"] = module
    spec.loader.exec_module(module)
    return module


def test_se_is_the_same_function_as_kerass_squeeze_excitation(keras: Any, tmp_path: Path) -> None:
    network = normdsl.check(SPEC)
    ref = reference(keras)
    direct = normdsl.build_model(network)
    from_source = generated_module(network, tmp_path).build_model()
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype("float32")
    ref_weights = [w.copy() for w in ref.get_weights()]
    for rng, w in zip(range(len(ref_weights)), ref_weights, strict=True):  # no zero biases: order matters
        w += np.random.default_rng(rng).standard_normal(w.shape).astype("float32") * 0.1
        if w.ndim == 1 and rng % 4 in (2, 3):
            np.abs(w, out=w)  # batch norm's moving variance stays positive
    ref.set_weights(ref_weights)
    expected = np.asarray(ref(x))
    for model in (direct, from_source):
        assert keras_rows(model) == keras_rows(ref)
        model.set_weights(ref_weights)
        assert np.abs(np.asarray(model(x)) - expected).max() < 1e-5
    assert network.params == ref.count_params()


def test_the_generated_code_shows_a_composite_as_one_function() -> None:
    code = normdsl.render(normdsl.check(SPEC))
    tree = ast.parse(code)
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert [a.arg for a in functions["se"].args.args] == ["x", "r", "act", "gating"]  # c comes from x
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "se"]
    assert len(calls) == 3  # one use in mb, two in the model


def test_the_summary_rows_of_a_composite_sit_in_it() -> None:
    network = normdsl.check("input(8, 8, 4) conv8 se(r=2) gap")
    inside = [layer.keras_class for layer in network.layers if layer.blocks == ("se",)]
    assert inside == ["GlobalAveragePooling2D", "Conv2D", "Conv2D", "Multiply"]
    assert [c.name for c in network.composites] == ["se"]


def test_a_spec_block_named_like_a_composite_is_the_specs(keras: Any) -> None:
    network = normdsl.check("input(8, 8, 3)\nlet se(f) = conv{f}\nse(5)")
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    assert keras_rows(normdsl.build_model(network)) == keras_rows(keras.Model(inputs, L.Conv2D(5, 3)(inputs)))
    assert "def se(x, f):" in normdsl.render(network)


@pytest.mark.parametrize(
    "body",
    ["gap(keepdims=true) conv4(k=1) sigmoid", "gap dense4 sigmoid", "conv1(k=1, pad=same) sigmoid", "relu"],
)
def test_a_gate_is_kerass_multiply_of_the_input_and_its_body(keras: Any, body: str) -> None:
    network = normdsl.check(f"input(6, 6, 4) gate({body})")
    L = keras.layers
    inputs = keras.Input((6, 6, 4))
    y = inputs
    for layer in normdsl.build_model(network).layers[1:-1]:  # the body's layers, rebuilt from their configs
        y = type(layer).from_config(layer.get_config())(y)
    reference = keras.Model(inputs, L.Multiply()([inputs, y]))
    assert keras_rows(normdsl.build_model(network)) == keras_rows(reference)


def test_the_gate_survives_the_json_round_trip() -> None:
    spec = normdsl.parse("res(conv8) gate(gap(keepdims=true) conv3(k=1) sigmoid)")
    again = normdsl.Spec.from_json(spec.to_json())
    assert again == spec and [getattr(n, "gate", None) for n in again.body] == [False, True]


def test_every_composite_definition_parses_and_its_first_parameter_has_no_default() -> None:
    for composite in COMPOSITES.values():
        (block,) = normdsl.parse(composite.definition).blocks
        assert block.name == composite.name and block.params and block.params[0].default is None

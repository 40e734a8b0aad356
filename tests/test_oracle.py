"""Keras is the oracle: the checker's static figures must equal what Keras builds.

The reference models here are written independently of normdsl's registry: by hand for the seed
notebook, and by a hypothesis generator that writes each random layer twice, once as spec text
and once as the Keras layer the language reference says it means.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import EXAMPLES, built_rows, checker_rows, configs, example_ids, keras_rows
from hypothesis import event, given
from strategies import ACTIVATION_LAYERS, Twin, keras_model, random_model, spec_text

import normdsl
from normdsl.layers import ACTIVATIONS

SEED_NORMS = {
    "batchnorm": lambda L: L.BatchNormalization(axis=-1, synchronized=False),
    "layernorm": lambda L: L.LayerNormalization(axis=-1),
    "instancenorm": lambda L: L.GroupNormalization(groups=-1, axis=-1),
    "groupnorm": lambda L: L.GroupNormalization(groups=16, axis=-1),
}


def seed_model(keras: Any, norm: str) -> Any:
    """The seed notebook's code, as written there."""
    L = keras.layers
    inputs = L.Input(shape=(224, 224, 3))
    conv = L.Conv2D(32, 3, padding="valid")(inputs)
    conv = L.Conv2D(64, 3, padding="valid")(conv)
    conv = L.Conv2D(128, 3, padding="valid")(conv)
    conv = SEED_NORMS[norm](L)(conv)
    conv = L.Conv2D(256, 3, padding="valid")(conv)
    return keras.Model(inputs=[inputs], outputs=[conv])


@pytest.mark.parametrize("norm", sorted(SEED_NORMS))
def test_seed_examples_equal_the_seed_notebooks_models(keras: Any, norm: str) -> None:
    path = next(p for p in EXAMPLES if p.stem == norm)
    network = normdsl.check(normdsl.parse(path.read_text(), filename=str(path)))
    reference = seed_model(keras, norm)
    assert checker_rows(network) == keras_rows(reference)
    assert network.params == reference.count_params()
    assert configs(normdsl.build_model(network)) == configs(reference)


def test_seed_group_norm_model_has_kerass_parameter_count(keras: Any) -> None:
    network = normdsl.check((EXAMPLES[0].parent / "groupnorm.nd").read_text())
    assert network.params == seed_model(keras, "groupnorm").count_params() == 388_672


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_every_example_matches_keras_layer_by_layer(keras: Any, path: Any) -> None:
    network = normdsl.check(normdsl.parse(path.read_text(), filename=str(path)))
    assert checker_rows(network) == built_rows(network)
    assert network.params == normdsl.build_model(network).count_params()


def test_every_activation_the_registry_accepts_is_a_keras_activation(keras: Any) -> None:
    for name in ACTIVATIONS:
        assert callable(keras.activations.get(name)), name


@given(random_model())
def test_random_specs_agree_with_keras_on_validity_shapes_params_and_configs(keras: Any, model: Any) -> None:
    shape, twins = model
    text = spec_text(shape, twins)
    try:
        reference = keras_model(keras, shape, twins)
    except ValueError as keras_error:  # Keras refuses it: the checker must have refused it first
        event("Keras refuses the spec")
        with pytest.raises(normdsl.SpecError):
            normdsl.check(text)
        assert keras_error is not None
        return
    event("Keras builds the spec")
    network = normdsl.check(text)
    assert checker_rows(network) == keras_rows(reference), text
    assert network.params == reference.count_params()
    assert configs(normdsl.build_model(network)) == configs(reference), text


@given(random_model())
def test_random_spec_figures_hold_for_rank1_feature_stacks(keras: Any, model: Any) -> None:
    """Dense, norms, activations and dropout on flat features, as in an MLP."""
    shape, twins = model
    features = [
        t for t in twins if t.spec.startswith(("dense", "bn", "ln", "in", "dropout")) or t.spec in ACTIVATION_LAYERS
    ]
    text = f"input({shape[0] * shape[1]})\n" + " ".join(t.spec for t in [*features, Twin("dense3", None)])
    network = normdsl.check(text)
    reference = keras_model(keras, (shape[0] * shape[1],), [*features, Twin("", lambda L: L.Dense(3))])
    assert checker_rows(network) == keras_rows(reference), text


@pytest.mark.parametrize("pad", ["valid", "same"])
def test_depthwise_and_separable_take_strides_with_dilation_as_keras_does(keras: Any, pad: str) -> None:
    network = normdsl.check(f"input(17, 15, 4) dwconv(s=2, dilation=2, pad={pad}) sepconv6(s=2, dilation=2, pad={pad})")
    L = keras.layers
    inputs = keras.Input((17, 15, 4))
    x = L.DepthwiseConv2D(3, strides=2, dilation_rate=2, padding=pad)(inputs)
    x = L.SeparableConv2D(6, 3, strides=2, dilation_rate=2, padding=pad)(x)
    assert checker_rows(network) == keras_rows(keras.Model(inputs, x))
    with pytest.raises(normdsl.SpecError, match="cannot be combined with dilation"):
        normdsl.check("input(17, 15, 4) conv8(s=2, dilation=2)")  # Conv2D refuses it

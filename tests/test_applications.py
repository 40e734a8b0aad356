"""Real architectures reproduced exactly, proven by identical outputs (issue 13).

For each example, the model Keras builds from its own code is the oracle: `keras.applications`
(weights=None, nothing downloaded) and the seed notebook's models as written there. Counts alone
miss a wrong activation, padding or operand order, so beyond the same parameter totals and the
same sequence of weight-holding layers (class, output shape, parameters; nested Sequentials
expanded), the reference's weights, made non-trivial first (normalization statistics, biases,
LayerScale's 1e-6), are copied layer by layer into normdsl's direct build and into the generated
module, and both must compute the reference's outputs on a fixed input within 1e-5. Where the
model ends in a softmax its log-probabilities (the logits up to a constant) are compared as well:
near-uniform probabilities of about 1e-3 hide differences the logits show.
"""

from __future__ import annotations

import gc
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import ROOT
from test_oracle import seed_model

import normdsl

TOLERANCE = 1e-5  # absolute, float32


@dataclass(frozen=True)
class Case:
    example: str  # examples/<example>.nd
    reference: Callable[[Any], Any]  # keras -> the model Keras's own code builds
    pixels: bool  # the model scales [0, 255] pixels itself; other models get standard-normal input
    softmax: bool  # the model ends in a softmax
    params: int  # the total the README states

    def __str__(self) -> str:
        return self.example


def _seed(norm: str) -> Callable[[Any], Any]:
    return lambda keras: seed_model(keras, norm)


def _application(name: str, **kwargs: Any) -> Callable[[Any], Any]:
    return lambda keras: getattr(keras.applications, name)(weights=None, **kwargs)


CASES = [
    Case("efficientnet_b0", _application("EfficientNetB0"), pixels=True, softmax=True, params=5_330_571),
    Case(
        "mobilenet_v3_large",
        _application("MobileNetV3Large", input_shape=(224, 224, 3)),
        pixels=True,
        softmax=True,
        params=5_507_432,
    ),
    Case("convnext_tiny", _application("ConvNeXtTiny"), pixels=True, softmax=True, params=28_589_128),
    Case("resnet50", _application("ResNet50"), pixels=False, softmax=True, params=25_636_712),
    Case("vgg16", _application("VGG16"), pixels=False, softmax=True, params=138_357_544),
    Case("batchnorm", _seed("batchnorm"), pixels=False, softmax=False, params=388_928),
    Case("layernorm", _seed("layernorm"), pixels=False, softmax=False, params=388_672),
    Case("instancenorm", _seed("instancenorm"), pixels=False, softmax=False, params=388_672),
    Case("groupnorm", _seed("groupnorm"), pixels=False, softmax=False, params=388_672),
]
NEW_EXAMPLES = ("efficientnet_b0", "mobilenet_v3_large", "convnext_tiny")
WAYS = ("direct", "generated")


Row = tuple[str, tuple[int, ...], int]


@dataclass(frozen=True)
class View:
    """What the tests compare of one Keras model, kept after the model itself is freed."""

    rows: list[Row]  # weight-holding layers: class, output shape, parameters
    configs: list[dict[str, Any]]  # the same layers' configs
    training: list[tuple[str, float, Any]]  # layers that act only in training
    outputs: np.ndarray | None  # on the case's data; None if its layers do not pair with the reference's
    values: dict[int, np.ndarray]  # the outputs of weight-holding layers (by position) that are the model's own


@dataclass(frozen=True)
class Models:
    case: Case
    network: normdsl.Network
    reference: View  # keras.applications' (or the seed notebook's), its weights made non-trivial
    totals: tuple[int, int, int]  # the reference's parameters: all, trainable, non-trainable
    constant: list[str]  # weights of the reference still constant (none, or the comparison is weak)
    built: dict[str, View]  # "direct" (normdsl.build_model), "generated" (normdsl.render's module, run)


def _flat(layers: list[Any]) -> Iterator[Any]:
    """A model's layers in order, nested models (ConvNeXt's Sequential stem and downsampling) expanded."""
    for layer in layers:
        if type(layer).__name__ in ("Functional", "Sequential"):
            yield from _flat(layer.layers)
        else:
            yield layer


def weighted(model: Any) -> list[Any]:
    return [layer for layer in _flat(model.layers) if layer.weights]


def rows(model: Any) -> list[Row]:
    return [(type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in weighted(model)]


def _refresh(model: Any) -> None:
    """Keras's adaptable Normalization reads its statistics into constants when built (finalize_state);
    set_weights alone leaves it computing with the old ones."""
    for layer in weighted(model):
        if type(layer).__name__ == "Normalization":
            layer.finalize_state()


def make_nontrivial(model: Any, seed: int) -> None:
    """Fresh weights of the scale Keras drew; a constant 0 (biases, betas, means) becomes small noise,
    any other constant (gammas, variances, LayerScale's 1e-6) values around 1."""
    rng = np.random.default_rng(seed)
    for layer in weighted(model):
        fresh = []
        for value in layer.get_weights():
            if value.dtype.kind != "f" or value.size == 0:
                fresh.append(value)
            elif np.all(value == value.flat[0]):
                if value.flat[0] == 0:
                    fresh.append((0.1 * rng.standard_normal(value.shape)).astype(value.dtype))
                else:
                    fresh.append(rng.uniform(0.5, 1.5, value.shape).astype(value.dtype))
            else:
                fresh.append((value.std() * rng.standard_normal(value.shape)).astype(value.dtype))
        layer.set_weights(fresh)
    _refresh(model)


def transplant(source: Any, target: Any) -> None:
    pairs = list(zip(weighted(source), weighted(target), strict=True))
    for theirs, ours in pairs:
        ours.set_weights(theirs.get_weights())
    _refresh(target)


def generated_model(network: normdsl.Network) -> Any:
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(normdsl.render(network), "<generated>", "exec"), namespace)
    return namespace["build_model"]()


def outputs(model: Any, data: np.ndarray) -> Any:
    with warnings.catch_warnings():  # the seed models take a list of one input; a tensor is what it holds
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        result = model(data, training=False)
    return [np.asarray(value) for value in result] if isinstance(result, list) else np.asarray(result)


def comparable_config(layer: Any) -> dict[str, Any]:
    """A layer's config, its name and initializers aside (initial values do not change the function;
    EfficientNet's VarianceScaling(2.0, fan_out) has no name in `init=`). keras.applications writes
    axis=3 where we write the equivalent -1 on these rank-4 tensors."""
    config = {key: value for key, value in layer.get_config().items() if key != "name"}
    config = {key: value for key, value in config.items() if not key.endswith("_initializer")}
    if type(layer).__name__ in ("BatchNormalization", "Normalization") and config["axis"] in (
        3,
        (3,),
        [3],
        (-1,),
        [-1],
    ):
        config["axis"] = -1
    return {"class": type(layer).__name__, **config}


def training_layers(model: Any) -> list[tuple[str, float, Any]]:
    """Layers that act only in training: dropout (rate, noise shape) and stochastic depth."""
    out = []
    for layer in _flat(model.layers):
        config = layer.get_config()
        if type(layer).__name__ == "Dropout":
            out.append(("Dropout", config["rate"], config["noise_shape"]))
        elif type(layer).__name__ == "StochasticDepth":
            out.append(("StochasticDepth", config["drop_path_rate"], None))
    return out


def layer_values(keras: Any, model: Any, data: np.ndarray) -> dict[int, np.ndarray]:
    """Each weight-holding layer's output on data, by its position among them; layers of a nested
    model (ConvNeXt's Sequentials) are left out, their outputs are not the outer model's tensors."""
    own = {id(layer) for layer in model.layers}
    picked = {i: layer for i, layer in enumerate(weighted(model)) if id(layer) in own}
    probe = keras.Model(model.inputs, [layer.output for layer in picked.values()])
    values = outputs(probe, data)
    return dict(zip(picked, values if isinstance(values, list) else [values], strict=True))


def view(keras: Any, model: Any, data: np.ndarray | None) -> View:
    return View(
        rows=rows(model),
        configs=[comparable_config(layer) for layer in weighted(model)],
        training=training_layers(model),
        outputs=None if data is None else outputs(model, data),
        values={} if data is None else layer_values(keras, model, data),
    )


@pytest.fixture(scope="module", params=CASES, ids=str)
def models(request: pytest.FixtureRequest, keras: Any) -> Models:
    """Each case's models built once per module, and one at a time beside the reference: VGG-16 is
    553 MB of weights a model (a build peaks near 1.4 GB)."""
    case: Case = request.param
    path = ROOT / "examples" / f"{case.example}.nd"
    network = normdsl.check(normdsl.parse(path.read_text(encoding="utf-8"), filename=path.name))
    reference = case.reference(keras)
    make_nontrivial(reference, seed=13)
    rng = np.random.default_rng(7)
    shape = (1, *reference.inputs[0].shape[1:])
    data = (rng.uniform(0, 255, shape) if case.pixels else rng.standard_normal(shape)).astype("float32")
    theirs = view(keras, reference, data)
    constant = [
        layer.name
        for layer in weighted(reference)
        for value in layer.get_weights()
        if value.dtype.kind == "f" and value.size > 1 and np.all(value == value.flat[0])
    ]
    built = {}
    for way, build in (("direct", normdsl.build_model), ("generated", generated_model)):
        model = build(network)
        pairs = rows(model) == theirs.rows  # a mismatch is the layer test's failure, not the fixture's
        if pairs:
            transplant(reference, model)
        built[way] = view(keras, model, data if pairs else None)
        del model
        gc.collect()
    totals = (
        reference.count_params(),
        sum(int(np.prod(w.shape)) for w in reference.trainable_weights),
        sum(int(np.prod(w.shape)) for w in reference.non_trainable_weights),
    )
    del reference
    gc.collect()
    return Models(case, network, theirs, totals, constant, built)


def test_parameter_totals_equal_kerass(models: Models) -> None:
    network = models.network
    assert (network.params, network.trainable, network.non_trainable) == models.totals
    assert network.params == models.case.params


@pytest.mark.parametrize("way", WAYS)
def test_weight_holding_layers_equal_kerass_in_order(models: Models, way: str) -> None:
    assert models.built[way].rows == models.reference.rows


def test_checker_figures_equal_kerass_weight_holding_layers(models: Models) -> None:
    """Without TensorFlow, the same layers and figures; the checker lists them in the spec's order,
    Keras in its graph's (ResNet-50's projection shortcut comes before the block's body)."""
    checked = [(layer.keras_class, layer.output_shape, layer.params) for layer in models.network.layers if layer.params]
    assert sorted(checked) == sorted(models.reference.rows)


@pytest.mark.parametrize("way", WAYS)
def test_weight_holding_layer_configs_equal_kerass(models: Models, way: str) -> None:
    assert models.built[way].configs == models.reference.configs


@pytest.mark.parametrize("way", WAYS)
def test_training_only_layers_equal_kerass(models: Models, way: str) -> None:
    ours, theirs = models.built[way].training, models.reference.training
    assert [(kind, shape) for kind, _, shape in ours] == [(kind, shape) for kind, _, shape in theirs]
    assert [rate for _, rate, _ in ours] == pytest.approx([rate for _, rate, _ in theirs], abs=1e-12)


@pytest.mark.parametrize("way", WAYS)
def test_outputs_equal_kerass_with_its_weights(models: Models, way: str) -> None:
    got, expected = models.built[way].outputs, models.reference.outputs
    assert got is not None and expected is not None, "the weight-holding layers differ: no weights to copy"
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE
    if models.case.softmax:
        assert expected.min() > 0  # not saturated: the logarithms below are the logits up to a constant
        assert np.abs(np.log(got) - np.log(expected)).max() <= TOLERANCE


@pytest.mark.parametrize("way", WAYS)
def test_each_weight_holding_layer_computes_kerass_values(models: Models, way: str) -> None:
    """Sharper than the outputs, where a gate's or a padding's effect is averaged away, and it names
    the first layer that differs; relative to the layer's largest value (ResNet's reach hundreds)."""
    ours, theirs = models.built[way].values, models.reference.values
    assert ours, "the weight-holding layers differ: no weights to copy"
    assert set(theirs) <= set(ours)
    for i in sorted(theirs):
        error = np.abs(ours[i] - theirs[i]).max()
        scale = max(1.0, float(np.abs(theirs[i]).max()))
        assert error <= TOLERANCE * scale, f"weight-holding layer {i}, {models.reference.rows[i]}: differs by {error}"


def test_no_weight_of_the_reference_is_left_constant(models: Models) -> None:
    """Otherwise a layer whose weights are all one value (a zero bias, LayerScale's 1e-6) could be
    misplaced or missing without changing the outputs."""
    assert models.constant == []


@pytest.mark.parametrize("example", NEW_EXAMPLES)
def test_the_example_is_at_most_30_lines(example: str) -> None:
    assert len((ROOT / "examples" / f"{example}.nd").read_text(encoding="utf-8").splitlines()) <= 30


@pytest.mark.parametrize("case", [case for case in CASES if case.pixels or case.softmax], ids=str)
def test_the_readme_states_each_applications_total(case: Case) -> None:
    """The README's paragraph names each keras.applications example with the total tested above."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    paragraph = readme.split("Five of the examples are `keras.applications` models", 1)[1].split("`normdsl summary", 1)[
        0
    ]
    assert re.search(rf"`examples/{case.example}\.nd` \([^)]*: {case.params:,}( params)?[,)]", paragraph)

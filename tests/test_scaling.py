"""Width and depth scaling (issue 16): w() and d() round as their anchors do (Keras applications'
_make_divisible, EfficientNet's round_repeats), and examples/mobilenet_v2.nd at every alpha Keras
ships equals keras.applications.MobileNetV2(alpha=...), the same function after a weight transplant."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import keras_rows, readme_sessions
from hypothesis import given
from hypothesis import strategies as st

import normdsl
from normdsl.check import ScaleError
from normdsl.scaling import Scaling

ROOT = Path(__file__).parent.parent
MOBILENET_V2 = ROOT / "examples" / "mobilenet_v2.nd"
ALPHAS = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4]  # the alphas keras.applications ships weights for


def weighted(model: Any) -> list[tuple[str, tuple[int, ...], int]]:
    """The weight-holding layers in order: (class, output shape without batch, params)."""
    return [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in model.layers
        if layer.weights
    ]


@pytest.fixture(scope="module")
def mobilenets() -> dict[float, Any]:
    from tensorflow import keras

    return {alpha: keras.applications.MobileNetV2(alpha=alpha, weights=None) for alpha in ALPHAS}


@pytest.mark.parametrize("alpha", ALPHAS)
def test_mobilenet_v2_at_every_alpha_equals_keras_applications(mobilenets: dict[float, Any], alpha: float) -> None:
    reference = mobilenets[alpha]
    network = normdsl.check(normdsl.parse(MOBILENET_V2.read_text(), filename="mobilenet_v2.nd"), width=alpha)
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert (network.params, network.trainable) == (reference.count_params(), trainable)
    assert weighted(normdsl.build_model(network)) == weighted(reference)


def test_mobilenet_v2_at_half_width_is_the_same_function(mobilenets: dict[float, Any]) -> None:
    reference = mobilenets[0.5]
    network = normdsl.check(normdsl.parse(MOBILENET_V2.read_text(), filename="mobilenet_v2.nd"), width=0.5)
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(normdsl.render(network), "<generated>", "exec"), namespace)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype("float32")
    expected = np.asarray(reference(x))
    for model in (normdsl.build_model(network), namespace["build_model"]()):
        pairs = zip((m for m in model.layers if m.weights), (m for m in reference.layers if m.weights), strict=True)
        for ours, theirs in pairs:
            ours.set_weights(theirs.get_weights())
        assert np.abs(np.asarray(model(x)) - expected).max() < 1e-5


@given(st.integers(1, 4096), st.sampled_from([0.25, 0.35, 0.5, 0.75, 1.0, 1.1, 1.3, 1.4, 2.0, 3.1]))
def test_w_rounds_as_kerass_make_divisible(channels: int, alpha: float) -> None:
    from keras.src.applications.mobilenet_v2 import _make_divisible  # the anchor itself

    assert Scaling(width=alpha).width_of(channels) == _make_divisible(channels * alpha, 8)
    assert Scaling(width=alpha, divisor=16).width_of(channels) == _make_divisible(channels * alpha, 16)


@given(st.integers(1, 100), st.floats(0.1, 5.0))
def test_d_rounds_up_as_efficientnets_round_repeats_or_to_the_nearest_at_least_one(count: int, depth: float) -> None:
    assert Scaling(depth=depth).depth_of(count) == math.ceil(depth * count)  # EfficientNet's round_repeats
    assert Scaling(depth=depth, depth_round="round").depth_of(count) == max(round(count * depth), 1)


def test_ceil_rounding_is_the_multiple_at_or_above() -> None:
    ceil = Scaling(width=0.75, round="ceil")
    assert [ceil.width_of(c) for c in (16, 20, 64, 100)] == [16, 16, 48, 80]  # 12→16, 15→16, 48, 75→80


SCALED = """\
scaling(width=1.0, depth=1.0, divisor=8)
scaling small(width=0.5, depth=0.5, input=16)
scaling big(width=2.0, depth=2.0, input=64)
let stage(f, n) = (conv{f}(pad=same) relu)*n
input(32, 32, 3)
stage({w(16)}, {d(2)}) stage({w(32)}, {d(3)}) gap
"""


@pytest.mark.parametrize(
    ("scale", "input_size", "widths"),
    [(None, 32, [16] * 2 + [32] * 3), ("small", 16, [8, 16, 16]), ("big", 64, [32] * 4 + [64] * 6)],
)
def test_named_scales_set_multipliers_and_the_input(scale: str | None, input_size: int, widths: list[int]) -> None:
    network = normdsl.check(SCALED, scale=scale)
    assert network.input_shape == (input_size, input_size, 3)
    assert [layer.output_shape[-1] for layer in network.layers if layer.kind == "conv"] == widths


def test_width_and_depth_override_the_spec() -> None:
    network = normdsl.check(SCALED, scale="small", width=1.0)
    assert [layer.output_shape[-1] for layer in network.layers if layer.kind == "conv"] == [16, 32, 32]


def test_an_unknown_scale_is_an_error_naming_the_spec_s_scales() -> None:
    with pytest.raises(ScaleError, match="scale 'b9': the spec's scales are small, big"):
        normdsl.check(SCALED, scale="b9")
    result = subprocess.run(
        [sys.executable, "-m", "normdsl", "check", "-", "--scale", "b9"],
        input=SCALED,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "the spec's scales are small, big" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("scaling(width=0)\ninput(4) relu", "width must be a number above 0"),
        ("scaling(0.5)\ninput(4) relu", "give each setting by name"),
        ("scaling(wdth=0.5)\ninput(4) relu", "scaling has no setting 'wdth'"),
        ("scaling(round=floor)\ninput(4) relu", "round must be make_divisible or ceil"),
        ("scaling(width=1.0)\nscaling(width=2.0)\ninput(4) relu", "scaling(...) is given twice"),
        ("scaling a(width=1.0)\nscaling a(width=2.0)\ninput(4) relu", "scale 'a' is defined twice"),
        ("let b(f) = dense{w(f)}\ninput(4) b(8)", "w() of a block parameter"),
        ("input(4) dense{w(8, 2)}", "no function w() of 2 argument(s)"),
        ("input(4) dense{v(8)}", "no function v() of 1 argument(s)"),
    ],
)
def test_scaling_mistakes_are_diagnostics(text: str, message: str) -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(text)
    assert message in caught.value.render()


def test_compare_across_scales_is_one_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "normdsl", "compare", "-", "--scale", "small", "big", "--json"],
        input=SCALED,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    rows = json.loads(result.stdout)["variants"]
    assert [r["variant"] for r in rows] == ["small", "big"]
    assert [r["params"] for r in rows] == [normdsl.check(SCALED, scale=s).params for s in ("small", "big")]


def test_scaling_survives_the_json_round_trip() -> None:
    spec = normdsl.parse(SCALED)
    assert normdsl.Spec.from_json(spec.to_json()) == spec


def test_generated_code_writes_scaled_widths_as_numbers(keras: Any) -> None:
    network = normdsl.check(SCALED, scale="big")
    code = normdsl.render(network)
    assert "x = stage(inputs, 32, 4)" in code and "x = stage(x, 64, 6)" in code
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(code, "<generated>", "exec"), namespace)
    assert keras_rows(namespace["build_model"]()) == keras_rows(normdsl.build_model(network))


# ---- widths moved for the group counts consuming them --------------------------------------------


@given(
    st.integers(1, 512),
    st.sampled_from([0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4, 2.0]),
    st.lists(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 32]), min_size=1, max_size=3),
    st.sampled_from([4, 8, 16]),
)
def test_round_for_groups_finds_the_nearest_width_every_consumer_accepts(
    channels: int, width: float, groups: list[int], divisor: int
) -> None:
    norms = " ".join(f"gn({g})" for g in groups)
    text = f"scaling(divisor={divisor})\ninput(4, 4, 3) conv{{w({channels})}}(pad=same) {norms}"
    network = normdsl.check(text, width=width, round_for_groups=True)
    found = network.layers[0].output_shape[-1]
    plain = Scaling(width=width, divisor=divisor).width_of(channels)
    step = math.lcm(divisor, *groups)
    assert found % divisor == 0 and all(found % g == 0 for g in groups)
    valid = [n for n in range(step, plain + 2 * step, step)]  # every candidate near the plain rounding
    best = min(valid, key=lambda n: (abs(n - plain), -n))
    assert found == best


@pytest.mark.parametrize("alpha", ALPHAS)
def test_a_group_norm_mobilenet_v2_is_valid_at_every_alpha_with_round_for_groups(alpha: float) -> None:
    text = MOBILENET_V2.read_text()
    try:
        normdsl.check(text, width=alpha, norm="gn(16)")
    except normdsl.SpecError as error:  # without it: a diagnostic naming the scaled width and the option
        hints = " ".join(e.hint or "" for e in error.errors)
        assert " is w(" in hints and "--round-for-groups would make it" in hints
    network = normdsl.check(text, width=alpha, norm="gn(16)", round_for_groups=True)
    norms = [layer for layer in network.layers if layer.keras_class == "GroupNormalization"]
    assert norms and all(layer.input_shape[-1] % 16 == 0 for layer in norms)


def test_keras_builds_the_regrouped_model(keras: Any) -> None:
    network = normdsl.check(MOBILENET_V2.read_text(), width=0.5, norm="gn(16)", round_for_groups=True)
    assert normdsl.build_model(network).count_params() == network.params  # Keras refuses 16 groups of 8 channels


REPORT_ARGS = ("--width", "0.5", "--norm", "gn(16)", "--round-for-groups")


def test_the_scale_report_says_which_widths_moved_and_why() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "normdsl", "scale-report", str(MOBILENET_V2), *REPORT_ARGS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "scale: width 0.5, depth 1 (make_divisible by 8, depth ceil)"
    # w(16) at half width is 8, and gn(16) needs 16 channels at least: it moves to 16
    assert "w(16): 16 × 0.5 = 8 → 8 (divisor 8) → 16 (gn(16) consumes it)" in lines[1]


def test_the_readmes_scaling_examples_are_real_output() -> None:
    sessions = readme_sessions("scale-example")
    assert len(sessions) == 2
    for args, shown in sessions:
        result = subprocess.run(
            [sys.executable, "-m", "normdsl", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert (result.stdout + result.stderr).rstrip("\n") == shown, args


# ---- EfficientNet's compound scaling -------------------------------------------------------------

EFFICIENTNET = ROOT / "examples" / "efficientnet.nd"
FAMILY = ["b0", "b1", "b2", "b3"]


@pytest.fixture(scope="module")
def efficientnets() -> dict[str, Any]:
    from tensorflow import keras

    return {s: getattr(keras.applications, f"EfficientNet{s.upper()}")(weights=None) for s in FAMILY}


def _efficientnet(scale: str) -> normdsl.Network:
    spec = normdsl.parse(EFFICIENTNET.read_text(), filename=str(EFFICIENTNET))
    return normdsl.check(spec, scale=scale)


@pytest.mark.parametrize("scale", FAMILY)
def test_the_efficientnet_family_equals_keras_applications(efficientnets: dict[str, Any], scale: str) -> None:
    reference, network = efficientnets[scale], _efficientnet(scale)
    assert network.input_shape == tuple(reference.input.shape[1:])  # the scale's resolution
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert (network.params, network.trainable) == (reference.count_params(), trainable)
    assert weighted(normdsl.build_model(network)) == weighted(reference)


@pytest.mark.parametrize("scale", ["b0", "b1"])
def test_efficientnet_b0_and_b1_are_the_same_function(efficientnets: dict[str, Any], scale: str) -> None:
    reference, network = efficientnets[scale], _efficientnet(scale)
    model = normdsl.build_model(network)
    rng = np.random.default_rng(1)
    for ours, theirs in zip(
        (m for m in model.layers if m.weights), (m for m in reference.layers if m.weights), strict=True
    ):
        weights = [w + rng.normal(0, 0.05, w.shape).astype("float32") for w in theirs.get_weights()]
        if type(theirs).__name__ == "BatchNormalization":
            weights[3] = np.abs(weights[3]) + 0.5  # a positive moving variance
        if type(theirs).__name__ == "Normalization":
            weights = [np.full_like(w, 0.5) for w in weights]  # the adaptable mean, variance and count
        theirs.set_weights(weights)
        ours.set_weights(weights)
    x = rng.uniform(0, 255, (1, *network.input_shape)).astype("float32")
    assert np.abs(np.asarray(model(x)) - np.asarray(reference(x))).max() < 1e-5


def test_build_model_takes_the_scale_options(mobilenets: dict[float, Any]) -> None:
    model = normdsl.build_model(MOBILENET_V2.read_text(), width=0.5)
    assert weighted(model) == weighted(mobilenets[0.5])


def test_render_takes_the_scale_options() -> None:
    code = normdsl.render(SCALED, scale="big")
    assert "x = stage(inputs, 32, 4)" in code and "input_shape=(64, 64, 3)" in code

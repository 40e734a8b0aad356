"""normdsl's standard library (``use std/NAME``, issue 13): every block is the computation
keras.applications writes, with Keras as the oracle: the block functions of keras.applications
called on a Keras input, against the model normdsl builds from a small spec using the block, with
the same weight-holding layers (class, output shape, parameters), the reference's weights (its
normalization statistics made non-trivial) copied across, and the same outputs."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT

import normdsl

STD = ROOT / "normdsl" / "std"
FILES = sorted(STD.glob("*.nd"))


# ---- the files -------------------------------------------------------------------------------


def test_the_library_holds_the_files_the_issue_asks_for() -> None:
    assert {p.stem for p in FILES} >= {"se", "mbconv", "mobilenet_v3", "resnet", "densenet", "convnext"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_file_holds_blocks_only_each_under_a_comment_naming_it(path: Path) -> None:
    text = path.read_text()
    spec = normdsl.parse(text, filename=f"std/{path.name}")
    assert not spec.inputs and not spec.body, "a used file holds blocks and uses only"
    assert spec.blocks
    lines = text.splitlines()
    for block in spec.blocks:
        comment = []
        for line in reversed(lines[: block.span.line - 1]):  # the comment right above the block
            if not line.startswith("#"):
                break
            comment.insert(0, line)
        assert comment, f"block {block.name} at {path.name}:{block.span.line} has no comment right above it"
        params = ", ".join(p.name for p in block.params)
        signature = re.match(r"# (\w+)\(([^)]*)\):", comment[0])
        assert signature is not None, f"{block.name}'s comment does not start with its signature: {comment[0]}"
        assert signature[1] == block.name
        assert re.sub(r"=[^,]*", "", signature[2]) == params, f"{block.name}'s comment names other parameters"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_file_can_be_used_alone(path: Path) -> None:
    network = normdsl.check(f"use std/{path.stem}\nnorm = bn\ninput(8)")
    assert network.layers == ()


def test_the_library_is_package_data_of_the_wheel(tmp_path: Path) -> None:
    found = {p.name for p in resources.files("normdsl").joinpath("std").iterdir() if p.name.endswith(".nd")}
    assert found == {p.name for p in FILES}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("normdsl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"normdsl/std/{p.name}" for p in FILES} <= names


def test_a_block_normalizes_with_the_specs_norm_and_its_replacement() -> None:
    spec = "use std/resnet\nnorm = bn(eps=1.001e-5)\ninput(8, 8, 16) bottleneck(4)"
    assert [layer.kind for layer in normdsl.check(spec).layers].count("bn") == 4
    swapped = normdsl.check(spec, norm="gn(4)")
    assert [layer.kind for layer in swapped.layers].count("gn") == 4
    assert "bn" not in [layer.kind for layer in swapped.layers]


def test_a_spec_without_norm_is_told_to_declare_it() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("use std/densenet\ninput(8, 8, 16) transition(8)")
    rendered = caught.value.render()
    assert rendered.startswith("std/densenet.nd:") and "unknown layer 'norm'" in rendered
    assert "declare the default normalization, e.g. norm = bn" in rendered


def test_the_pragma_in_convnext_nd_allows_its_pointwise_dense() -> None:
    network = normdsl.check("use std/convnext\nnorm = ln(eps=1e-6)\ninput(8, 8, 16) convnext_block(16)")
    assert not [d for d in network.warnings if "rank-3" in d.message]


def test_the_pragma_on_the_line_using_a_convnext_block_allows_its_dense() -> None:
    network = normdsl.check(
        "use std/convnext\nnorm = ln(eps=1e-6)\ninput(8, 8, 16) convnext_block(16)  # normdsl: allow(pointwise-dense)"
    )
    assert not [d for d in network.warnings if "rank-3" in d.message]


def _signatures(path: Path) -> list[str]:
    """Each block's signature as its comment gives it: name(params with defaults)."""
    return re.findall(r"^# (\w+\([^)]*\)):", path.read_text(), re.MULTILINE)


def test_the_readmes_table_lists_every_block_of_each_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Standard library", 1)[1].split("<!-- std-examples -->", 1)[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `std/(\w+)` \| (.*?) \|[^|]*\|$", table, re.MULTILINE)}
    assert set(rows) == {p.stem for p in FILES}
    for path in FILES:
        assert re.findall(r"`(\w+\([^`]*\))`", rows[path.stem]) == _signatures(path), path.name


def _readme_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    region = readme.split("<!-- std-examples -->", 1)[1].split("<!-- /std-examples -->", 1)[0]
    specs: list[list[str]] = [[]]
    for line in region.splitlines():
        if line.startswith("    "):
            specs[-1].append(line[4:])
        elif specs[-1]:
            specs.append([])
    return ["\n".join(lines) for lines in specs if lines]


def test_the_readmes_examples_use_every_file_and_check_without_warnings() -> None:
    examples = _readme_examples()
    assert {re.match(r"use std/(\w+)", e)[1] for e in examples} == {p.stem for p in FILES}  # type: ignore[index]
    for example in examples:
        network = normdsl.check(example)
        assert network.warnings == (), example
        assert "def build_model" in normdsl.render(network)
    resnet = next(e for e in examples if "std/resnet" in e)
    assert {layer.kind for layer in normdsl.check(resnet, norm="gn(32)").layers} >= {"gn"}


# ---- Keras as the oracle ---------------------------------------------------------------------


def _weighted(model: Any) -> list[Any]:
    return [layer for layer in model.layers if layer.weights]


def _rows(model: Any) -> list[tuple[str, tuple[int, ...], int]]:
    return [(type(la).__name__, tuple(la.output.shape[1:]), la.count_params()) for la in _weighted(model)]


# what a layer computes, as its config says (names, initializers and the axis' spelling aside; an
# activation may sit in a conv or in a layer after it, which the outputs compare)
SETTINGS = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "use_bias", "depth_multiplier")
SETTINGS += ("units", "epsilon", "momentum", "center", "scale", "init_values", "projection_dim")


def _settings(model: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in la.get_config().items() if k in SETTINGS} for la in _weighted(model)]


def _randomize(model: Any, rng: np.random.Generator) -> None:
    """Non-trivial weights: kernels as initialized, positive scales and variances, the rest random."""
    for layer in _weighted(model):
        values = []
        for w in layer.weights:
            shape, name = tuple(w.shape), w.path.rsplit("/", 1)[-1]
            if "kernel" in name:
                values.append(np.asarray(w.numpy()))
            elif name in ("moving_variance", "gamma"):
                values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
            else:  # beta, moving_mean, bias, LayerScale's γ
                values.append(rng.normal(0.0, 0.3, shape).astype("float32"))
        layer.set_weights(values)


def same_computation(keras: Any, spec: str, shape: tuple[int, ...], reference_of: Any) -> None:
    """The model built from ``spec`` computes what ``reference_of(keras_input)`` does."""
    network = normdsl.check(spec)
    built = normdsl.build_model(network)
    inputs = keras.Input(shape)
    reference = keras.Model(inputs, reference_of(inputs))
    assert _rows(built) == _rows(reference)
    assert _settings(built) == _settings(reference)
    assert network.params == reference.count_params()
    rng = np.random.default_rng(13)
    _randomize(reference, rng)
    for ours, theirs in zip(_weighted(built), _weighted(reference), strict=True):
        ours.set_weights(theirs.get_weights())
    x = rng.standard_normal((2, *shape)).astype("float32")
    expected = np.asarray(reference(x, training=False))
    np.testing.assert_allclose(np.asarray(built(x, training=False)), expected, rtol=1e-5, atol=1e-5)


def _apps() -> Any:
    from keras.src import applications

    return applications


# squeeze-excitation: EfficientNet's (fin // 4 of the block's input, swish) and MobileNetV3's
def _efficientnet_se(keras: Any, f: int, fse: int) -> Any:
    L = keras.layers

    def se(x: Any) -> Any:  # efficientnet.block's squeeze-and-excitation phase, as written there
        s = L.GlobalAveragePooling2D()(x)
        s = L.Reshape((1, 1, f))(s)
        s = L.Conv2D(fse, 1, padding="same", activation="swish")(s)
        s = L.Conv2D(f, 1, padding="same", activation="sigmoid")(s)
        return L.multiply([x, s])

    return se


def test_squeeze_excite_is_efficientnets(keras: Any) -> None:
    spec = "use std/se\ninput(6, 6, 24) squeeze_excite(24, 4, act=swish)"
    same_computation(keras, spec, (6, 6, 24), _efficientnet_se(keras, 24, 4))


def test_squeeze_excite_with_hard_sigmoid_is_mobilenet_v3s(keras: Any) -> None:
    spec = "use std/se\ninput(6, 6, 64) squeeze_excite(64, 16, gating=hard_sigmoid)"
    # _se_block(x, 64, 0.25): _depth(64 * 0.25) = 16 channels, ReLU, hard sigmoid as relu6(x + 3) / 6
    same_computation(keras, spec, (6, 6, 64), lambda x: _apps().mobilenet_v3._se_block(x, 64, 0.25, "se_"))


# ResNet v1 and v2
RESNET = [
    ("bottleneck(16)", (8, 8, 32), lambda r, x: r.residual_block_v1(x, 16, name="b")),
    ("bottleneck(16, s=2)", (8, 8, 32), lambda r, x: r.residual_block_v1(x, 16, stride=2, name="b")),
    ("bottleneck_identity(16)", (8, 8, 64), lambda r, x: r.residual_block_v1(x, 16, conv_shortcut=False, name="b")),
    ("preact_bottleneck(16)", (8, 8, 32), lambda r, x: r.residual_block_v2(x, 16, conv_shortcut=True, name="b")),
    (
        "preact_bottleneck(16, s=2)",
        (8, 8, 32),
        lambda r, x: r.residual_block_v2(x, 16, stride=2, conv_shortcut=True, name="b"),
    ),
    ("preact_bottleneck_identity(16)", (8, 8, 64), lambda r, x: r.residual_block_v2(x, 16, name="b")),
    ("preact_bottleneck_pool(16)", (8, 8, 64), lambda r, x: r.residual_block_v2(x, 16, stride=2, name="b")),
]


@pytest.mark.parametrize(("use", "shape", "block"), RESNET, ids=[c[0] for c in RESNET])
def test_resnet_bottlenecks_are_keras_applications(keras: Any, use: str, shape: tuple[int, ...], block: Any) -> None:
    spec = f"use std/resnet\nnorm = bn(eps=1.001e-5)\ninput{shape} {use}"
    same_computation(keras, spec, shape, lambda x: block(_apps().resnet, x))


# DenseNet
DENSENET = [
    ("dense_unit(8)", lambda d, x: d.conv_block(x, 8, name="u")),
    ("dense_block(2)", lambda d, x: d.dense_block(x, 2, name="d")),  # keras.applications' growth rate: 32
    ("transition(8)", lambda d, x: d.transition_block(x, 0.5, name="t")),
]


@pytest.mark.parametrize(("use", "block"), DENSENET, ids=[c[0] for c in DENSENET])
def test_densenet_blocks_are_keras_applications(keras: Any, use: str, block: Any) -> None:
    spec = f"use std/densenet\nnorm = bn(eps=1.001e-5)\ninput(8, 8, 16) {use}"
    same_computation(keras, spec, (8, 8, 16), lambda x: block(_apps().densenet, x))


# MBConv (EfficientNet, EfficientNetV2) and fused-MBConv (EfficientNetV2)
def _v1(fin: int, fout: int, **kwargs: Any) -> Any:
    return lambda x: _apps().efficientnet.block(x, filters_in=fin, filters_out=fout, se_ratio=0.25, name="b", **kwargs)


def _v2(kind: str, fin: int, fout: int, t: int, k: int = 3, s: int = 1, p: float = 0.0, se: float = 0.0) -> Any:
    def make(x: Any) -> Any:
        block = getattr(_apps().efficientnet_v2, kind)
        return block(fin, fout, t, k, s, se_ratio=se, survival_probability=p, name="b")(x)

    return make


V1, V2 = "norm = bn", "norm = bn(momentum=0.9)"
MBCONV = [
    (V1, "mbconv(16, p=0.1)", (8, 8, 16), _v1(16, 16, expand_ratio=6, drop_rate=0.1)),
    (V1, "mbconv(16, k=5)", (8, 8, 16), _v1(16, 16, expand_ratio=6, kernel_size=5)),
    (V1, "mbconv_proj(16, 24, k=5)", (8, 8, 16), _v1(16, 24, expand_ratio=6, kernel_size=5)),
    (V1, "mbconv_down(16, 24)", (8, 8, 16), _v1(16, 24, expand_ratio=6, strides=2)),
    (V1, "mbconv_down(16, 24, k=5)", (8, 8, 16), _v1(16, 24, expand_ratio=6, kernel_size=5, strides=2)),
    (V1, "mbconv_down(16, 24, k=5, even=0)", (9, 9, 16), _v1(16, 24, expand_ratio=6, kernel_size=5, strides=2)),
    (V1, "mbconv1(16, p=0.1)", (8, 8, 16), _v1(16, 16, expand_ratio=1, drop_rate=0.1)),
    (V1, "mbconv1_proj(32, 16)", (8, 8, 32), _v1(32, 16, expand_ratio=1)),
    (V2, "mbconv(16, t=4, p=0.1)", (8, 8, 16), _v2("MBConvBlock", 16, 16, 4, p=0.1, se=0.25)),
    (V2, "mbconv_proj(16, 32, t=4, s=2)", (8, 8, 16), _v2("MBConvBlock", 16, 32, 4, s=2, se=0.25)),
    (V2, "fused_mbconv(16, p=0.1)", (8, 8, 16), _v2("FusedMBConvBlock", 16, 16, 4, p=0.1)),
    (V2, "fused_mbconv_proj(16, 32, s=2)", (8, 8, 16), _v2("FusedMBConvBlock", 16, 32, 4, s=2)),
    (V2, "fused_mbconv1(16, p=0.1)", (8, 8, 16), _v2("FusedMBConvBlock", 16, 16, 1, p=0.1)),
    (V2, "fused_mbconv1_proj(16, s=2)", (8, 8, 32), _v2("FusedMBConvBlock", 32, 16, 1, s=2)),
]


@pytest.mark.parametrize(("norm", "use", "shape", "block"), MBCONV, ids=[c[1] for c in MBCONV])
def test_mbconv_blocks_are_keras_applications(
    keras: Any, norm: str, use: str, shape: tuple[int, ...], block: Any
) -> None:
    same_computation(keras, f"use std/mbconv\n{norm}\ninput{shape} {use}", shape, block)


# MobileNetV3: 16 channels in, expansion 4 (e = 64), SE of _depth(64 * 0.25) = 16 channels
def _v3(f: int, k: int, s: int, se: float | None, act: str) -> Any:
    def make(x: Any) -> Any:
        v3 = _apps().mobilenet_v3
        return v3._inverted_res_block(x, 4, f, k, s, se, getattr(v3, act), block_id=1)

    return make


MOBILENET_V3 = [
    ("res(bneck_relu(64, 16))", (8, 8, 16), _v3(16, 3, 1, None, "relu")),
    ("bneck_relu(64, 24, k=5)", (8, 8, 16), _v3(24, 5, 1, None, "relu")),
    ("bneck_relu_s2(64, 24)", (8, 8, 16), _v3(24, 3, 2, None, "relu")),
    ("res(bneck_relu_se(64, 16, 16, k=5))", (8, 8, 16), _v3(16, 5, 1, 0.25, "relu")),
    ("bneck_relu_se_s2(64, 24, 16, k=5)", (8, 8, 16), _v3(24, 5, 2, 0.25, "relu")),
    ("res(bneck_hswish(64, 16))", (8, 8, 16), _v3(16, 3, 1, None, "hard_swish")),
    ("bneck_hswish_s2(64, 24, k=5, even=0)", (9, 9, 16), _v3(24, 5, 2, None, "hard_swish")),
    ("res(bneck_hswish_se(64, 16, 16, k=5))", (8, 8, 16), _v3(16, 5, 1, 0.25, "hard_swish")),
    ("bneck_hswish_se(64, 24, 16)", (8, 8, 16), _v3(24, 3, 1, 0.25, "hard_swish")),
    ("bneck_hswish_se_s2(64, 24, 16)", (8, 8, 16), _v3(24, 3, 2, 0.25, "hard_swish")),
]


@pytest.mark.parametrize(("use", "shape", "block"), MOBILENET_V3, ids=[c[0] for c in MOBILENET_V3])
def test_mobilenet_v3_blocks_are_keras_applications(keras: Any, use: str, shape: tuple[int, ...], block: Any) -> None:
    same_computation(keras, f"use std/mobilenet_v3\nnorm = bn(momentum=0.999)\ninput{shape} {use}", shape, block)


# ConvNeXt
@pytest.mark.parametrize(("use", "rate"), [("convnext_block(16)", 0.0), ("convnext_block_droppath(16, 0.1)", 0.1)])
def test_convnext_blocks_are_keras_applications(keras: Any, use: str, rate: float) -> None:
    spec = f"use std/convnext\nnorm = ln(eps=1e-6)\ninput(8, 8, 16) {use}  # normdsl: allow(pointwise-dense)"
    block = _apps().convnext.ConvNeXtBlock(16, drop_path_rate=rate, layer_scale_init_value=1e-6, name="c")
    same_computation(keras, spec, (8, 8, 16), block)

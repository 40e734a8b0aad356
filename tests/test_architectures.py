"""Real architectures reproduced exactly: keras.applications is the oracle (weights=None, no download)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from conftest import ROOT, built_rows, checker_rows, keras_rows

import normdsl

RESNET50 = ROOT / "examples" / "resnet50.nd"
VGG16 = ROOT / "examples" / "vgg16.nd"


def compact(rows: list[tuple[str, tuple[int, ...], int, int]]) -> list[tuple[str, tuple[int, ...], int]]:
    """(class, output shape, param count) per layer, as the issue states the comparison."""
    return [(cls, shape, trainable + frozen) for cls, shape, trainable, frozen in rows]


def configs_up_to_bn_axis(model: Any) -> list[dict[str, Any]]:
    """Layer configs, names aside; keras.applications writes BatchNormalization(axis=3), we write the
    equivalent axis=-1 on these rank-4 tensors."""
    out = []
    for layer in model.layers[1:]:
        config = dict(layer.get_config())
        config.pop("name")
        if type(layer).__name__ == "BatchNormalization" and config["axis"] in (3, [3]):
            config["axis"] = -1
        out.append({"class": type(layer).__name__, **config})
    return out


def run_generated(code: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(code, "<generated>", "exec"), namespace)
    return namespace["build_model"]()


@pytest.fixture(scope="module")
def resnet50(keras: Any) -> Any:
    return keras.applications.ResNet50(weights=None)


@pytest.fixture(scope="module")
def vgg16(keras: Any) -> Any:
    return keras.applications.VGG16(weights=None)


def test_resnet50_static_totals_equal_keras_applications(resnet50: Any) -> None:
    network = normdsl.check(normdsl.parse(RESNET50.read_text(), filename=RESNET50.name))
    assert network.params == resnet50.count_params() == 25_636_712
    frozen = sum(int(w.numpy().size) for w in resnet50.non_trainable_weights)
    assert network.non_trainable == frozen == 53_120
    assert sorted(compact(checker_rows(network))) == sorted(compact(keras_rows(resnet50)))


def test_resnet50_generated_module_and_direct_build_equal_keras_applications(resnet50: Any) -> None:
    network = normdsl.check(normdsl.parse(RESNET50.read_text(), filename=RESNET50.name))
    reference = compact(keras_rows(resnet50))
    generated = run_generated(normdsl.render(network))
    direct = normdsl.build_model(network)
    assert compact(keras_rows(generated)) == reference
    assert compact(keras_rows(direct)) == reference
    assert configs_up_to_bn_axis(generated) == configs_up_to_bn_axis(resnet50)
    assert checker_rows(network) == built_rows(network)


def test_resnet50_spec_is_at_most_25_lines() -> None:
    assert len(RESNET50.read_text().splitlines()) <= 25


def test_resnet50_generated_module_defines_a_function_per_block() -> None:
    code = normdsl.render(normdsl.parse(RESNET50.read_text(), filename=RESNET50.name))
    for signature in (
        "def norm(x):",
        "def bottleneck(x, f, s=1):",
        "def identity(x, f):",
        "def stage(x, f, blocks, s=2):",
    ):
        assert signature in code
    assert code.count("layers.Conv2D(") < 10  # a function per block, not 53 unrolled convolutions


def test_resnet50_with_group_norm_swaps_every_batch_norm(resnet50: Any) -> None:
    """The GN paper's ResNet-50-GN: each BatchNormalization (4·C weights) becomes GroupNormalization(32)
    (2·C weights), everything else as keras.applications builds it."""
    network = normdsl.check(normdsl.parse(RESNET50.read_text(), filename=RESNET50.name), norm="gn(32)")
    expected = [
        ("GroupNormalization", shape, params // 2) if cls == "BatchNormalization" else (cls, shape, params)
        for cls, shape, params in compact(keras_rows(resnet50))
    ]
    assert compact(keras_rows(normdsl.build_model(network))) == expected
    assert network.non_trainable == 0
    assert network.params == sum(params for _, _, params in expected)
    norms = [layer for layer in network.layers if layer.keras_class == "GroupNormalization"]
    assert len(norms) == 53 and all(dict(layer.kwargs)["groups"] == 32 for layer in norms)


def test_resnet50_gn_summary_needs_no_tensorflow() -> None:
    code = (
        "import sys; from normdsl import cli; code = cli.main(['summary', sys.argv[1], '--norm', 'gn(32)']);"
        "assert not {'tensorflow', 'keras'} & set(sys.modules); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(RESNET50)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Non-trainable params: 0" in result.stdout and "GroupNormalization" in result.stdout


def test_vgg16_equals_keras_applications_layer_by_layer(vgg16: Any) -> None:
    network = normdsl.check(normdsl.parse(VGG16.read_text(), filename=VGG16.name))
    assert network.params == vgg16.count_params() == 138_357_544
    assert checker_rows(network) == keras_rows(vgg16)
    generated = run_generated(normdsl.render(network))
    assert keras_rows(generated) == keras_rows(vgg16)
    assert configs_up_to_bn_axis(generated) == configs_up_to_bn_axis(vgg16)

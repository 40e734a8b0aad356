"""The summary's own figures (Keras has no MACs): checked against hand derivations."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import ROOT

import normdsl
from normdsl import summary


@pytest.mark.parametrize(
    ("text", "macs"),
    [
        # out 3×3, kernel 3×3 over 2 channels, 3 filters: 3·3 · 3·3·2 · 3
        ("input(5, 5, 2) conv3", 3 * 3 * 3 * 3 * 2 * 3),
        # groups=2: each filter sees 4/2 channels; same padding keeps 6×6
        ("input(6, 6, 4) conv8(pad=same, groups=2)", 6 * 6 * 3 * 3 * 2 * 8),
        # dense on a rank-3 tensor: 4·4 positions, 3 inputs, 5 units
        ("input(4, 4, 3) dense5", 4 * 4 * 3 * 5),
        # depthwise, multiplier 2: out 4×4×6, kernel 3×3 per output channel
        ("input(6, 6, 3) dwconv(mult=2)", 4 * 4 * 3 * 3 * 6),
        # separable: the depthwise part (4·4·3·3·3) plus the pointwise part (4·4·3·7)
        ("input(6, 6, 3) sepconv7", 4 * 4 * 3 * 3 * 3 + 4 * 4 * 3 * 7),
        ("input(6, 6, 3) maxpool bn relu gap", 0),
    ],
)
def test_macs_follow_the_documented_convention(text: str, macs: int) -> None:
    network = normdsl.check(text)
    assert network.macs == macs
    assert json.loads(summary.as_json(network))["flops"] == 2 * macs


def test_activation_memory_is_output_elements_times_four_bytes() -> None:
    network = normdsl.check("input(8, 8, 3) conv4 relu")  # two outputs of 6·6·4 values
    assert json.loads(summary.as_json(network))["activation_bytes"] == 2 * 6 * 6 * 4 * 4


def test_the_table_has_one_row_per_layer_and_kerass_total_line() -> None:
    text = summary.text(normdsl.check("input(8, 8, 3) conv4 bn", input_shape=None))
    assert "conv4 (Conv2D)" in text and "bn (BatchNormalization)" in text
    # Conv2D: 3·3·3·4 + 4 = 112; BatchNormalization: 4·4 = 16, 8 of them non-trainable
    assert " Total params: 128 (512.00 B)" in text and " Non-trainable params: 8 (32.00 B)" in text


# ---- rows as resolved, block paths, the graph (issue 15) ---------------------------------------

RESNET50 = ROOT / "examples" / "resnet50.nd"
BRANCHING = """
let stem(f) = (conv{f}(pad=same) bn relu)
let unit(f) = (res(conv{f}(pad=same) relu conv{f}(k=1)) relu)
let mixed(f) = (cat(conv{f}(k=1), (conv{f}(pad=same) unit(f)), maxpool(s=1, pad=same)) conv{f}(k=1))
input(16, 16, 3)
stem(8) unit(8)*2 res(mixed(8), shortcut=conv8(k=1)) gap dense10(act=softmax)
"""


def _table(markdown: str) -> list[dict[str, str]]:
    """The rows of summary(..., "markdown") by column name (cells unescaped)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    split = [[cell.replace("\\", "") for cell in line[2:-2].split(" | ")] for line in lines]
    return [dict(zip(split[0], row, strict=True)) for row in split[1:]]


def test_rows_of_block_layers_show_the_resolved_call_and_the_block_path() -> None:
    text = summary.text(normdsl.check(RESNET50.read_text()))
    assert "{" not in text  # no unfilled conv{4*f}
    # the second stage's projection: conv{4*f}(k=1, s=s) with f=128, s=2
    assert re.search(r" conv512\(k=1, s=2\) \(Conv2D\) +stage\[2\]/bottleneck +\(None, 28, 28, 512\)", text)
    assert re.search(r" bn\(eps=1\.001e-05\) \(BatchNormalization\) +stage\[4\]/identity\[2\]/norm\[3\] ", text)


def test_a_resolved_call_builds_the_same_keras_layer(keras: Any) -> None:
    from normdsl.emit_keras import build

    spec = (
        'let b(f, s=1) = (conv{2*f}(k=(1, 3), s=s, act=relu, bias=false, name="first") gn({f}) relu(max=6))\n'
        "input(32, 32, 4) b(2, s=2) zeropad(((0, 1), (1, 0))) dwconv(mult=2, dilation=2) sepconv8(pad=same) maxpool(3, s=1)"
        " upsample(size=(2, 1), interp=bilinear) in bn(momentum=0.9, eps=1e-5) dropout(0.25) gap dense4"
    )
    network = normdsl.check(spec)
    _, built = build(network)
    for layer, theirs in zip(network.layers, built, strict=True):
        again = normdsl.check(f"input{layer.input_shape} {layer.call}")
        assert len(again.layers) == 1
        _, (ours,) = build(again)
        assert {**ours.get_config(), "name": None} == {**theirs.get_config(), "name": None}, layer.call


def test_connected_to_and_json_inputs_are_the_graph_keras_builds(keras: Any) -> None:
    from normdsl.emit_keras import build

    network = normdsl.check(BRANCHING)
    model, built = build(network)
    index = {layer.name: i for i, layer in enumerate(built)} | {model.layers[0].name: -1}

    def history(value: Any) -> list[str]:
        if isinstance(value, dict):
            found = [value["config"]["keras_history"][0]] if value.get("class_name") == "__keras_tensor__" else []
            return found + [name for v in value.values() for name in history(v)]
        return [name for v in value for name in history(v)] if isinstance(value, list | tuple) else []

    inbound = {c["name"]: [index[n] for n in history(c["inbound_nodes"])] for c in model.get_config()["layers"]}
    keras_inputs = [inbound[layer.name] for layer in built]
    assert [layer["inputs"] for layer in json.loads(summary.as_json(network))["layers"]] == keras_inputs
    rows = _table(normdsl.summary(network, "markdown"))
    assert [row["#"] for row in rows] == [str(i) for i in range(len(built))]
    connected = [[-1 if j == "input" else int(j) for j in row["Connected to"].split(", ")] for row in rows]
    assert connected == keras_inputs


def test_a_sequential_model_has_no_connected_to_column() -> None:
    text = summary.text(normdsl.check("input(8, 8, 3) conv4 bn relu"))
    header = text.splitlines()[2].split()
    assert "Connected" not in header and "#" not in header[:1] and "Block" not in header


@pytest.fixture(scope="module")
def keras_resnet50(keras: Any) -> Any:
    return keras.applications.ResNet50(weights=None)


def _keras_groups(model: Any, pattern: str) -> dict[str, tuple[int, int]]:
    """keras.applications' layers grouped by the part of their name ``pattern`` matches: (layers, params)."""
    groups: dict[str, tuple[int, int]] = {}
    for layer in model.layers:
        match = re.match(pattern, layer.name)
        if match:
            count, params = groups.get(match[0], (0, 0))
            groups[match[0]] = (count + 1, params + layer.count_params())
    return groups


def test_depth_1_collapses_each_resnet50_stage_as_keras_applications_names_them(keras_resnet50: Any) -> None:
    network = normdsl.check(RESNET50.read_text())
    rows = summary.rows(network, depth=1)
    stages = [(int(r.label.split(" (")[1].split()[0]), r.params) for r in rows if r.label.startswith("stage")]
    assert stages == list(_keras_groups(keras_resnet50, r"conv[2-5]_").values())
    assert [r.path for r in rows if r.path.startswith("stage")] == ["stage[1]", "stage[2]", "stage[3]", "stage[4]"]
    assert len(rows) == 4 + sum(not re.match(r"conv[2-5]_|input", k.name) for k in keras_resnet50.layers)
    assert sum(r.params for r in rows) == keras_resnet50.count_params()


def test_depth_2_collapses_each_resnet50_block_as_keras_applications_names_them(keras_resnet50: Any) -> None:
    network = normdsl.check(RESNET50.read_text())
    rows = [r for r in summary.rows(network, depth=2) if r.path.startswith("stage")]
    blocks = [(r.last - r.first + 1, r.params) for r in rows]
    assert blocks == list(_keras_groups(keras_resnet50, r"conv[2-5]_block[0-9]+_").values())
    text = summary.text(network, depth=2)
    assert re.search(r" identity \(10 layers\) +stage\[3\]/identity\[5\] +\(None, 14, 14, 1024\) +1,121,792 ", text)


def test_depth_keeps_a_single_layer_block_as_its_layer() -> None:
    rows = summary.rows(normdsl.check("norm = bn\ninput(8, 8, 3) conv4 norm"), depth=1)
    assert [r.label for r in rows] == ["conv4 (Conv2D)", "bn (BatchNormalization)"]


def test_collapsed_rows_connect_to_the_rows_outside_them() -> None:
    network = normdsl.check(BRANCHING)
    rows = _table(normdsl.summary(network, "markdown", depth=1))
    by_label = {row["Layer (type)"].split(" (")[0]: row for row in rows}
    merge = next(row for row in rows if row["Layer (type)"] == "res (Add)")
    mixed, shortcut = by_label["mixed"], by_label["conv8(k=1)"]
    assert merge["Connected to"] == f"{shortcut['#']}, {mixed['#']}"
    assert mixed["Connected to"] == by_label["unit"]["#"] == "8-12"  # stem: layers 0-2; each unit 5 layers


def test_the_readmes_summary_example_is_real_output() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- summary-example:", 1)[1].split("\n", 1)[1].split("<!-- /summary-example -->")[0]
    blocks = [
        "\n".join(line[4:] for line in chunk.splitlines())
        for chunk in re.split(r"\n\n[^ \n][^\n]*\n\n", section.strip("\n"))
    ]
    spec, full, collapsed = blocks
    network = normdsl.check(spec)
    assert full == normdsl.summary(network)
    assert collapsed == normdsl.summary(network, depth=1)


def test_depth_tells_apart_consecutive_uses_of_composites_and_one_layer_blocks() -> None:
    spec = "let c(f) = conv{f}(pad=same)\ninput(16, 16, 32) se(r=4) se c(8) c(16)"
    rows = summary.rows(normdsl.check(spec, norm=None), depth=1)
    assert [(r.path, r.last - r.first + 1) for r in rows] == [("se[1]", 4), ("se[2]", 4), ("c[1]", 1), ("c[2]", 1)]
    assert [r.label for r in rows[2:]] == ["conv8(pad=same) (Conv2D)", "conv16(pad=same) (Conv2D)"]


def test_uses_of_a_replaced_norm_are_told_apart() -> None:
    network = normdsl.check("norm = bn\ninput(8, 8, 4) norm norm relu norm", norm="gn(2)")
    assert [r.path for r in summary.rows(network, depth=1)] == ["norm[1]", "norm[2]", "", "norm[3]"]

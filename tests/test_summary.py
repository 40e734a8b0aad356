"""The summary's own figures (Keras has no MACs): checked against hand derivations."""

from __future__ import annotations

import json

import pytest

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

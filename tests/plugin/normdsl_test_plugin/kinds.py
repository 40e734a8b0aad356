"""The kinds this plugin adds. Importing this module must not import TensorFlow (normdsl checks specs
without it); the custom Keras layer lives in normdsl_test_plugin.layers."""

from __future__ import annotations

from normdsl.layers import Figures, LayerKind, Param, Shape


def _same(shapes: tuple[Shape, ...], config: object) -> Figures:
    return Figures(shapes[0])


def _scale(shapes: tuple[Shape, ...], config: object) -> Figures:
    shape = shapes[0]
    return Figures(shape, trainable=shape[-1])  # one learned factor per channel


KINDS = [
    # a kind backed by a Keras layer: Activation("hard_swish")
    LayerKind(
        "hswish",
        "Activation",
        _same,
        "hard swish: x · relu6(x + 3) / 6",
        fixed=((None, "hard_swish"),),
        params=(Param("name", "name", "name"),),
    ),
    # a kind backed by the plugin's own Keras layer class
    LayerKind(
        "scale",
        "Scale",
        _scale,
        "a learned factor per channel",
        module="normdsl_test_plugin.layers",
        params=(Param("init", "init", "float", 1.0), Param("name", "name", "name")),
    ),
]

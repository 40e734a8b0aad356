"""Shared test helpers: Keras as the oracle, and the example specs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.nd"))

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def example_ids() -> list[str]:
    return [p.stem for p in EXAMPLES]


@pytest.fixture(scope="session")
def keras() -> Any:
    from tensorflow import keras

    return keras


def keras_rows(model_or_layers: Any) -> list[tuple[str, tuple[int, ...], int, int]]:
    """Per layer, as Keras computes it: (class, output shape without batch, trainable, non-trainable).

    A model's layers come in Keras's own order; pass a list of layers for another order.
    """
    layers = model_or_layers if isinstance(model_or_layers, list) else model_or_layers.layers
    rows = []
    for layer in layers:
        if type(layer).__name__ == "InputLayer":
            continue
        rows.append(
            (
                type(layer).__name__,
                tuple(layer.output.shape[1:]),
                sum(int(w.numpy().size) for w in layer.trainable_weights),
                sum(int(w.numpy().size) for w in layer.non_trainable_weights),
            )
        )
    return rows


def readme_sessions(marker: str) -> list[tuple[list[str], str]]:
    """The ``$ normdsl ...`` commands shown between ``<!-- MARKER`` and ``<!-- /MARKER -->`` in the README,
    each as its arguments (after ``normdsl``) and the output shown under it."""
    import shlex

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split(f"<!-- {marker}", 1)[1].split("\n", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    sessions: list[tuple[list[str], list[str]]] = []
    for line in (line[4:] for line in block.splitlines() if line.startswith("    ") or line == ""):
        if line.startswith("$ normdsl "):
            sessions.append((shlex.split(line)[2:], []))
        elif sessions:
            sessions[-1][1].append(line)
    return [(args, "\n".join(shown).rstrip("\n")) for args, shown in sessions]


def built_rows(network: Any) -> list[tuple[str, tuple[int, ...], int, int]]:
    """What Keras computes for each layer of a directly built network, in the checker's order."""
    from normdsl.emit_keras import build

    return keras_rows([layer for layer in build(network)[1] if layer is not None])  # (None: tensor arithmetic)


def checker_rows(network: Any) -> list[tuple[str, tuple[int, ...], int, int]]:
    from normdsl.layers import KINDS

    return [
        (layer.keras_class, layer.output_shape, layer.trainable, layer.non_trainable)
        for layer in network.layers
        if layer.kind not in KINDS or KINDS[layer.kind].operator is None  # tensor arithmetic is no Keras layer
    ]


def configs(model: Any) -> list[dict[str, Any]]:
    """Each layer's Keras config, names aside."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        config = dict(layer.get_config())
        config.pop("name", None)
        out.append({"class": type(layer).__name__, **config})
    return out

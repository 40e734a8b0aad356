"""normdsl compare and explain (issue 14, the static part): the seed notebook's four variants side by
side, every figure as Keras computes it for the same models, batch dependence as Keras's models
behave in training, and no framework imported."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import readme_sessions
from markdown_it import MarkdownIt

import normdsl
from normdsl import compare

ROOT = Path(__file__).parent.parent
SEED = ROOT / "examples" / "seed.nd"
NORMS = {  # the seed notebook's four normalizations, as Keras layers
    "bn": lambda L: L.BatchNormalization(axis=-1),
    "ln": lambda L: L.LayerNormalization(axis=-1),
    "in": lambda L: L.GroupNormalization(groups=-1, axis=-1),
    "gn(16)": lambda L: L.GroupNormalization(groups=16, axis=-1),
}


def seed_model(keras: Any, norm: str, shape: tuple[int, ...] = (224, 224, 3)) -> Any:
    """The seed notebook's model, written out in Keras."""
    L = keras.layers
    inputs = keras.Input(shape)
    x = L.Conv2D(128, 3)(L.Conv2D(64, 3)(L.Conv2D(32, 3)(inputs)))
    return keras.Model(inputs, L.Conv2D(256, 3)(NORMS[norm](L)(x)))


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "normdsl", *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_the_four_seed_variants_have_kerass_figures(keras: Any) -> None:
    found = compare.variants([(str(SEED), SEED.read_text())], list(NORMS))
    assert [v.name for v in found] == list(NORMS)
    for variant in found:
        reference = seed_model(keras, variant.name)
        row = compare.row(variant)
        trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
        assert (row["params"], row["trainable"]) == (reference.count_params(), trainable)
        assert row["non_trainable"] == reference.count_params() - trainable
        assert tuple(row["output"]) == tuple(reference.output.shape[1:])
        assert row["norm_sites"] == 1


def test_batch_dependence_is_what_keras_models_do_in_training(keras: Any) -> None:
    """A variant is batch-dependent when, in training, one sample's output changes with another sample."""
    found = {v.name: v for v in compare.variants([(str(SEED), SEED.read_text())], list(NORMS), input_shape=(12, 12, 3))}
    data = np.random.default_rng(0).standard_normal((2, 12, 12, 3)).astype("float32")
    changed = data.copy()
    changed[1] *= 5.0  # only the second sample differs
    for name, variant in found.items():
        assert variant.network is not None
        model = normdsl.build_model(variant.network)
        first = np.asarray(model(data, training=True))[0]
        again = np.asarray(model(changed, training=True))[0]
        assert compare.row(variant)["batch_dependent"] == (not np.allclose(first, again, atol=1e-6)), name


def test_a_failing_variant_is_a_row_and_its_diagnostics_follow_the_table() -> None:
    result = run("compare", str(SEED), "--norm", "bn", "gn(12)", "ln")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["bn", "gn(12)", "ln"]
    assert "128 channels cannot be split into 12 groups" in lines[3]
    assert f"{SEED}:6:23: error: gn(12): 128 channels cannot be split into 12 groups" in result.stdout


def test_compare_is_valid_json_csv_and_markdown() -> None:
    args = ("compare", str(SEED), "--norm", "bn", "gn(16)")
    data = json.loads(run(*args, "--json").stdout)
    assert [v["variant"] for v in data["variants"]] == ["bn", "gn(16)"]
    rows = list(csv.DictReader(io.StringIO(run(*args, "--csv").stdout)))
    assert [r["variant"] for r in rows] == ["bn", "gn(16)"] and rows[0]["params"] == str(data["variants"][0]["params"])
    tokens = MarkdownIt().enable("table").parse(run(*args, "--markdown").stdout)
    assert sum(t.type == "tr_open" for t in tokens) == 3  # a header and two variants


def test_several_specs_and_norms_are_the_cross_product(tmp_path: Path) -> None:
    other = tmp_path / "wide.nd"
    other.write_text("norm = bn\ninput(32, 32, 3)\nconv64 norm relu\n")
    found = compare.variants([(str(SEED), SEED.read_text()), (str(other), other.read_text())], ["bn", "ln"])
    assert [v.name for v in found] == [f"{SEED} bn", f"{SEED} ln", f"{other} bn", f"{other} ln"]


def test_layers_shows_only_the_sites_that_differ() -> None:
    text = run("compare", str(SEED), "--norm", "bn", "gn(16)", "--layers").stdout.splitlines()
    assert text[0].split() == ["Site", "Channels", "bn", "gn(16)"]
    assert text[2].split() == ["6:23", "128", "bn", "(512)", "gn(16)", "(256)"]  # BN: 4·128, GN: 2·128
    assert "do not differ" in run("compare", str(SEED), "--norm", "bn", "bn", "--layers").stdout


def test_explain_says_what_each_site_computes(keras: Any) -> None:
    network = normdsl.check(normdsl.parse(SEED.read_text(), filename="seed.nd"), norm="gn(16)")
    layer = seed_model(keras, "gn(16)").layers[4]
    assert type(layer).__name__ == "GroupNormalization"
    shape = tuple(layer.input.shape[1:])  # (218, 218, 128): three valid 3×3 convolutions of 224
    expected = (
        f"gn(16) at 6:23 on {shape}: statistics per sample over (H, W) and {shape[-1] // 16} channels per group,"
        f" 16 groups; batch-independent; {layer.count_params()} trainable weights"
    )
    assert compare.explain(network) == expected


@pytest.mark.parametrize(
    ("norm", "words"),
    [
        ("bn", "statistics per channel over the batch and (H, W), 128 channels; batch-dependent in training"),
        ("ln", "statistics per sample and position over the 128 channels; batch-independent"),
        ("in", "statistics per sample over (H, W) and 1 channel per group, 128 groups; batch-independent"),
    ],
)
def test_explain_for_each_seed_normalization(norm: str, words: str) -> None:
    network = normdsl.check(normdsl.parse(SEED.read_text(), filename="seed.nd"), norm=norm)
    assert words in compare.explain(network)


def test_compare_and_explain_need_no_tensorflow() -> None:
    code = (
        "import sys; from normdsl import cli\n"
        "a = cli.main(['compare', sys.argv[1], '--norm', 'bn', 'ln', 'in', 'gn(16)'])\n"
        "b = cli.main(['explain', sys.argv[1], '--norm', 'gn(16)'])\n"
        "assert not {'tensorflow', 'keras', 'jax', 'torch'} & set(sys.modules); sys.exit(a or b)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(SEED)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_readmes_compare_examples_are_real_output() -> None:
    sessions = readme_sessions("compare-example")
    assert len(sessions) == 3
    for args, shown in sessions:
        assert run(*args).stdout.rstrip("\n") == shown, args

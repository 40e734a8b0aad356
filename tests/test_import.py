"""normdsl import (issue 19): Keras models back into compact specs, proven by rebuilding them.

Keras is the oracle: each keras.applications model (weights=None) is imported, the spec rebuilt with
build_model and with the generated module, and both must have the reference's layer configurations
(names aside; in Keras's order), parameter counts and, with the reference's weights copied across,
its outputs within 1e-5. The few rewrites the importer announces in the spec's head (EfficientNet's
Reshape after pooling, ConvNeXt's tensor sums) change layers, not weights: there the weight-holding
layers' configurations are compared, in order. Every example and random specs round-trip: spec →
Keras model → import → spec gives the same network (the same calls, connected the same way).
"""

from __future__ import annotations

import gc
import io
import json
import random
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, readme_sessions
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import keras_model, random_model
from test_applications import comparable_config, generated_model, make_nontrivial, outputs, transplant, weighted

import normdsl
from normdsl.importer import ImportProblem, comparable, from_config, read_archive

TOLERANCE = 1e-5
LIMITS = {"ResNet50": 30, "VGG16": 12, "MobileNetV2": 30, "DenseNet121": 20}  # the compactness targets
APPLICATIONS = [
    "ResNet50", "VGG16", "MobileNetV2", "DenseNet121", "ResNet50V2", "EfficientNetB0", "MobileNetV3Large",
    "ConvNeXtTiny",
]  # fmt: skip
REWRITTEN = {"EfficientNetB0", "ConvNeXtTiny"}  # the importer's announced rewrites change non-weight layers


def code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _flat(layers: list[Any]) -> list[Any]:
    out = []
    for layer in layers:
        if type(layer).__name__ in ("Functional", "Sequential"):
            out += _flat(layer.layers)
        elif type(layer).__name__ != "InputLayer":
            out.append(layer)
    return out


def all_configs(model: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every layer's config as the importer compares them (names aside, the last axis as -1), in Keras's order."""
    found = []
    for layer in _flat(model.layers):
        tensor = layer.input[0] if isinstance(layer.input, list) else layer.input
        found.append((type(layer).__name__, comparable(layer.get_config(), len(tensor.shape), tensor.shape[-1])))
    return found


@dataclass
class Imported:
    name: str
    text: str
    seconds: float
    params: int
    reference_configs: list[Any]
    weighted_configs: list[Any]
    built: dict[str, tuple[int, list[Any], list[Any], float]]  # way → params, configs, weighted configs, max error


TEXTS: dict[str, str] = {}  # each application's import, for the tests that read it again


def imported(keras: Any, name: str) -> Imported:
    """The application built, imported, rebuilt both ways and run with its weights (one model beside the
    reference at a time: VGG-16 is 553 MB of weights)."""
    extra = {"input_shape": (224, 224, 3)} if name.startswith("MobileNetV3") else {}
    reference = getattr(keras.applications, name)(weights=None, **extra)
    start = time.perf_counter()
    text = normdsl.from_keras(reference, source=f"keras.applications.{name}")
    seconds = time.perf_counter() - start
    TEXTS[name] = text
    make_nontrivial(reference, seed=13)
    data = np.random.default_rng(7).standard_normal((1, *reference.inputs[0].shape[1:])).astype("float32")
    expected = outputs(reference, data)
    network = normdsl.check(text)
    built = {}
    for way, build in (("direct", normdsl.build_model), ("generated", generated_model)):
        model = build(network)
        error = float("inf")
        if [w.shape for w in model.weights] == [w.shape for w in reference.weights]:
            transplant(reference, model)
            error = float(np.abs(outputs(model, data) - expected).max())
        mine = [comparable_config(layer) for layer in weighted(model)]
        built[way] = (model.count_params(), all_configs(model), mine, error)
        del model
        gc.collect()
    result = Imported(
        name,
        text,
        seconds,
        reference.count_params(),
        all_configs(reference),
        [comparable_config(layer) for layer in weighted(reference)],
        built,
    )
    del reference
    gc.collect()
    return result


@pytest.mark.parametrize("name", APPLICATIONS)
def test_an_imported_application_rebuilds_the_same_model_from_a_compact_spec(keras: Any, name: str) -> None:
    """One test per application, so that each is built once whichever worker runs it (pytest-xdist)."""
    found = imported(keras, name)
    for way in ("direct", "generated"):
        params, configs, weighted_configs, error = found.built[way]
        assert params == found.params, way
        assert weighted_configs == found.weighted_configs, way
        if name not in REWRITTEN:
            assert configs == found.reference_configs, way
        assert error <= TOLERANCE, way
    # compact, formatted, quick
    assert code_lines(found.text) <= LIMITS.get(name, 30), found.text
    assert normdsl.format(found.text) == found.text
    assert found.seconds < 5
    # the rewrites announced in the spec's head, and only those
    head = "\n".join(line for line in found.text.splitlines() if line.startswith("#"))
    if name == "EfficientNetB0":
        assert "Reshape((1, 1, C)) is written gap(keepdims=true)" in head
        assert "VarianceScaling is not kept" in head
    elif name == "ConvNeXtTiny":
        assert "a sum of tensors" in head
    elif name == "MobileNetV3Large":
        assert "hard_silu" in head
    else:
        assert len(head.splitlines()) == 1, head
    # the README's table states its line count
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- import-table -->", 1)[1].split("<!-- /import-table -->", 1)[0]
    assert f"| `{name}` | {code_lines(found.text)} |" in table


def test_imported_resnet50_with_group_norm_is_the_hand_written_example_with_it(keras: Any) -> None:
    if "ResNet50" not in TEXTS:  # (run alone: import it here)
        TEXTS["ResNet50"] = normdsl.from_keras(keras.applications.ResNet50(weights=None))
        gc.collect()
    text = TEXTS["ResNet50"]
    ours = normdsl.build_model(text, norm="gn(32)")
    hand = normdsl.build_model((ROOT / "examples" / "resnet50.nd").read_text(encoding="utf-8"), norm="gn(32)")
    assert keras_graph(ours) == keras_graph(hand)
    assert ours.count_params() == hand.count_params() == 25_583_592


# ---- round trips: spec → Keras → import → spec --------------------------------------------------


def keras_graph(model: Any) -> list[tuple[str, dict[str, Any], list[int]]]:
    """A Keras model as what it computes: each layer's class, config (as the importer compares them: names
    aside) and the positions of the layers it reads, in Keras's order; equal for the same model."""
    config = json.loads(json.dumps(model.get_config(), default=list))
    position = {layer["name"]: i for i, layer in enumerate(config["layers"])}
    found = []
    for layer in config["layers"]:
        sources = [
            position[history[0]]
            for node in layer["inbound_nodes"]
            for history in re.findall(r'"keras_history": \[("[^"]*"), 0, 0\]', json.dumps(node))
            for history in [[json.loads(history)]]
        ]
        shape = layer.get("build_config", {}).get("input_shape") or [None, None, None, None]
        rank = len(shape) if not isinstance(shape[0], list) else len(shape[0])
        channels = shape[-1] if not isinstance(shape[0], list) else None
        found.append((layer["class_name"], comparable(layer["config"], rank, channels), sources))
    return found


# The examples that are keras.applications models (test_applications proves each is) round-trip above, as
# the application itself; efficientnet.nd at its default scale is efficientnet_b0.nd's model.
APPLICATION_EXAMPLES = ("vgg16", "resnet50", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_large", "efficientnet")
OTHER_EXAMPLES = [p for p in EXAMPLES if p.stem not in APPLICATION_EXAMPLES]


@pytest.mark.parametrize("path", OTHER_EXAMPLES, ids=[p.stem for p in OTHER_EXAMPLES])
def test_every_example_round_trips(keras: Any, path: Path) -> None:
    network = normdsl.check(normdsl.parse(path.read_text(encoding="utf-8"), filename=path.name))
    model = normdsl.build_model(network)
    again = normdsl.build_model(normdsl.from_keras(model))
    assert keras_graph(again) == keras_graph(model)
    assert again.count_params() == model.count_params() == network.params
    del model, again
    gc.collect()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(random_model())
def test_random_specs_round_trip(keras: Any, model: Any) -> None:
    shape, twins = model
    try:
        reference = keras_model(keras, shape, twins)
    except ValueError:
        assume(False)
    text = normdsl.from_keras(reference)
    assert keras_graph(normdsl.build_model(text)) == keras_graph(reference), text


# ---- what cannot be imported ------------------------------------------------------------------


def test_lambda_and_custom_layers_are_listed_by_name_class_and_position(keras: Any) -> None:
    class Scale(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2.0

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.Lambda(lambda t: t + 1.0, name="plus_one")(x)
    x = Scale(name="scale")(x)
    model = keras.Model(inputs, keras.layers.Activation("relu6", name="r6")(x))
    with pytest.raises(ImportProblem) as caught:
        normdsl.from_keras(model)
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("layer 2 'plus_one' (Lambda): no kind of normdsl makes this class")
    assert problems[1].startswith("layer 3 'scale' (Scale): no kind of normdsl makes this class")
    assert problems[2].startswith("layer 4 'r6' (Activation): no kind of normdsl makes it exactly")


def test_a_layer_whose_arguments_the_language_cannot_say_is_an_error(keras: Any) -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, kernel_regularizer="l2", name="reg")(inputs)
    with pytest.raises(ImportProblem, match=r"layer 1 'reg' \(Conv2D\): .*kernel_regularizer"):
        normdsl.from_keras(keras.Model(inputs, x))


def test_several_inputs_or_outputs_get_a_clear_message(keras: Any) -> None:
    a, b = keras.Input((4,)), keras.Input((4,))
    two_in = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(ImportProblem, match=r"2 input.*1 output.*one input and one output"):
        normdsl.from_keras(two_in)
    x = keras.layers.Dense(3)(a)
    two_out = keras.Model(a, [x, keras.layers.Dense(2)(x)])
    with pytest.raises(ImportProblem, match=r"1 input.*2 output"):
        normdsl.from_keras(two_out)


def test_a_shared_layer_and_crossing_paths_are_refused(keras: Any) -> None:
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4, name="shared")
    with pytest.raises(ImportProblem, match=r"'shared' .*shared layer"):
        normdsl.from_keras(keras.Model(inputs, dense(dense(inputs))))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(a)
    c = keras.layers.Add(name="c")([inputs, a])  # a is read by b and by c, which never meet
    with pytest.raises(ImportProblem, match="nested sequences"):
        normdsl.from_keras(keras.Model(inputs, keras.layers.Add()([b, c])))


def test_unknown_input_sizes_are_refused(keras: Any) -> None:
    inputs = keras.Input((None, None, 3))
    with pytest.raises(ImportProblem, match="unknown sizes"):
        normdsl.from_keras(keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)))


def test_keep_names_keeps_every_layers_name(keras: Any) -> None:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    model = keras.Model(inputs, keras.layers.Activation("relu", name="stem_relu")(x))
    text = normdsl.from_keras(model, keep_names=True)
    rebuilt = normdsl.build_model(text)
    assert [layer.name for layer in rebuilt.layers[1:]] == ["stem", "stem_bn", "stem_relu"]


# ---- the command ----------------------------------------------------------------------------------


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "normdsl", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_the_readme_shows_the_real_import_of_resnet50() -> None:
    ((args, shown),) = readme_sessions("import-example")
    assert args == ["import", "keras.applications.ResNet50"]
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n") == shown


def test_import_of_a_keras_file_module_function_and_errors(tmp_path: Path) -> None:
    (tmp_path / "mymodels.py").write_text(
        "from tensorflow import keras\n"
        "def build():\n"
        "    inputs = keras.Input((16, 16, 3))\n"
        "    x = keras.layers.Conv2D(8, 3, padding='same')(inputs)\n"
        "    x = keras.layers.Conv2D(8, 3, padding='same')(x)\n"
        "    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))\n"
        "def broken():\n"
        "    raise RuntimeError('no model today')\n"
        "def lam():\n"
        "    inputs = keras.Input((4,))\n"
        "    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name='twice')(inputs))\n",
        encoding="utf-8",
    )
    script = (
        "import sys, mymodels, normdsl.cli\n"
        "mymodels.build().save('model.keras')\n"
        "mymodels.lam().save('lam.keras')\n"
        "for argv in (['import', 'mymodels:build'], ['import', 'model.keras', '-o', 'out.nd'],"
        " ['import', 'model.keras', '-o', 'out.nd'], ['import', 'mymodels:broken'], ['import', 'lam.keras'],"
        " ['import', 'nosuchmodule:f'], ['import', 'keras.applications.ResNet5'], ['import', 'x.keras']):\n"
        "    print('rc', normdsl.cli.main(argv), flush=True)\n"
        "    sys.stderr.flush()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    codes = [line for line in done.stdout.splitlines() if line.startswith("rc ")]
    assert codes == ["rc 0", "rc 0", "rc 0", "rc 1", "rc 1", "rc 1", "rc 1", "rc 2"], done.stdout + done.stderr
    spec = done.stdout.split("rc 0")[0]
    assert "conv8(pad=same)*2 gap" in spec
    assert (tmp_path / "out.nd").read_text(encoding="utf-8").endswith("conv8(pad=same)*2 gap\n")
    assert "wrote out.nd: 2 lines" in done.stderr
    assert "normdsl: error: mymodels:broken failed: RuntimeError: no model today" in done.stderr
    assert "normdsl: error: layer 1 'twice' (Lambda): no kind of normdsl makes this class" in done.stderr
    assert "normdsl: error: cannot import nosuchmodule" in done.stderr
    assert "keras.applications has no model 'ResNet5'; did you mean 'ResNet50'?" in done.stderr
    assert "normdsl: error: x.keras: No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_help_says_module_function_runs_code() -> None:
    done = run("import", "--help")
    assert "runs their code" in " ".join(done.stdout.split())


# ---- hostile input ----------------------------------------------------------------------------------


def _archive(path: Path, config: object | bytes, name: str = "config.json") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, config if isinstance(config, bytes) else json.dumps(config))
    return path


def _small_config(keras: Any) -> dict[str, Any]:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    y = keras.layers.BatchNormalization()(x)
    z = keras.layers.Add()([x, keras.layers.Activation("relu")(y)])
    model = keras.Model(inputs, keras.layers.Concatenate()([z, x]))
    return json.loads(json.dumps({"class_name": "Functional", "config": model.get_config()}, default=list))


def _mutations() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True), st.text(max_size=8))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.integers(0, 40), min_size=1, max_size=6), value=_mutations())
def test_a_mutated_config_gives_a_spec_or_an_import_problem(keras: Any, path: list[int], value: Any) -> None:
    config = _small_config_cached(keras)
    mutated = json.loads(json.dumps(config))
    node = mutated
    for step in path[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node)[step % len(node)]]
        elif isinstance(node, list) and node:
            node = node[step % len(node)]
    if isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    try:
        imported = from_config(mutated, keras)
    except ImportProblem as problem:
        assert problem.problems and all(p for p in problem.problems)
        return
    from normdsl.factor import spec_text as text_of

    normdsl.check(text_of(imported, source="fuzz"))  # what imports is a spec that checks


_CACHE: dict[str, Any] = {}


def _small_config_cached(keras: Any) -> dict[str, Any]:
    if "config" not in _CACHE:
        _CACHE["config"] = _small_config(keras)
    return _CACHE["config"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip", "not a readable .keras archive"),
        (None, "no config.json"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"class_name": "Lambda"}', "not a model"),
        (b'{"class_name": "Functional", "config": {"layers": 3}}', "no list of layers"),
        (b'{"class_name": "Functional", "config": {"layers": [], "input_layers": [], "output_layers": []}}', "0 input"),
    ],
)
def test_malformed_keras_files_are_clear_errors(
    tmp_path: Path, keras: Any, content: bytes | None, message: str
) -> None:
    path = tmp_path / "m.keras"
    if content == b"not a zip":
        path.write_bytes(content)
    elif content is None:
        _archive(path, b"{}", name="other.json")
    else:
        _archive(path, content)
    with pytest.raises(ImportProblem, match=message):
        from_config(read_archive(path), keras)


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("config.json", "w", force_zip64=True) as f,
    ):
        for _ in range(80):  # 80 MB of spaces: a few dozen kB on disk
            f.write(b" " * (1 << 20))
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    with pytest.raises(ImportProblem, match="over"):
        read_archive(path)
    assert time.perf_counter() - start < 2


def test_a_huge_model_imports_in_bounded_time(keras: Any) -> None:
    """5,000 dense layers of random widths (nothing repeats): the config is made as data, no model built."""
    layers: list[dict[str, Any]] = [
        {
            "class_name": "InputLayer",
            "name": "in",
            "config": {"batch_shape": [None, 8], "name": "in"},
            "inbound_nodes": [],
        }
    ]
    previous = "in"
    template = keras.layers.Dense(1).get_config()
    widths = random.Random(0)
    for i in range(5_000):
        name = f"d{i}"
        config = {**template, "name": name, "units": widths.randint(1, 500)}
        tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 8], "keras_history": [previous, 0, 0]}}
        layers.append({"class_name": "Dense", "module": "keras.layers", "name": name, "config": config,
                       "inbound_nodes": [{"args": [tensor], "kwargs": {}}]})  # fmt: skip
        previous = name
    config = {"name": "huge", "layers": layers, "input_layers": ["in", 0, 0], "output_layers": [previous, 0, 0]}
    start = time.perf_counter()
    imported = from_config({"class_name": "Functional", "config": config}, keras)
    from normdsl.factor import spec_text as text_of

    network = normdsl.check(text_of(imported, source="huge"))
    assert len(network.layers) == 5_000
    assert time.perf_counter() - start < 60


def test_deeply_nested_merges_are_refused_or_imported_in_bounded_time(keras: Any) -> None:
    """A sum nested 150 deep (each body holds the next sum): past the language's nesting, a clear refusal."""
    inputs = keras.Input((4,))

    def nested(x: Any, depth: int) -> Any:
        if depth == 0:
            return keras.layers.Dense(4)(x)
        return keras.layers.Add()([x, nested(keras.layers.Dense(4)(x), depth - 1)])

    model = keras.Model(inputs, nested(inputs, 150))
    start = time.perf_counter()
    with pytest.raises(ImportProblem, match=r"nested more than|beyond normdsl.s limits"):
        normdsl.from_keras(model)
    assert time.perf_counter() - start < 30
    shallow = keras.Model(inputs, nested(inputs, 20))
    again = normdsl.build_model(normdsl.from_keras(shallow))
    assert keras_graph(again) == keras_graph(shallow)


def test_module_function_failures_are_import_problems(tmp_path: Path, keras: Any, monkeypatch: Any) -> None:
    from normdsl.importer import load_source

    (tmp_path / "hostile.py").write_text(
        "import sys\n"
        "def leave():\n    raise SystemExit(3)\n"
        "def deep():\n    return deep()\n"
        "def many():\n    return [1, 2]\n"
        "value = 3\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for source, message in [
        ("hostile:leave", "SystemExit"),
        ("hostile:deep", "RecursionError"),
        ("hostile:many", "not a Keras model"),
        ("hostile:value", "not a Keras model"),
        ("hostile:missing", "has no missing"),
        ("os:system", "TypeError"),
        ("../etc:passwd", "is not a .keras file"),
    ]:
        with pytest.raises(ImportProblem, match=message):
            load_source(source, keras)


del io

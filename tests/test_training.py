"""Starter code: the train script and the notebook render for every example, run end to end, and
train across two replicas with synchronized batch norm."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import EXAMPLES, ROOT, example_ids

import normdsl
from normdsl import cli
from normdsl.layers import KINDS

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("NORMDSL_UPDATE_GOLDEN") == "1"
GROUPNORM = ROOT / "examples" / "groupnorm.nd"
FORBIDDEN = {"exec", "eval", "compile", "__import__", "open", "os", "subprocess", "sys", "getattr"}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def assert_harmless(code: str) -> None:
    tree = ast.parse(code)
    assert not {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & FORBIDDEN
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    allowed = {
        "argparse",
        "contextlib",
        "json",
        "jax",
        "keras",
        "warnings",
        "pathlib",
        "numpy",
        "tensorflow",
        "tensorflow.keras",
        "matplotlib.pyplot",
    }
    allowed |= {kind.module for kind in KINDS.values() if kind.module}  # keras.applications' own layers
    assert imported <= allowed


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_every_template_renders_for_every_example(path: Path) -> None:
    network = normdsl.check(normdsl.parse(path.read_text(), filename=path.name))
    for template in ("model", "train"):
        code = normdsl.render(network, template)
        assert_harmless(code)
        compile(code, f"{path.stem}_{template}.py", "exec")
    notebook = nbformat.reads(normdsl.render(network, "notebook"), as_version=4)
    nbformat.validate(notebook)
    assert_harmless("\n".join(c.source for c in notebook.cells if c.cell_type == "code"))


@pytest.mark.parametrize(("template", "suffix"), [("train", ".py"), ("notebook", ".ipynb")])
def test_training_templates_equal_their_golden_files(template: str, suffix: str) -> None:
    golden = GOLDEN / template / f"groupnorm{suffix}"
    text = normdsl.render(normdsl.parse(GROUPNORM.read_text(), filename=GROUPNORM.name), template)
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("spec", "loss", "head_added"),
    [
        ("input(8, 8, 3) conv4 gap dense5(act=softmax)", "keras.losses.SparseCategoricalCrossentropy()", False),
        ("input(8, 8, 3) conv4 gap dense5", "keras.losses.SparseCategoricalCrossentropy(from_logits=True)", False),
        ("input(8, 8, 3) conv4 gap dense5 softmax", "keras.losses.SparseCategoricalCrossentropy()", False),
        ("input(8, 8, 3) conv4 bn", "keras.losses.SparseCategoricalCrossentropy()", True),
    ],
)
def test_the_loss_and_head_fit_the_spec(spec: str, loss: str, head_added: bool) -> None:
    code = normdsl.render(spec, "train")
    assert f"loss={loss}," in code
    assert ('outputs = layers.Dense(num_classes, activation="softmax")(x)' in code) == head_added
    assert ("Head: the spec has no classifier head" in code) == head_added


def run_script(script: Path, *args: str, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning:" not in result.stderr, result.stderr[-3000:]  # (Keras's warning that shuffle=True is ignored)
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def build(tmp_path: Path, spec: Path, *args: str) -> Path:
    out = tmp_path / f"{spec.stem}_train.py"
    assert cli.main(["build", str(spec), "--template", "train", "-o", str(out), *args]) == 0
    return out


def test_the_train_script_trains_on_synthetic_data(tmp_path: Path) -> None:
    script = build(tmp_path, GROUPNORM, "--input", "32,32,3")
    report = run_script(script, "--epochs", "1", "--samples", "40", "--out", "run", cwd=tmp_path)
    assert report["replicas"] == 1
    assert math.isfinite(report["history"]["loss"][0]) and math.isfinite(report["evaluate"]["loss"])
    assert (tmp_path / "run" / "best.keras").is_file() and (tmp_path / "run" / "history.json").is_file()


def test_the_train_script_trains_across_two_replicas_with_synchronized_batch_norm(tmp_path: Path) -> None:
    spec = tmp_path / "syncbn.nd"
    spec.write_text(
        "input(16, 16, 3)\nconv8 bn(sync=true) relu maxpool conv16(pad=same) bn(sync=true) relu gap dense3(act=softmax)\n"
    )
    script = build(tmp_path, spec)
    assert "layers.BatchNormalization(axis=-1, synchronized=True)" in script.read_text()
    args = ("--epochs", "1", "--samples", "100", "--batch-size", "8", "--strategy", "mirrored", "--cpu-replicas", "2")
    report = run_script(script, *args, cwd=tmp_path)
    assert report["replicas"] == 2 and report["global_batch_size"] == 16
    assert math.isfinite(report["history"]["loss"][0])


def test_the_train_script_trains_on_an_image_folder(tmp_path: Path) -> None:
    import tensorflow as tf

    for label in ("cats", "dogs"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(8):
            pixels = tf.random.uniform((12, 10, 3), maxval=256, dtype=tf.int32, seed=i)
            tf.io.write_file(str(tmp_path / "images" / label / f"{i}.png"), tf.io.encode_png(tf.cast(pixels, tf.uint8)))
    spec = tmp_path / "small.nd"
    spec.write_text("input(16, 16, 3)\nconv8 gn(4) relu gap dense2(act=softmax)\n")
    report = run_script(build(tmp_path, spec), "--epochs", "1", "--data", str(tmp_path / "images"), cwd=tmp_path)
    assert math.isfinite(report["history"]["loss"][0])


def test_the_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    spec = tmp_path / "tiny.nd"
    spec.write_text("input(8, 8, 3)\nconv4 relu gap dense3(act=softmax)\n")
    out = tmp_path / "tiny.ipynb"
    assert cli.main(["build", str(spec), "--template", "notebook", "-o", str(out)]) == 0
    notebook = nbformat.read(out, as_version=4)
    settings = next(c for c in notebook.cells if c.cell_type == "code" and "EPOCHS = " in c.source)
    settings.source = settings.source.replace("EPOCHS = 5", "EPOCHS = 1").replace("SAMPLES = 256", "SAMPLES = 16")
    os.environ["MPLBACKEND"] = "Agg"
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
    printed = [o["text"] for o in outputs if o.get("name") == "stdout"]
    results = json.loads(printed[-1].strip().splitlines()[-1])
    assert math.isfinite(results["loss"])
    warned = [o["text"] for o in outputs if o.get("name") == "stderr" and "Warning" in o["text"]]
    assert warned == []  # (Keras warned that shuffle=True is ignored for a tf.data data set)


def test_the_notebook_speaks_to_its_reader_not_about_normdsl() -> None:
    notebook = nbformat.reads(normdsl.render("input(8, 8, 3) conv4 gap dense3", "notebook"), as_version=4)
    text = " ".join(c.source for c in notebook.cells if c.cell_type == "markdown").lower()
    assert "tests" not in text and "seed" not in text and "comparing" not in text


def test_the_train_script_answers_help_without_importing_tensorflow(tmp_path: Path) -> None:
    script = build(tmp_path, GROUPNORM)
    blocked = (  # importing TensorFlow or NumPy would fail
        "import runpy, sys; sys.modules['tensorflow'] = sys.modules['numpy'] = None; "
        f"sys.argv = ['train.py', '--help']; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.startswith("usage: groupnorm_train.py")
        and "--strategy {default,mirrored,multiworker}" in result.stdout
    )


@pytest.mark.parametrize("template", ["model", "train"])
def test_the_docstring_says_when_the_input_shape_is_not_the_specs(template: str) -> None:
    network = normdsl.check(normdsl.parse(GROUPNORM.read_text(), filename=GROUPNORM.name), input_shape=(32, 32, 3))
    doc = ast.get_docstring(ast.parse(normdsl.render(network, template)))
    assert doc is not None and "input(224, 224, 3)" in doc  # the spec as written, and what the code builds:
    assert "Built for the input shape (32, 32, 3), given at build time; the spec declares input(224, 224, 3)." in doc
    assert "INPUT_SHAPE = (32, 32, 3)" in normdsl.render(network, "train")
    doc = ast.get_docstring(ast.parse(normdsl.render(normdsl.check("conv8", input_shape=(8, 8, 3)), template)))
    assert doc is not None and "the spec declares none" in doc
    doc = ast.get_docstring(ast.parse(normdsl.render(GROUPNORM.read_text(), template)))
    assert doc is not None and "Built for" not in doc


def test_building_for_mirrored_hints_at_synchronized_batch_norm(tmp_path: Path, capsys: Any) -> None:
    spec = ROOT / "examples" / "batchnorm.nd"
    assert (
        cli.main(["build", str(spec), "--template", "train", "--strategy", "mirrored", "-o", str(tmp_path / "t.py")])
        == 0
    )
    assert "hint: bn(sync=true) synchronizes them across replicas" in capsys.readouterr().err
    assert "default='mirrored'" in (tmp_path / "t.py").read_text().replace('"', "'")


def test_a_notebook_normdsl_wrote_may_be_overwritten_and_another_may_not(tmp_path: Path) -> None:
    out = tmp_path / "n.ipynb"
    args = ["build", str(GROUPNORM), "--template", "notebook", "-o", str(out)]
    assert cli.main(args) == 0 and cli.main(args) == 0
    out.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert cli.main(args) == 2


@pytest.mark.parametrize("missing", ["keras", "tensorflow"])
def test_without_keras_or_its_backend_the_script_says_what_to_install(tmp_path: Path, missing: str) -> None:
    script = build(tmp_path, GROUPNORM)
    blocked = (  # as if Keras, or TensorFlow (the default backend), were not installed
        f"import runpy, sys; sys.modules[{missing!r}] = None; "
        f"sys.argv = ['train.py', '--epochs', '1']; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    env = {**ENV, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "this code needs Keras 3 and a backend: pip install keras tensorflow" in result.stderr


def test_only_a_script_built_for_multiworker_runs_it_and_torch_names_the_backends_that_do(tmp_path: Path) -> None:
    script = build(tmp_path, GROUPNORM)
    result = subprocess.run(
        [sys.executable, str(script), "--strategy", "multiworker"], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert result.returncode == 1 and "build this script with `--strategy multiworker`" in result.stderr
    env = {**ENV, "KERAS_BACKEND": "torch"}
    result = subprocess.run(
        [sys.executable, str(script), "--strategy", "mirrored"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 1 and "with the TensorFlow and JAX backends, not with torch" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("backend", "strategy", "replicas"), [("jax", "mirrored", 2), ("torch", "default", 1)])
def test_the_train_script_trains_on_jax_across_two_devices_and_on_torch(
    tmp_path: Path, backend: str, strategy: str, replicas: int
) -> None:
    spec = tmp_path / "small.nd"
    spec.write_text("input(16, 16, 3)\nconv8 bn relu maxpool conv16(pad=same) bn relu gap dense3(act=softmax)\n")
    args = ("--epochs", "1", "--samples", "64", "--batch-size", "8", "--strategy", strategy, "--cpu-replicas", "2")
    result = subprocess.run(
        [sys.executable, str(build(tmp_path, spec)), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**ENV, "KERAS_BACKEND": backend},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend and report["replicas"] == replicas
    assert report["global_batch_size"] == 8 * replicas and math.isfinite(report["history"]["loss"][0])

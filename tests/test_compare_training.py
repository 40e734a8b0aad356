"""Training comparison (issue 14): `normdsl build SPEC --norm ... --template compare` (and
compare-notebook) trains every variant under the same conditions; run end to end, under mirrored
and with two worker processes, and the README's training commands run as written."""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import black
import nbformat
import pytest
from conftest import ROOT

from normdsl import cli, compare
from normdsl.emit_source import render_variants, templates

SEED = ROOT / "examples" / "seed.nd"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


def variants(*norms: str, spec: Path = SEED, **options: Any) -> list[compare.Variant]:
    return compare.variants([(spec.name, spec.read_text())], norms, **options)


def build(tmp_path: Path, *args: str, template: str = "compare") -> Path:
    out = tmp_path / ("compare.py" if template == "compare" else "compare.ipynb")
    assert cli.main(["build", str(SEED), "--template", template, "-o", str(out), *args]) == 0
    return out


def run(script: Path, *args: str, cwd: Path, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def histories(out: Path) -> dict[tuple[str, int], dict[str, list[float | None]]]:
    report = json.loads((out / "compare.json").read_text())
    return {(r["variant"], r["batch_size"]): r.get("history", {}) for r in report["runs"]}


# ---- what is generated ------------------------------------------------------------------------


def test_the_compare_templates_are_listed_and_completed() -> None:
    assert {"compare", "compare-notebook"} <= set(templates())


def test_the_script_has_a_build_function_per_variant_and_is_black_formatted() -> None:
    code = render_variants(variants("bn", "ln", "in", "gn(16)", "bn", "gn(100)", input_shape=(32, 32, 3)))
    assert code == black.format_str(code, mode=black.Mode())
    tree = ast.parse(code)
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert {"build_bn", "build_ln", "build_in", "build_gn_16", "build_bn_2"} <= set(functions)
    assert len(functions) == len(set(functions))  # each block function once, the norms under other names
    namespace: dict[str, Any] = {}
    table = next(n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "VARIANTS")
    exec(compile(ast.Module([table], []), "<variants>", "exec"), {n: n for n in functions}, namespace)
    assert namespace["VARIANTS"] == {
        "bn": "build_bn", "ln": "build_ln", "in": "build_in", "gn(16)": "build_gn_16", "bn #2": "build_bn_2"
    }  # fmt: skip
    assert 'FAILED = {\n    "gn(100)": "gn(100): 128 channels cannot be split into 100 groups",\n}' in code


def test_a_block_named_like_a_build_function_keeps_its_own_name_apart(tmp_path: Path) -> None:
    spec = tmp_path / "odd.nd"
    spec.write_text("norm = bn\nlet build_bn = (conv8 norm)\ninput(16, 16, 3)\nbuild_bn relu\n")
    code = render_variants(variants("bn", "gn(4)", spec=spec))
    tree = ast.parse(code)
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert "build_bn" in functions and len(functions) == len(set(functions))
    assert "def build_bn_(x):" in code  # the spec's block, renamed away from the variant's build function


def test_variant_text_reaches_code_only_as_inert_strings() -> None:
    hostile = 'gn(3) """\nimport os  # "'
    code = render_variants(variants("bn", hostile, input_shape=(16, 16, 3)))
    tree = ast.parse(code)  # (the safety check passed while rendering)
    failed = next(n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "FAILED")
    assert isinstance(failed.value, ast.Dict) and len(failed.value.keys) == 1
    key = failed.value.keys[0]
    assert isinstance(key, ast.Constant) and "\n" not in key.value and key.value.startswith("gn(3)")
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import) and n.names[0].name == "os"]


def test_several_norms_are_for_the_compare_templates_only(tmp_path: Path, capsys: Any) -> None:
    out = str(tmp_path / "t.py")
    assert cli.main(["build", str(SEED), "--norm", "bn", "ln", "--template", "train", "-o", out]) == 2
    assert "--norm takes one value for the train template" in capsys.readouterr().err
    assert cli.main(["build", str(SEED), "--norm", "gn(100)", "--template", "compare", "-o", out]) == 1
    assert cli.main(["build", str(SEED), "--norm", "gn(16)", "--template", "train", "-o", out]) == 0


def test_a_variant_that_is_no_model_is_a_warning_of_build(tmp_path: Path, capsys: Any) -> None:
    build(tmp_path, "--norm", "bn", "gn(100)")
    captured = capsys.readouterr()
    assert "warning: variant gn(100) is left out: gn(100): 128 channels cannot be split into 100 groups" in captured.err
    assert "1 of 2 variants to train (bn, gn(100))" in captured.out


# ---- what it does -----------------------------------------------------------------------------


def test_shared_layers_start_with_the_first_variants_weights(tmp_path: Path) -> None:
    """The conv and dense layers of every variant hold the first variant's initial weights, even when
    built with another seed; the normalization layers are each variant's own."""
    import runpy

    from tensorflow import keras

    namespace = runpy.run_path(str(build(tmp_path, "--norm", "bn", "ln", "gn(16)", "--input", "16,16,3")))
    build_variant = namespace["build_variant"]
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    first, initial, shared = build_variant(namespace["VARIANTS"]["bn"], 10)
    expected = ["conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "dense"]
    assert shared == [*expected[:3], "batch_normalization", expected[3], "dense"]
    for name in ("ln", "gn(16)"):
        keras.backend.clear_session()
        keras.utils.set_random_seed(1)  # another seed: only the copy makes them equal
        model, _, shared = build_variant(namespace["VARIANTS"][name], 10, initial)
        assert shared == expected
        for layer in expected:
            for mine, theirs in zip(
                model.get_layer(layer).get_weights(), first.get_layer(layer).get_weights(), strict=True
            ):
                assert (mine == theirs).all()


def test_the_seed_variants_train_end_to_end_and_the_readme_commands_run(tmp_path: Path) -> None:
    """The README's compare commands as written: the four seed variants on 32x32 inputs, then at two
    batch sizes across two CPU replicas. The CSV, JSON and PNGs are read back."""
    from PIL import Image

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for command in readme_commands("compare-commands"):
        env = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}"}
        result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    seed = ["bn", "ln", "in", "gn(16)"]
    out = tmp_path / "runs" / "seed"
    with (out / "compare.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["variant"], r["epoch"]) for r in rows] == [(v, e) for v in seed for e in ("1", "2")]
    assert list(rows[0]) == [
        "variant", "batch_size", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "peak_memory",
        "status",
    ]  # fmt: skip
    for row in rows:
        assert row["status"] == "ok" and row["batch_size"] == "32" and row["peak_memory"] == ""  # (a CPU)
        assert all(math.isfinite(float(row[k])) for k in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"))
    report = json.loads((out / "compare.json").read_text())
    assert report["spec"] == "seed.nd" and report["settings"]["epochs"] == 2
    assert [len(r["shared_layers"]) for r in report["runs"]] == [6, 5, 5, 5]  # bn's own norm is shared with itself
    with Image.open(out / "compare.png") as image:
        assert image.size == (1200, 450)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10
    mirrored = tmp_path / "runs" / "seed-mirrored"
    assert set(histories(mirrored)) == {(v, b) for v in seed for b in (8, 32)}
    assert json.loads((mirrored / "compare.json").read_text())["settings"]["replicas"] == 2
    with Image.open(mirrored / "batch_sizes.png") as image:
        assert image.size == (600, 450) and len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(99)) > 10


def test_the_same_model_twice_trains_to_the_same_curves_and_a_divergence_is_a_row(tmp_path: Path) -> None:
    script = build(tmp_path, "--norm", "bn", "gn(4)", "bn", "--input", "16,16,3")
    run(script, "--epochs", "2", "--samples", "64", "--batch-sizes", "8", "--out", "same", cwd=tmp_path)
    found = histories(tmp_path / "same")
    for key, values in found[("bn", 8)].items():
        assert values == pytest.approx(found[("bn #2", 8)][key], rel=1e-6, abs=1e-7)
    assert found[("bn", 8)] != found[("gn(4)", 8)]
    result = run(script, "--epochs", "2", "--samples", "32", "--lr", "1e30", "--out", "nan", cwd=tmp_path)
    statuses = {r["variant"]: r["status"] for r in json.loads((tmp_path / "nan" / "compare.json").read_text())["runs"]}
    assert statuses == {"bn": "diverged (NaN loss)", "gn(4)": "diverged (NaN loss)", "bn #2": "diverged (NaN loss)"}
    assert re.search(r"^1 +bn +32 .*diverged \(NaN loss\)$", result.stdout, re.M)


def test_the_compare_notebook_runs_the_seed_variants(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    out = build(tmp_path, "--norm", "bn", "ln", "in", "gn(16)", "--input", "16,16,3", template="compare-notebook")
    notebook = nbformat.read(out, as_version=4)
    settings = next(c for c in notebook.cells if c.cell_type == "code" and "EPOCHS = " in c.source)
    settings.source = settings.source.replace("EPOCHS = 5", "EPOCHS = 1").replace("SAMPLES = 256", "SAMPLES = 40")
    os.environ["MPLBACKEND"] = "Agg"
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    printed = "".join(o["text"] for c in notebook.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    ranking = printed[printed.index("rank  variant") :]
    assert sorted(re.findall(r"^\d+ +(\S+) +32 ", ranking, re.M)) == sorted(["bn", "ln", "in", "gn(16)"])
    assert set(histories(tmp_path / "runs" / "seed-compare")) == {(v, 32) for v in ("bn", "ln", "in", "gn(16)")}
    assert (tmp_path / "runs" / "seed-compare" / "compare.png").stat().st_size > 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TF_KERAS = "tf-keras==2.21.0"  # Keras 2 for TensorFlow 2.21


def test_two_workers_train_the_variants_to_the_same_metrics(tmp_path: Path) -> None:
    """MultiWorkerMirroredStrategy across two processes on 127.0.0.1, one CPU device each (Keras 2,
    tf_keras: Keras 3's fit does not run under that strategy)."""
    # Keras 2 for the workers only, without its dependency on the full tensorflow wheel (the test extra is
    # tensorflow-cpu; both in one environment change TensorFlow's start-up output for every other test)
    site = tmp_path / "keras2"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), TF_KERAS]
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    script = build(tmp_path, "--norm", "bn(sync=true)", "gn(4)", "--input", "16,16,3", "--strategy", "multiworker")
    assert "from tensorflow import keras" in script.read_text()  # tf.keras, Keras 2 with TF_USE_LEGACY_KERAS=1
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        path = os.pathsep.join(p for p in (str(site), ENV.get("PYTHONPATH", "")) if p)
        env = {**ENV, "TF_CONFIG": json.dumps(config), "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": path}
        args = ["--epochs", "2", "--samples", "64", "--batch-sizes", "4", "--strategy", "multiworker"]
        command = [sys.executable, str(script), *args, "--out", f"worker{index}"]
        processes.append(
            subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    first, second = (histories(tmp_path / f"worker{i}") for i in range(2))
    assert first == second and set(first) == {("bn(sync=true)", 4), ("gn(4)", 4)}
    assert json.loads((tmp_path / "worker0" / "compare.json").read_text())["settings"]["replicas"] == 2


# ---- the README's train commands (the fix on the way) ------------------------------------------


def readme_commands(marker: str) -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(f"<!-- {marker}")[1].split(f"<!-- /{marker}")[0]
    return [line.strip() for line in block.splitlines()[1:] if line.strip()]


def test_the_readmes_train_commands_run_as_written(tmp_path: Path) -> None:
    """`python train.py --epochs 1 --strategy mirrored --cpu-replicas 2` stopped with StopIteration at
    validation: 51 validation images, fewer than the global batch of 64."""
    commands = readme_commands("train-commands")
    assert commands[-1] == "python train.py --epochs 1 --strategy mirrored --cpu-replicas 2"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for command in commands:
        args = shlex.split(command)
        if args[0] == "normdsl":
            assert _in(tmp_path, args[1:])
            continue
        result = run(tmp_path / args[1], *args[2:], cwd=tmp_path)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert math.isfinite(report["history"]["val_loss"][0]) and math.isfinite(report["evaluate"]["loss"])
    assert report["replicas"] == 2 and report["global_batch_size"] == 64


def _in(folder: Path, args: list[str]) -> bool:
    here = Path.cwd()
    os.chdir(folder)
    try:
        return cli.main(args) == 0
    finally:
        os.chdir(here)

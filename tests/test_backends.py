"""The same function on every Keras 3 backend (issue 22): the generated model files, with the same
``.weights.h5`` (written once, by TensorFlow), give the same outputs under TensorFlow, JAX and PyTorch,
and one SGD step from those weights gives the same updated weights. One worker process per backend
does every net (tests/backends/worker.py); JAX and PyTorch run side by side."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import ROOT

import normdsl

WORKER = Path(__file__).parent / "backends" / "worker.py"
SMALL, LARGE = (32, 32, 3), (64, 64, 3)
NETS = {  # the seed models, and the big examples at a smaller input (the same layers, less arithmetic)
    "seed": SMALL,
    "batchnorm": SMALL,
    "groupnorm": SMALL,
    "layernorm": SMALL,
    "instancenorm": SMALL,
    "resnet50": LARGE,
    "mobilenet_v2": LARGE,
    "efficientnet_b0": LARGE,
    "mobilenet_v3_large": LARGE,
    "convnext_tiny": LARGE,
}
# Dropout draws its masks from each backend's own random generator: the same seed, other masks. Their
# outputs are compared (inference mode drops nothing), their training steps are not.
DROPOUT = {"efficientnet_b0", "mobilenet_v3_large"}
BACKENDS = ("tensorflow", "jax", "torch")
OUTPUTS = 1e-5  # relative: max |a - b| / max |b|, float32
TRAINED = 1e-4  # relative, per weight: ||a - b|| / ||b||


def relative(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b))) / (scale if scale > 0 else 1.0)


def start(folder: Path, backend: str, role: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "jax":  # XLA compiles each model twice (inference, training step) for one batch: compile fast
        env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    command = [sys.executable, str(WORKER), str(folder), role]
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-4000:]
    report: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return report


def answers(folder: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Every backend's answers for every net: TensorFlow first (it writes the weights and the batches),
    then JAX and PyTorch side by side."""
    for name, shape in NETS.items():
        spec = (ROOT / "examples" / f"{name}.nd").read_text()
        (folder / f"{name}.py").write_text(normdsl.render(spec, "model", input_shape=shape), encoding="utf-8")
    nets = [[name, shape, name not in DROPOUT] for name, shape in NETS.items()]
    (folder / "nets.json").write_text(json.dumps(nets))
    began = time.perf_counter()
    reports = [finish(start(folder, "tensorflow", "write"))]
    readers = [start(folder, backend, "read") for backend in BACKENDS[1:]]
    reports += [finish(p) for p in readers]
    print(f"\nthree backends, {len(NETS)} nets: {time.perf_counter() - began:.1f} s", *reports, sep="\n")
    assert [r["backend"] for r in reports] == list(BACKENDS)  # each ran on the backend it was given
    return {name: {backend: dict(np.load(folder / f"{name}.{backend}.npz")) for backend in BACKENDS} for name in NETS}


def test_the_same_weights_give_the_same_function_on_every_backend(tmp_path: Path) -> None:
    """One test (one worker process per backend for all nets, whichever pytest-xdist worker runs it):
    outputs within OUTPUTS everywhere, updated weights within TRAINED for the nets without dropout."""
    found = answers(tmp_path)
    problems = []
    for name in NETS:
        reference = found[name]["tensorflow"]
        outputs = reference["outputs"]
        assert outputs.shape[0] == 2 and np.all(np.isfinite(outputs)) and np.std(outputs) > 0, name
        weights = sorted(k for k in reference if k.startswith("w"))
        assert bool(weights) == (name not in DROPOUT), name
        if weights:  # the step changed them
            assert max(relative(reference[k], reference["b" + k[1:]]) for k in weights) > 1e-3, name
        for backend in BACKENDS[1:]:
            theirs = found[name][backend]
            assert theirs["outputs"].shape == outputs.shape
            if (difference := relative(theirs["outputs"], outputs)) >= OUTPUTS:
                problems.append(f"{name} on {backend}: outputs differ by {difference:.2e} (relative)")
            assert sorted(k for k in theirs if k.startswith("w")) == weights
            for k in weights:
                moved = float(np.linalg.norm(theirs[k] - reference[k]) / np.linalg.norm(reference[k]))
                if moved >= TRAINED:
                    problems.append(f"{name} on {backend}: weight {k} after one step differs by {moved:.2e}")
    assert problems == []


def test_the_readmes_backend_session_is_real_output(tmp_path: Path) -> None:
    """The README's three `KERAS_BACKEND=... normdsl build --verify` commands, run as shown, print what it shows."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- backends-session", 1)[1].split("\n", 1)[1].split("<!-- /backends-session -->", 1)[0]
    lines = [line[4:] for line in block.splitlines() if line.startswith("    $ ") or line.startswith("    ")]
    sessions: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            sessions.append((line[2:], []))
        else:
            sessions[-1][1].append(line)
    assert [command.split()[0] for command, _ in sessions] == [f"KERAS_BACKEND={b}" for b in BACKENDS]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for command, shown in sessions:
        variable, *args = shlex.split(command)
        env = {**os.environ, variable.split("=")[0]: variable.split("=")[1], "TF_CPP_MIN_LOG_LEVEL": "3"}
        args[0] = str(Path(sys.executable).with_name("normdsl"))
        result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        assert (result.stdout + result.stderr).splitlines() == shown

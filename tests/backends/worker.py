"""One Keras backend's answers for the generated models (run once per backend: KERAS_BACKEND is fixed
per process).

    KERAS_BACKEND=tensorflow python worker.py FOLDER write
    KERAS_BACKEND=jax python worker.py FOLDER read

FOLDER holds the generated model files (NAME.py) and nets.json: [[NAME, [H, W, C], TRAIN], ...]. For each
net, ``write`` gives every weight a random value (affine parameters, biases and moving statistics
too, not the defaults that hide epsilon, axis and affine mistakes) and saves NAME.weights.h5, a batch
of 2 inputs that are not centred and the targets for one training step; ``read`` loads them. Then
both write NAME.BACKEND.npz: the outputs in inference mode, and when TRAIN, every weight before and
after one SGD step (``train_on_batch``, mean squared error) on that batch, batch norm in training mode.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

AFFINE = ("gamma", "beta", "moving_mean", "moving_variance", "bias")


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        if name not in AFFINE:
            continue  # kernels keep Keras's random initial values
        shape = tuple(variable.shape)
        if name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(0.0, 0.2, size=shape)
        variable.assign(value.astype("float32"))


def main(folder: Path, role: str) -> None:
    backend = keras.backend.backend()
    nets = json.loads((folder / "nets.json").read_text())
    sys.path.insert(0, str(folder))
    seconds = {}
    for name, shape, train in nets:
        start = time.perf_counter()
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = module.build_model(tuple(shape))
        weights = folder / f"{name}.weights.h5"
        if role == "write":
            rng = np.random.default_rng(0)
            randomize(model, rng)
            model.save_weights(weights)
            x = rng.normal(1.0, 1.5, size=(2, *shape)).astype("float32")  # not centred
            target = rng.normal(0.0, 1.0, size=(2, *model.output.shape[1:])).astype("float32")
            np.savez(folder / f"{name}.batch.npz", x=x, target=target)
        else:
            model.load_weights(weights)
        batch = np.load(folder / f"{name}.batch.npz")
        # TensorFlow eagerly (one batch does not pay back tracing); JAX compiled (op by op it is slower)
        eager = backend != "jax"
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse", run_eagerly=eager)
        outputs = keras.ops.convert_to_numpy(model(batch["x"], training=False))
        before = {f"b{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
        trained = {}
        if train:
            model.train_on_batch(batch["x"], batch["target"])
            trained = {f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
        np.savez(folder / f"{name}.{backend}.npz", outputs=outputs, **before, **trained)
        seconds[name] = round(time.perf_counter() - start, 2)
    print(json.dumps({"backend": backend, "pid": os.getpid(), "seconds": seconds}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])

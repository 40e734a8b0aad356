"""Runs generated files under an audit hook that stops the process at the first sign of a payload.

    python -B run_generated.py MANIFEST.json

MANIFEST is a JSON list of ``{"path": ..., "template": "model" | "train" | "notebook"}``. TensorFlow,
Keras (keras and tf.keras) and matplotlib are the permissive stand-ins beside this file (this folder comes first on
``sys.path``); numpy is real. Each file runs as its template's user would start it:

- model: ``runpy.run_path(path, run_name="__main__")``, which runs ``build_model().summary()``;
- train: the same with ``sys.argv = [path, "--help"]`` (argparse prints the help and exits 0), then
  once more as a plain module whose ``build_model``, ``classifier``, ``strategy_for``,
  ``synthetic_data`` and ``folder_data`` are called (``main`` would train and write files);
- notebook: the code cells in order in one namespace, each transformed by IPython as Jupyter does
  (when IPython is installed), up to the cell that trains.

The hook ends the process with status 99, after one ``PAYLOAD RAN`` line on stderr, at any event that
means injected code ran: a process started (``os.system``, ``subprocess.Popen``, ``os.exec*``,
``os.posix_spawn``, ``os.fork``), a socket, a file opened for writing or created, removed, renamed or
changed, ``shutil``, ``ctypes``, ``tempfile``, ``exec``, ``eval`` or ``compile`` called by the
generated code, stdin read,
another audit hook or a tracer installed, or the builtin ``normdsl_injection_canary`` called (the
fuzzer's payloads call it: a payload that runs is caught even when it does nothing the hook sees).

Prints one JSON line per file: ``{"path", "template", "ok", "error", "output"}``.
"""

from __future__ import annotations

import argparse  # noqa: F401  (everything the generated code imports is loaded before the hook is armed)
import builtins
import contextlib
import gettext  # noqa: F401
import io
import json
import os
import pkgutil  # noqa: F401  (runpy imports it lazily)
import runpy
import shutil  # noqa: F401  (argparse imports it lazily to format --help)
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import keras  # noqa: F401
import matplotlib.pyplot  # noqa: F401  (the stand-ins)
import numpy as np
import numpy.random
import tensorflow  # noqa: F401

CANARY = "normdsl_injection_canary"
FORBIDDEN = {
    "os.system", "os.remove", "os.unlink", "os.rename", "os.replace", "os.rmdir", "os.mkdir", "os.makedirs",
    "os.chmod", "os.chown", "os.chflags", "os.link", "os.symlink", "os.truncate", "os.utime", "os.setxattr",
    "os.removexattr", "os.kill", "os.killpg", "os.chdir", "os.putenv", "os.unsetenv", "os.startfile",
    "builtins.input", "sys.addaudithook", "sys.settrace", "sys.setprofile", "pickle.find_class",
    "code.__new__", "function.__new__", "mmap.__new__", "signal.pthread_kill",
}  # fmt: skip
FORBIDDEN_PREFIXES = (
    "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.", "pty.", "socket.",
    "shutil.", "ctypes.", "tempfile.", "urllib.", "http.", "ftplib.", "smtplib.", "imaplib.", "poplib.",
    "telnetlib.", "nntplib.", "webbrowser.", "sqlite3.", "winreg.", "_winapi.", "msvcrt.",
)  # fmt: skip
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class Watch:
    """What the hook knows: the file running, and the folder of the generated files."""

    current = "(before the first file)"
    generated = "/nonexistent/"  # the folder of the files being run, ending with a separator


def payload_ran(event: str, args: tuple[Any, ...]) -> None:
    message = f"PAYLOAD RAN in {Watch.current}: {event} {repr(args)[:300]}\n"
    os.write(2, message.encode("utf-8", "backslashreplace"))  # fd 2 itself: sys.stderr may be redirected
    os._exit(99)


def called_by_generated_code() -> bool:
    """Whether the Python code that raised the event is generated code (a file or a notebook cell);
    compiling and executing for runpy, the runner and imports is not."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code in HOOK_CODE:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(Watch.generated)


def is_payload(event: str, args: tuple[Any, ...]) -> bool:
    if event in FORBIDDEN or event.startswith(FORBIDDEN_PREFIXES):
        return True
    if event == "open":  # (path, mode, flags): mode is None for os.open
        mode, flags = args[1], args[2]
        return any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
    if event in ("compile", "exec"):  # exec, eval or compile called by the generated code itself
        return called_by_generated_code()
    return False


def hook(event: str, args: tuple[Any, ...]) -> None:
    if is_payload(event, args):
        payload_ran(event, args)


HOOK_CODE = {hook.__code__, is_payload.__code__, called_by_generated_code.__code__}


def canary(*args: object, **kwargs: object) -> None:
    payload_ran(CANARY, args)


class IPythonShell:
    """``get_ipython()`` for cells IPython transformed: any shell escape or magic is a payload."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        def called(*args: object, **kwargs: object) -> None:
            payload_ran(f"get_ipython().{name}", args)

        return called


def run_model(path: str, output: io.StringIO) -> None:
    sys.argv = [path]
    namespace = runpy.run_path(path, run_name="__main__")
    assert callable(namespace.get("build_model")), "the module defines no build_model"


def run_train(path: str, output: io.StringIO) -> None:
    sys.argv = [path, "--help"]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (0, None), f"--help exited with {exc.code!r}"
    else:
        raise AssertionError("--help did not exit")
    assert output.getvalue().startswith("usage:"), "--help printed no usage"
    sys.argv = [path]
    module = runpy.run_path(path, run_name="generated_train_module")
    module["build_model"]().summary()
    module["classifier"](module["NUM_CLASSES"]).summary()
    for strategy, replicas in (("default", 1), ("mirrored", 2), ("multiworker", 1)):
        with contextlib.suppress(SystemExit):  # the stand-in is no backend that runs them all
            module["strategy_for"](strategy, replicas)
    module["synthetic_data"](8, module["NUM_CLASSES"])
    with contextlib.suppress(SystemExit):  # a model without an image input refuses --data
        module["folder_data"]("no-such-folder")


def cell_transform() -> Callable[[str], str]:
    """How Jupyter's IPython turns a cell into Python (``!cmd`` and ``%magic`` become calls of
    ``get_ipython()``); the cell as it is without IPython (it comes with the test dependencies)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return str
    transform: Callable[[str], str] = TransformerManager().transform_cell  # type: ignore[no-untyped-call]
    return transform


def run_notebook(path: str, output: io.StringIO) -> None:
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    transform = cell_transform()
    namespace: dict[str, Any] = {"__name__": "__main__", "get_ipython": IPythonShell}
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    ran = 0
    for i, cell in enumerate(cells):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if ".fit(" in source:
            break
        exec(compile(transform(source), f"{path}#cell{i}", "exec"), namespace)
        ran += 1
    assert ran >= 3 and callable(namespace.get("build_model")), f"only {ran} cells ran before training"
    assert "model" in namespace, "the notebook built no model before training"


RUNNERS: dict[str, Callable[[str, io.StringIO], None]] = {
    "model": run_model,
    "train": run_train,
    "notebook": run_notebook,
}


def main() -> None:
    manifest = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = sys.stdout
    if manifest:
        Watch.generated = str(Path(manifest[0]["path"]).resolve().parent) + os.sep
    np.random.default_rng(0).normal(size=2)  # warm numpy's lazy parts before the hook is armed
    cell_transform()("x = 1\n")  # and IPython's
    builtins.normdsl_injection_canary = canary  # type: ignore[attr-defined]
    warnings.simplefilter("ignore")
    sys.addaudithook(hook)
    for entry in manifest:
        path, template = str(Path(entry["path"]).resolve()), entry["template"]
        Watch.current = f"{path} ({template})"
        captured = io.StringIO()
        error = None
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                RUNNERS[template](path, captured)
        except BaseException:  # reported to the test, with the traceback
            error = traceback.format_exc()
        report = {"path": entry["path"], "template": template, "ok": error is None, "error": error}
        out.write(json.dumps({**report, "output": captured.getvalue()[-2000:]}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

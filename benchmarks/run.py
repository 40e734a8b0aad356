"""normdsl benchmarks: every figure is a ratio against a baseline measured in the same run.

    python benchmarks/run.py           # the full run (several minutes): the README's performance table
    python benchmarks/run.py --quick   # a smoke test (CI): fewer runs and sizes, no ResNet-50 build

1. The command line on ResNet-50: every command against `python -c pass` and against `normdsl check`;
   check and summary against the interpreter's start, build -o - against `python -c "import black"`.
2. Parse + check of flat specs of 1k, 10k and 100k layers: time, growth and peak memory (render apart).
3. normdsl.build_model against the same model written by hand in Keras (seed models, ResNet-50).
4. normdsl.check's static totals against building the Keras model for count_params().
5. The language server: a keystroke in ResNet-50 → fresh diagnostics (in the server, and over stdio).
6. PyTorch: normdsl.build_module against the same module written by hand, and the forward time of the
   generated module and of build_module's against the hand-written one's.
The processes of section 1 run in turns (one of each command per round), so that the load of a shared
machine falls on all of them alike; the table at the end is the README's.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESNET = str(ROOT / "examples" / "resnet50.nd")
SCRIPT = str(Path(sys.executable).parent / "normdsl")
# As a user runs it: Python may cache bytecode (some sandboxes set PYTHONDONTWRITEBYTECODE, which
# makes every start recompile every module and would measure that instead).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # (this process builds Keras models too)
PY = sys.executable

BASELINES = {
    "python -c pass": [PY, "-c", "pass"],
    "python -c 'import lark'": [PY, "-c", "import lark"],
    "python -c 'import black'": [PY, "-c", "import black"],
}
# Each command of `normdsl --help` on ResNet-50 (a command missing here is listed as unmeasured).
COMMANDS: dict[str, list[str]] = {
    "check": ["check", RESNET],
    "summary": ["summary", RESNET],
    "build": ["build", RESNET, "-o", "-"],
    "parse": ["parse", RESNET],
    "kinds": ["kinds"],
    "compare": ["compare", RESNET, "--norm", "bn", "gn(32)"],
    "explain": ["explain", RESNET],
    "scale-report": ["scale-report", RESNET, "--width", "0.5"],
    "fmt": ["fmt", "--diff", RESNET],
    "save": ["save", RESNET, "-o", "{tmp}/resnet50.keras", "--force"],
    "diagram": ["diagram", RESNET, "-o", "{tmp}/resnet50.svg"],
    "report": ["report", RESNET, "-o", "{tmp}/resnet50.html"],
    "import": ["import", "keras.applications.ResNet50"],
    "port-weights": ["port-weights", RESNET, "{tmp}/resnet50.weights.h5", "-o", "{tmp}/resnet50.pt", "--force"],
}
# What a command reads that the benchmark makes first, once (Python run with the benchmark's interpreter).
SETUP = {
    "port-weights": "import sys, normdsl; normdsl.build_model(normdsl.check(open(sys.argv[1]).read()))"
    ".save_weights(sys.argv[2] + '/resnet50.weights.h5')",
}
SLOW = {"save", "import", "port-weights"}  # commands that import TensorFlow (and PyTorch): fewer runs
SERVERS = {"lsp"}  # not one command and done: its row is the language server's latency (section 5)
TARGETS = {
    "check": ("python -c pass", 5.0),
    "summary": ("python -c pass", 5.0),
    "build": ("python -c 'import black'", 1.4),
}


def commands_on_main() -> list[str]:
    """The subcommands the installed normdsl has, in its help's order."""
    sys.path.insert(0, str(ROOT))
    from normdsl.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    return list(sub.choices)  # type: ignore[arg-type]


def cli_latency(runs: int, tmp: str, quick: bool) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Median wall time and median CPU time (user + system) of each process, the processes run in turns.
    CPU time is what the process itself cost, less sensitive to a shared machine's load than the wall."""
    present = commands_on_main()
    argv = {
        name: [SCRIPT, *(a.format(tmp=tmp) for a in COMMANDS[name])]
        for name in present
        if name in COMMANDS and not (quick and name in SLOW)
    }
    for name in argv:
        if name in SETUP:
            subprocess.run([PY, "-c", SETUP[name], RESNET, tmp], capture_output=True, env=ENV, check=True)
    todo = {**BASELINES, **argv}
    times: dict[str, list[float]] = {name: [] for name in todo}
    cpu: dict[str, list[float]] = {name: [] for name in todo}
    for command in todo.values():  # warm-up: bytecode, the parser's cache
        subprocess.run(command, capture_output=True, env=ENV, check=False)
    for round_ in range(runs):
        for name, command in todo.items():
            if name in SLOW and round_ >= max(3, runs // 4):
                continue
            used = _children_cpu()
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, env=ENV, check=False)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_children_cpu() - used)
            if done.returncode not in (0, 1):  # (fmt --diff exits 1 when it would change something)
                raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()[-2000:]}")
    unmeasured = [c for c in present if c not in COMMANDS and c not in SERVERS]
    wall = {name: statistics.median(t) for name, t in times.items()}
    return wall, {name: statistics.median(t) for name, t in cpu.items()}, unmeasured


def _children_cpu() -> float:
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


SCALING_CHILD = """
import json, resource, sys, time
import normdsl
from normdsl import emit_source
n = int(sys.argv[1])
text = "input(32, 32, 16)\\n" + "conv16(pad=same) gn(4) relu\\n" * (n // 3)
limits = normdsl.Limits(max_layers=10 * n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
spec = normdsl.parse(text, limits=limits)
t1 = time.perf_counter()
network = normdsl.check(spec, limits=limits)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
model = emit_source.source_model(network)
emit_source._environment(str(emit_source.data_dir("templates"))).get_template("model.py.j2").render(network=network, **emit_source._fields(model))
t3 = time.perf_counter()
print(json.dumps({"layers": len(network.layers), "parse": t1 - t0, "check": t2 - t1, "render": t3 - t2,
                  "peak_mb": peak, "import_mb": before}))
"""


def scaling(sizes: list[int]) -> list[dict[str, float]]:
    rows = []
    for n in sizes:
        out = subprocess.run([PY, "-c", SCALING_CHILD, str(n)], capture_output=True, text=True, env=ENV, check=True)
        rows.append(json.loads(out.stdout))
    return rows


def alternate(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median seconds of a and of b, run alternately after a warm-up of each. Each run starts after a full
    garbage collection: with TensorFlow loaded one takes ~0.2 s, and which side a collection fell in
    decided the ratio of two builds that make the same Keras layers (ResNet-50 against keras.applications)."""
    a(), b()
    ta, tb = [], []
    for _ in range(runs):
        for f, times in ((a, ta), (b, tb)):
            gc.collect()
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def direct_build(runs: int, with_resnet: bool) -> dict[str, tuple[float, float]]:
    from tensorflow import keras

    import normdsl

    layers = keras.layers

    def seed(norm: Callable[[], object]) -> Callable[[], object]:
        def build() -> object:
            inputs = keras.Input(shape=(224, 224, 3))
            x = layers.Conv2D(32, 3, padding="valid")(inputs)
            x = layers.Conv2D(64, 3, padding="valid")(x)
            x = layers.Conv2D(128, 3, padding="valid")(x)
            x = norm()(x)
            x = layers.Conv2D(256, 3, padding="valid")(x)
            return keras.Model(inputs, x)

        return build

    cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    for name, norm in {
        "batchnorm": lambda: layers.BatchNormalization(axis=-1),
        "groupnorm": lambda: layers.GroupNormalization(groups=16, axis=-1),
    }.items():
        text = (ROOT / "examples" / f"{name}.nd").read_text()
        cases[name] = (lambda text=text: normdsl.build_model(text), seed(norm))
    if with_resnet:
        # The hand-written equivalent of ResNet-50 is the generated module (plain Keras functions,
        # as one would write them); keras.applications is timed as well, for reference.
        text = Path(RESNET).read_text()
        namespace: dict[str, object] = {}
        exec(normdsl.render(text), namespace)
        by_hand = namespace["build_model"]
        cases["resnet50"] = (lambda: normdsl.build_model(text), by_hand)  # type: ignore[assignment]
        cases["resnet50 vs keras.applications"] = (
            lambda: normdsl.build_model(text),
            lambda: keras.applications.ResNet50(weights=None),
        )
    return {name: alternate(ours, theirs, runs) for name, (ours, theirs) in cases.items()}


def static_summary(runs: int) -> dict[str, tuple[float, float]]:
    from tensorflow import keras

    import normdsl

    out = {}
    for name in ("groupnorm", "resnet50"):
        text = (ROOT / "examples" / f"{name}.nd").read_text()
        ours = lambda text=text: normdsl.check(text).params  # noqa: E731
        theirs = lambda text=text: normdsl.build_model(text).count_params()  # noqa: E731
        if name == "resnet50":
            theirs = lambda: keras.applications.ResNet50(weights=None).count_params()  # noqa: E731
        out[name] = alternate(ours, theirs, runs)
    return out


def keystrokes(text: str, runs: int) -> list[str]:
    """ResNet-50's text after each of ``runs`` keystrokes: a character typed into a comment at the end of a
    line, alternately a keystroke that breaks the spec (a group count 64 channels cannot take)."""
    line = text.index("gap dense1000")
    return [
        text[:line] + (f"gn({3 + i % 5}) " if i % 2 else "") + text[line:] + "#" * (i + 1) + "\n" for i in range(runs)
    ]


def lsp_server_time(runs: int) -> dict[str, float]:
    """Median seconds of what the server does between a change's debounce and its diagnostics being sent:
    check the new text (editor.analyze) and turn the result into the protocol's diagnostics."""
    from normdsl import editor, lsp

    text = (ROOT / "examples" / "resnet50.nd").read_text()
    times: dict[str, list[float]] = {"clean": [], "broken": []}
    for i, changed in enumerate(keystrokes(text, 2 * runs)):
        start = time.perf_counter()
        lsp.diagnostics(editor.analyze(changed, "resnet50.nd"), "file:///resnet50.nd")
        times["broken" if i % 2 else "clean"].append(time.perf_counter() - start)
    return {name: statistics.median(found) for name, found in times.items()}


def lsp_round_trip(runs: int) -> float:
    """Median seconds from a didChange sent by a real client (pygls, over stdio, debounce off) to the
    publishDiagnostics received for it."""
    import asyncio

    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    text = (ROOT / "examples" / "resnet50.nd").read_text()
    uri = (ROOT / "examples" / "resnet50.nd").as_uri()

    async def run() -> float:
        client = LanguageClient("benchmark", "1")
        received: asyncio.Queue[types.PublishDiagnosticsParams] = asyncio.Queue()

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams) -> None:
            received.put_nowait(params)

        await client.start_io(str(SCRIPT), "lsp")
        options = {"debounceMs": 0}
        await client.initialize_async(
            types.InitializeParams(types.ClientCapabilities(), initialization_options=options)
        )
        client.initialized(types.InitializedParams())
        item = types.TextDocumentItem(uri=uri, language_id="normdsl", version=0, text=text)
        client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        await received.get()
        times = []
        for version, changed in enumerate(keystrokes(text, runs), start=1):
            start = time.perf_counter()
            document = types.VersionedTextDocumentIdentifier(version=version, uri=uri)
            change = types.TextDocumentContentChangeWholeDocument(changed)
            client.text_document_did_change(types.DidChangeTextDocumentParams(document, [change]))
            while (await received.get()).version != version:
                pass
            times.append(time.perf_counter() - start)
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        return statistics.median(times)

    return asyncio.run(run())


TORCH_SEED = """
import torch
from torch import nn


class Seed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 128, 3)
        self.norm = nn.BatchNorm2d(128, eps=1e-3, momentum=0.01)
        self.conv4 = nn.Conv2d(128, 256, 3)

    def forward(self, x):
        return self.conv4(self.norm(self.conv3(self.conv2(self.conv1(x)))))
"""


def torch_builds(runs: int, with_resnet: bool) -> dict[str, tuple[float, float]]:
    """(normdsl, hand-written) medians: build times, and forward times in inference mode."""
    import torch

    import normdsl
    from normdsl import target_torch

    torch.set_num_threads(1)  # steadier on a shared machine
    namespace: dict[str, Any] = {}
    exec(TORCH_SEED, namespace)
    by_hand = namespace["Seed"]
    text = (ROOT / "examples" / "batchnorm.nd").read_text()
    checked = normdsl.check(text)
    out = {
        "build: batchnorm (spec text)": alternate(lambda: normdsl.build_module(text), by_hand, runs),
        "build: batchnorm (checked network)": alternate(lambda: normdsl.build_module(checked), by_hand, runs),
    }

    def forward(ours: Any, theirs: Any, x: Any) -> tuple[float, float]:
        with torch.no_grad():
            return alternate(lambda: ours(x), lambda: theirs(x), runs)

    def generated(spec: str, name: str) -> Any:
        code: dict[str, Any] = {}
        exec(target_torch.render(normdsl.check(normdsl.parse(spec, filename=f"{name}.nd"))), code)
        return code["build_model"]().eval()

    seed, hand = generated(text, "batchnorm"), by_hand().eval()
    x = torch.randn(2, 3, 64, 64)
    out["forward: batchnorm generated"] = forward(seed, hand, x)
    out["forward: batchnorm build_module"] = forward(normdsl.build_module(text).eval(), hand, x)
    if with_resnet:  # (no hand-written ResNet-50 at hand: the generated module is PyTorch as one writes it)
        resnet = (ROOT / "examples" / "resnet50.nd").read_text()
        written = generated(resnet, "resnet50")
        by_generated = type(written)
        out["build: resnet50 (spec text)"] = alternate(lambda: normdsl.build_module(resnet), by_generated, 5)
        direct = normdsl.build_module(resnet).eval()
        direct.load_state_dict(written.state_dict())
        out["forward: resnet50 build_module"] = forward(direct, written, torch.randn(2, 3, 128, 128))
    return out


def verdict(value: float, target: float, *, at_most: bool = True, unit: str = "×") -> str:
    met = value <= target if at_most else value >= target
    if met:
        return f"met ({'≤' if at_most else '≥'} {target:g}{unit})"
    return f"**missed by {abs(value - target):.2f}{unit}** (target {'≤' if at_most else '≥'} {target:g}{unit})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and sizes: a smoke test")
    args = parser.parse_args()
    runs = 5 if args.quick else 21
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{machine}; {'quick' if args.quick else 'full'} run, {when}\n")
    table: list[tuple[str, str, str, str]] = []

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        latency, cpu, unmeasured = cli_latency(runs, tmp, args.quick)
    base, check = latency["python -c pass"], latency.get("check", float("nan"))
    print(f"1. The command line on ResNet-50 (median of {runs} processes of each, run in turns; wall, and CPU)")
    for name, seconds in latency.items():
        against = f"{seconds / base:5.1f}× python -c pass (CPU {cpu[name] / cpu['python -c pass']:4.1f}×)"
        if name in COMMANDS:
            against += f"  {seconds / check:5.2f}× check"
        target = ""
        if name in TARGETS:
            baseline, limit = TARGETS[name]
            ratio, cpu_ratio = seconds / latency[baseline], cpu[name] / cpu[baseline]
            target = f"  {ratio:.2f}× {baseline}: {verdict(ratio, limit)}; CPU {cpu_ratio:.2f}×"
            table.append(
                (
                    f"`normdsl {name}` (ResNet-50)",
                    f"{seconds:.3f} s (CPU {cpu[name]:.3f} s)",
                    f"`{baseline}` {latency[baseline]:.3f} s (CPU {cpu[baseline]:.3f} s)",
                    f"{ratio:.2f}×; {verdict(ratio, limit)}; CPU {cpu_ratio:.2f}×",
                )
            )
        print(f"   {name:28s} {seconds:7.3f} s  {against}{target}")
    for name in latency:
        if name in COMMANDS and name not in TARGETS:
            label = f"`normdsl {name}`" + (" (ResNet-50)" if RESNET in COMMANDS[name] else "")
            table.append(
                (
                    label,
                    f"{latency[name]:.3f} s (CPU {cpu[name]:.3f} s)",
                    f"`normdsl check` {check:.3f} s",
                    f"{latency[name] / check:.2f}× check (CPU {cpu[name] / cpu['check']:.2f}×)",
                )
            )
    for name in unmeasured:
        print(f"   {name:28s} not measured: give it arguments in benchmarks/run.py COMMANDS")

    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows = scaling(sizes)
    print("\n2. Parse + check of flat specs (render apart)")
    for row in rows:
        pc = row["parse"] + row["check"]
        print(
            f"   {int(row['layers']):7,d} layers  parse {row['parse']:6.2f} s  check {row['check']:6.2f} s"
            f"  = {pc:6.2f} s ({pc / row['layers'] * 1e6:5.1f} µs a layer)  render {row['render']:6.2f} s"
            f"  peak {row['peak_mb']:5.0f} MB (after import {row['import_mb']:3.0f} MB)"
        )
    pcs = [r["parse"] + r["check"] for r in rows]
    growth = pcs[-1] / pcs[-2]
    print(f"   {sizes[-1]:,}/{sizes[-2]:,}: {growth:.1f}× ({verdict(growth, 11)})")
    if not args.quick:
        last = rows[-1]
        print(
            f"   100k layers: {pcs[-1]:.2f} s ({verdict(pcs[-1], 1.0, unit=' s')}), peak {last['peak_mb']:.0f} MB ({verdict(last['peak_mb'], 100, unit=' MB')})"
        )
        table.append(
            (
                "parse + check, 1k / 10k / 100k layers",
                " / ".join(f"{t:.2f}" for t in pcs) + " s",
                "",
                f"100k: {verdict(pcs[-1], 1.0, unit=' s')}; 100k/10k = {growth:.1f} ({verdict(growth, 11)})",
            )
        )
        table.append(
            (
                "peak memory of parse + check, 1k / 10k / 100k",
                " / ".join(f"{r['peak_mb']:.0f}" for r in rows) + " MB",
                f"after import {rows[0]['import_mb']:.0f} MB",
                f"100k: {verdict(last['peak_mb'], 100, unit=' MB')}",
            )
        )
        table.append(
            ("render (no black), 1k / 10k / 100k layers", " / ".join(f"{r['render']:.2f}" for r in rows) + " s", "", "")
        )

    builds = direct_build(3 if args.quick else 5, with_resnet=not args.quick)
    print("\n3. Direct build: normdsl.build_model against the same model in hand-written Keras (alternating, medians)")
    for name, (ours, theirs) in builds.items():
        # The target is hand-written Keras; keras.applications makes the same layers and weights as we do,
        # so its ratio is 1 up to the run-to-run noise (0.96-1.06 over seven runs on one machine): for reference.
        said = "for reference: the same layers" if "applications" in name else verdict(ours / theirs, 1.0)
        print(f"   {name:32s} normdsl {ours:6.3f} s  Keras {theirs:6.3f} s  ratio {ours / theirs:5.2f} ({said})")
        baseline = "`keras.applications.ResNet50`" if "applications" in name else "hand-written Keras"
        table.append(
            (
                f"`build_model`, {name.split()[0]}",
                f"{ours:.3f} s",
                f"{baseline} {theirs:.3f} s",
                f"{ours / theirs:.2f}×; {said}",
            )
        )

    static = static_summary(3 if args.quick else 5)
    print("\n4. Static totals: normdsl.check against building the Keras model for count_params()")
    for name, (ours, theirs) in static.items():
        print(f"   {name:12s} check {ours * 1000:7.1f} ms  Keras {theirs * 1000:8.1f} ms  {theirs / ours:5.0f}× faster")
        if name == "resnet50":
            table.append(
                (
                    "`check` totals, ResNet-50",
                    f"{ours * 1000:.1f} ms",
                    f"Keras build + `count_params()` {theirs * 1000:.0f} ms",
                    f"{theirs / ours:.0f}× faster; {verdict(theirs / ours, 100, at_most=False)}",
                )
            )

    server = lsp_server_time(20 if args.quick else 100)
    trip = lsp_round_trip(20 if args.quick else 100)
    print("\n5. Language server: a keystroke in ResNet-50 → fresh diagnostics (medians)")
    for name, seconds in server.items():
        print(
            f"   server time, {name:6s} keystroke  {seconds * 1000:6.1f} ms  ({verdict(seconds * 1000, 20, unit=' ms')})"
        )
        table.append(
            (
                f"language server, a {name} keystroke in ResNet-50",
                f"{seconds * 1000:.1f} ms",
                "",
                f"server time: {verdict(seconds * 1000, 20, unit=' ms')}",
            )
        )
    print(f"   over stdio, change sent → diagnostics received  {trip * 1000:6.1f} ms  (a real client, debounce off)")
    table.append(
        (
            "language server over stdio, change → diagnostics",
            f"{trip * 1000:.1f} ms",
            "",
            "a real client (pygls), debounce off",
        )
    )

    modules = torch_builds(5 if args.quick else 15, with_resnet=not args.quick)
    print("\n6. PyTorch: build_module and forward against hand-written PyTorch (ResNet-50: the generated module)")
    for name, (ours, theirs) in modules.items():
        print(
            f"   {name:36s} normdsl {ours * 1000:8.2f} ms  by hand {theirs * 1000:8.2f} ms  ratio {ours / theirs:5.2f}"
        )

    print(f"\nThe README's table ({machine}, {when}):\n")
    print("| measure | normdsl | baseline | ratio / target |\n|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

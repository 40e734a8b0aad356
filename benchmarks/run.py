"""normdsl benchmarks: every figure is a ratio against a baseline measured in the same run.

    python benchmarks/run.py           # the full run (several minutes)
    python benchmarks/run.py --quick   # under a minute

1. CLI latency of check / summary / build -o - against `python -c pass` and `python -c "import tensorflow"`.
2. Scaling of parse + check + render (without black) over 1k, 10k and 100k layers, with peak memory.
3. normdsl.build_model against the same model written by hand in Keras (seed models, ResNet-50).
4. normdsl.check's static totals against building the Keras model for count_params().
5. The language server: a keystroke in ResNet-50 → fresh diagnostics (in the server, and over stdio).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPNORM = ROOT / "examples" / "groupnorm.nd"
SCRIPT = Path(sys.executable).parent / "normdsl"
# As a user runs it: Python may cache bytecode (some sandboxes set PYTHONDONTWRITEBYTECODE, which
# makes every start recompile every module and would measure that instead).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}


def median_seconds(command: list[str], runs: int) -> float:
    subprocess.run(command, capture_output=True, env=ENV, check=True)  # warm-up (and the parser cache)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, env=ENV, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_latency(runs: int) -> dict[str, float]:
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
        "normdsl check": [str(SCRIPT), "check", str(GROUPNORM)],
        "normdsl summary": [str(SCRIPT), "summary", str(GROUPNORM)],
        "normdsl build -o -": [str(SCRIPT), "build", str(GROUPNORM), "-o", "-"],
    }
    return {
        name: median_seconds(command, runs if "tensorflow" not in name else max(3, runs // 3))
        for name, command in commands.items()
    }


SCALING_CHILD = """
import json, resource, sys, time
import normdsl
from normdsl import emit_source
n = int(sys.argv[1])
text = "input(32, 32, 16)\\n" + "conv16(pad=same) gn(4) relu\\n" * (n // 3)
limits = normdsl.Limits(max_layers=10 * n)
t0 = time.perf_counter()
spec = normdsl.parse(text, limits=limits)
t1 = time.perf_counter()
network = normdsl.check(spec, limits=limits)
t2 = time.perf_counter()
model = emit_source.source_model(network)
emit_source._environment(str(emit_source.data_dir("templates"))).get_template("model.py.j2").render(network=network, **emit_source._fields(model))
t3 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"layers": len(network.layers), "parse": t1 - t0, "check": t2 - t1, "render": t3 - t2, "peak_mb": peak}))
"""


def scaling(sizes: list[int]) -> list[dict[str, float]]:
    rows = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", SCALING_CHILD, str(n)], capture_output=True, text=True, env=ENV, check=True
        )
        rows.append(json.loads(out.stdout))
    return rows


def alternate(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median seconds of a and of b, run alternately after a warm-up of each."""
    a(), b()
    ta, tb = [], []
    for _ in range(runs):
        for f, times in ((a, ta), (b, tb)):
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
        text = (ROOT / "examples" / "resnet50.nd").read_text()
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
        await client.initialize_async(types.InitializeParams(types.ClientCapabilities(), initialization_options=options))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and sizes: under a minute")
    args = parser.parse_args()
    runs = 5 if args.quick else 15
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores; {'quick' if args.quick else 'full'} run\n")

    latency = cli_latency(runs)
    tf = latency["python -c 'import tensorflow'"]
    print("1. CLI latency (median of", runs, "runs after a warm-up)")
    targets = {"normdsl check": 0.15, "normdsl summary": 0.15, "normdsl build -o -": 0.35}
    for name, seconds in latency.items():
        target = (
            f"  target ≤ {targets[name]:.2f} s: {'met' if seconds <= targets[name] else 'MISSED'}"
            if name in targets
            else ""
        )
        print(f"   {name:32s} {seconds:7.3f} s   {tf / seconds:6.1f}× faster than importing TensorFlow{target}")

    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows = scaling(sizes)
    print("\n2. Scaling: parse + check + render without black")
    for row in rows:
        total = row["parse"] + row["check"] + row["render"]
        print(
            f"   {int(row['layers']):7,d} layers  parse {row['parse']:6.2f} s  check {row['check']:6.2f} s  render {row['render']:6.2f} s"
            f"  total {total:6.2f} s  {total / row['layers'] * 1e6:6.1f} µs/layer  peak {row['peak_mb']:6.0f} MB"
        )
    totals = [r["parse"] + r["check"] + r["render"] for r in rows]
    for (a, ta), (b, tb) in zip(zip(sizes, totals, strict=True), zip(sizes[1:], totals[1:], strict=True), strict=False):
        print(f"   {b:,}/{a:,} ratio of total time: {tb / ta:5.1f} (target ≤ 12)")
    ten_k = rows[1]["parse"] + rows[1]["check"]
    print(f"   10k layers parse + check: {ten_k:.2f} s (target ≤ 1 s: {'met' if ten_k <= 1 else 'MISSED'})")

    builds = direct_build(3 if args.quick else 5, with_resnet=not args.quick)
    print("\n3. Direct build: normdsl.build_model against the same model in hand-written Keras (alternating, medians)")
    for name, (ours, theirs) in builds.items():
        print(f"   {name:32s} normdsl {ours:6.3f} s  Keras {theirs:6.3f} s  ratio {ours / theirs:5.2f} (target ≤ 1.05)")

    static = static_summary(3 if args.quick else 5)
    print("\n4. Static totals: normdsl.check against building the Keras model for count_params()")
    for name, (ours, theirs) in static.items():
        print(
            f"   {name:12s} check {ours * 1000:7.1f} ms  Keras {theirs * 1000:8.1f} ms  speed-up {theirs / ours:7.0f}×"
        )

    server = lsp_server_time(20 if args.quick else 100)
    trip = lsp_round_trip(20 if args.quick else 100)
    print("\n5. Language server: a keystroke in ResNet-50 → fresh diagnostics (medians)")
    for name, seconds in server.items():
        met = "met" if seconds < 0.020 else "MISSED"
        print(f"   server time, {name:6s} keystroke  {seconds * 1000:6.1f} ms  (target < 20 ms: {met})")
    print(f"   over stdio, change sent → diagnostics received  {trip * 1000:6.1f} ms  (a real client, debounce off)")


if __name__ == "__main__":
    main()

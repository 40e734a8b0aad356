"""Time and peak memory of hostile and huge inputs, each in a fresh process: the README's resource table.

    python benchmarks/resources.py            # prints a Markdown table

Each row is one input of the security issue's denial-of-service items, handled by the public API
(or the CLI) as a user would; the process prints the first line of what it answered.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES: list[tuple[str, str]] = [  # (what, Python code that makes `text` and handles it)
    ("`input(1, 1, 1000000000000) gn(7)` (33 bytes)", 'check("input(1, 1, 1000000000000) gn(7)")'),
    ("`dwconv(k=1, mult=100000000000) gn(7)`", 'check("input(8, 8, 3) dwconv(k=1, mult=100000000000) gn(7)")'),
    ("`input(4, 4, 2147483629) gn(7)` (divisors of a prime)", 'check("input(4, 4, 2147483629) gn(7)")'),
    (
        "40 blocks, each 30 nested groups around the last (2.9 KB)",
        'check("\\n".join(["let b0 = relu"] + [f"let b{i} = " + "(" * 30 + f"b{i-1}" + ")" * 30 '
        'for i in range(1, 40)] + ["input(8, 8, 4) b39"]))',
    ),
    ("`bn` × 10,000 (10,000 warnings)", 'check("input(8, 8, 4) " + "bn " * 10_000)'),
    ("`bn` × 20,000", 'check("input(8, 8, 4) " + "bn " * 20_000)'),
    ("`foo` × 20,000 (20,000 errors)", 'check("input(8, 8, 4) " + "foo " * 20_000)'),
    ("10 MB of `a⏎`", 'check("a\\n" * 5_000_000)'),
    ("5 MB of `relu `", 'check("relu " * 1_000_000)'),
    ("`input(1, 1, 1, …)`, 3,000,000 numbers (9 MB)", 'check("input(" + "1, " * 3_000_000 + "1)")'),
    ("a 5,000-digit width `conv999…`", 'check("conv" + "9" * 5000)'),
    ("a 10 MB string `conv8(name=\"aaa…\")`", 'check(\'conv8(name="\' + "a" * 10_000_000 + \'")\')'),
    (
        "33,000 failing `gn(7)` on channel counts near 2·10⁹ (1.3 MB)",
        'check("input(1, 1, 1)\\n" + "\\n".join(f"dwconv(k=1, mult={2_000_000_001 + 2 * i}) gn(7) conv1(k=1)" '
        'for i in range(33_000)))',
    ),
    (
        "5,000 layers with 50-character names: check + render",
        'render(check("input(4)\\n" + "\\n".join(f\'relu(name="L{i:06d}{"a" * 44}")\' for i in range(5000))))',
    ),
    ("100,000 layers `conv8(pad=same) relu` ×50,000: check", 'check("input(32, 32, 3) " + "conv8(pad=same) relu " * 50_000)'),
    (
        "the same 100,000 layers: check + render (build)",
        'render(check("input(32, 32, 3) " + "conv8(pad=same) relu " * 50_000))',
    ),
    ("the same 100,000 layers: summary", 'summary(check("input(32, 32, 3) " + "conv8(pad=same) relu " * 50_000))'),
    (
        "100,000 layers with 3 arguments each: check",
        'check("input(32, 32, 3) " + "conv8(k=1, s=1, pad=same) " * 100_000)',
    ),
    ("import: a .keras of 80 KB whose config.json inflates to 80 MB", "import_zip_bomb()"),
    ("import: 6,000 `Dense` layers of random widths (a config, as data)", "import_dense_chain(6_000)"),
    ("import: `keras.applications.DenseNet121` (428 layers)", 'import_source("keras.applications.DenseNet121")'),
]

DRIVER = """
import time
import normdsl
from normdsl.summary import text as summary

def check(text):
    return normdsl.check(text)

def render(network):
    return normdsl.render(network)

def import_source(source):
    from normdsl.importer import import_source
    return import_source(source)

def import_zip_bomb():
    import os, tempfile, zipfile
    from normdsl.importer import read_archive
    os.chdir(tempfile.mkdtemp())
    path = "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z, z.open("config.json", "w", force_zip64=True) as f:
        for _ in range(80):
            f.write(b" " * (1 << 20))
    return read_archive(path)

def import_dense_chain(n):
    import random
    from tensorflow import keras
    from normdsl.factor import spec_text
    from normdsl.importer import from_config
    widths, template = random.Random(0), keras.layers.Dense(1).get_config()
    layers = [{{"class_name": "InputLayer", "name": "in", "config": {{"batch_shape": [None, 8]}}, "inbound_nodes": []}}]
    for i in range(n):
        tensor = {{"class_name": "__keras_tensor__", "config": {{"shape": [None, 8], "keras_history": [layers[-1]["name"], 0, 0]}}}}
        config = {{**template, "name": f"d{{i}}", "units": widths.randint(1, 500)}}
        layers.append({{"class_name": "Dense", "module": "keras.layers", "name": f"d{{i}}", "config": config,
                       "inbound_nodes": [{{"args": [tensor], "kwargs": {{}}}}]}})
    model = {{"name": "chain", "layers": layers, "input_layers": ["in", 0, 0], "output_layers": [layers[-1]["name"], 0, 0]}}
    return spec_text(from_config(model, keras), source="chain")

start = time.perf_counter()
try:
    result = {code}
    answer = "ok"
except normdsl.SpecError as error:
    answer = str(error).splitlines()[0].split(": error: ", 1)[-1]
except ValueError as error:  # normdsl import's ImportProblem
    answer = str(error).splitlines()[0]
elapsed = time.perf_counter() - start
peak = [int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(f"{{elapsed:.2f}}\\t{{peak}}\\t{{answer[:90]}}")
"""


def main() -> None:
    print("| input | time | peak memory | answer |")
    print("|---|---|---|---|")
    for what, code in CASES:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", DRIVER.format(code=code)], capture_output=True, text=True, cwd=ROOT, timeout=600
        )
        if result.returncode != 0:
            print(f"| {what} | failed after {time.perf_counter() - started:.1f} s | | {result.stderr[-200:]!r} |")
            continue
        seconds, megabytes, answer = result.stdout.strip().splitlines()[-1].split("\t")
        print(f"| {what} | {seconds} s | {megabytes} MB | {answer} |", flush=True)


if __name__ == "__main__":
    main()

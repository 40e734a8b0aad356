"""Plugins: a package registers layer kinds through the ``normdsl.kinds`` entry point. The test
plugin (tests/plugin: a package and its dist-info, found on PYTHONPATH as an installed one would be)
adds ``hswish`` (a Keras Activation) and ``scale`` (its own Keras layer class)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PLUGIN = ROOT / "tests" / "plugin"
SPEC = "input(8, 8, 3) conv4 scale(init=0.5) hswish gap dense2\n"


def run(*args: str, path: Path = PLUGIN, cwd: Path = ROOT, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "normdsl", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_kinds_lists_the_plugin_kinds_with_their_origin() -> None:
    listed = {k["kind"]: k for k in json.loads(run("kinds", "--json").stdout)}
    assert listed["scale"]["origin"] == "normdsl-test-plugin 0.1"
    assert listed["scale"]["module"] == "normdsl_test_plugin.layers" and listed["scale"]["keras_class"] == "Scale"
    assert listed["hswish"]["keras_class"] == "Activation" and listed["conv"]["origin"] == "normdsl"


def test_check_summary_and_generated_code_know_the_plugin_kinds(tmp_path: Path) -> None:
    (tmp_path / "p.nd").write_text(SPEC)
    summary = json.loads(run("summary", "p.nd", "--json", cwd=tmp_path).stdout)
    assert [layer["keras_class"] for layer in summary["layers"]] == [
        "Conv2D", "Scale", "Activation", "GlobalAveragePooling2D", "Dense"
    ]  # fmt: skip
    assert summary["layers"][1]["params"] == 4  # one factor per channel, by the plugin's rule
    built = run("build", "p.nd", "-o", "-", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "from normdsl_test_plugin.layers import Scale\n" in built.stdout
    assert "x = Scale(init=0.5)(x)" in built.stdout and 'layers.Activation("hard_swish")' in built.stdout


def test_verify_and_the_direct_build_agree_with_keras(tmp_path: Path) -> None:
    (tmp_path / "p.nd").write_text(SPEC)
    verified = run("build", "p.nd", "--verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    code = f"""
import normdsl
from normdsl.emit_keras import build
network = normdsl.check({SPEC!r})
model, layers = build(network)
namespace = {{"__name__": "generated"}}
exec(compile(normdsl.render(network), "<generated>", "exec"), namespace)
generated = namespace["build_model"]()
rows = lambda ls: [(type(l).__name__, tuple(l.output.shape[1:]), sum(int(w.numpy().size) for w in l.weights)) for l in ls]
mine = [(l.keras_class, l.output_shape, l.params) for l in network.layers]
assert rows(layers) == mine, (rows(layers), mine)
assert rows([l for l in generated.layers if type(l).__name__ != "InputLayer"]) == mine
assert model.count_params() == generated.count_params() == network.params
print("ok")
"""
    result = run(code=code, cwd=tmp_path)
    assert result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_without_the_plugin_its_kinds_are_unknown(tmp_path: Path) -> None:
    (tmp_path / "p.nd").write_text(SPEC)
    result = run("check", "p.nd", path=tmp_path, cwd=tmp_path)
    assert result.returncode == 1 and "unknown layer 'scale'" in result.stderr


def make_plugin(root: Path, kinds_source: str, entry: str = "bad_plugin.kinds:KINDS") -> Path:
    (root / "bad_plugin").mkdir(parents=True)
    (root / "bad_plugin" / "__init__.py").write_text("")
    (root / "bad_plugin" / "kinds.py").write_text(kinds_source)
    info = root / "bad_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[normdsl.kinds]\nbad = {entry}\n")
    return root


@pytest.mark.parametrize(
    ("source", "entry", "expected"),
    [
        ("raise ImportError('no such thing')\n", "bad_plugin.kinds:KINDS", "failed to load: no such thing"),
        ("KINDS = [42]\n", "bad_plugin.kinds:KINDS", "is not a normdsl.layers.LayerKind"),
        (
            "from normdsl.layers import KINDS as K\nKINDS = [K['conv']]\n",
            "bad_plugin.kinds:KINDS",
            "kind 'conv': the name is taken by normdsl",
        ),
    ],
)
def test_a_broken_plugin_is_a_clear_error_and_only_when_needed(
    tmp_path: Path, source: str, entry: str, expected: str
) -> None:
    path = make_plugin(tmp_path / "site", source, entry)
    (tmp_path / "ok.nd").write_text("input(8, 8, 3) conv4 relu\n")
    (tmp_path / "p.nd").write_text(SPEC)
    assert run("check", "ok.nd", path=path, cwd=tmp_path).returncode == 0  # built-in kinds never load plugins
    result = run("check", "p.nd", path=path, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_the_safety_check_admits_exactly_the_plugin_imports_in_use() -> None:
    from normdsl.safety import unexpected_code

    code = '"""Doc."""\n\nfrom tensorflow import keras\nfrom normdsl_test_plugin.layers import Scale\n'
    assert unexpected_code(code) != []
    assert unexpected_code(code, plugins=frozenset({("normdsl_test_plugin.layers", "Scale")})) == []
    assert unexpected_code(code, plugins=frozenset({("normdsl_test_plugin.layers", "Other")})) != []


def test_import_writes_a_plugin_kind() -> None:
    """normdsl import (issue 19): a layer of the plugin's own class is the plugin's kind, and rebuilds."""
    code = f"""
import json
import normdsl
model = normdsl.build_model({SPEC!r})
text = normdsl.from_keras(model)
assert "scale(init=0.5) hswish" in text or "scale(init=0.5) hardswish" in text, text
again = normdsl.build_model(text)
configs = lambda m: [(type(l).__name__, {{k: v for k, v in l.get_config().items() if k != "name"}}) for l in m.layers]
assert configs(again) == configs(model)
print("ok")
"""
    done = run(code=code)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr

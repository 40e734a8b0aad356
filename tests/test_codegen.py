"""Generated code: golden files, black, safety, and the three views (generated module, direct
build, checker) agreeing with each other and with Keras."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import black
import pytest
from conftest import EXAMPLES, built_rows, checker_rows, configs, example_ids, keras_rows
from hypothesis import given, settings
from strategies import keras_model, random_model, spec_text

import normdsl
from normdsl.layers import KINDS

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("NORMDSL_UPDATE_GOLDEN") == "1"  # regenerate after an intended change, then review the diff


def generate(path: Path) -> str:
    return normdsl.render(normdsl.parse(path.read_text(encoding="utf-8"), filename=path.name))


def run_generated(code: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(code, "<generated>", "exec"), namespace)
    return namespace["build_model"]()


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_generated_code_equals_the_golden_file(path: Path) -> None:
    golden = GOLDEN / f"{path.stem}.py"
    code = generate(path)
    if UPDATE:
        golden.write_text(code, encoding="utf-8")
    assert code == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_generated_code_is_deterministic_black_formatted_and_compiles(path: Path) -> None:
    code = generate(path)
    assert generate(path) == code
    assert black.format_str(code, mode=black.Mode()) == code
    compile(code, path.name, "exec")


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_generated_module_direct_build_and_checker_agree(keras: Any, path: Path, tmp_path: Path) -> None:
    network = normdsl.check(normdsl.parse(path.read_text(), filename=path.name))
    keras.backend.clear_session()  # a fresh session: Keras names the generated module's layers from conv2d on
    generated = run_generated(normdsl.render(network))
    direct = normdsl.build_model(network)
    assert built_rows(network) == checker_rows(network)  # each layer, as Keras computes it
    assert keras_rows(generated) == keras_rows(direct)  # the same graph: Keras lists both alike
    assert configs(generated) == configs(direct)
    assert layer_names(generated) == layer_names(direct)
    assert generated.name == direct.name == path.stem
    if network.params < 5_000_000:  # saving VGG-16's 138 M parameters takes long and proves nothing new
        direct.save(tmp_path / "m.keras")
        loaded = keras.models.load_model(tmp_path / "m.keras")
        assert keras_rows(loaded) == keras_rows(direct)
        assert configs(loaded) == configs(direct)


@settings(max_examples=60)
@given(random_model())
def test_random_specs_three_views_agree(keras: Any, model: Any) -> None:
    shape, twins = model
    try:
        reference = keras_model(keras, shape, twins)
    except ValueError:
        return  # the oracle tests cover invalid specs
    network = normdsl.check(spec_text(shape, twins))
    generated = run_generated(normdsl.render(network))
    assert keras_rows(generated) == keras_rows(reference) == checker_rows(network)
    assert configs(generated) == configs(reference)


def layer_names(model: Any) -> list[str]:
    return [layer.name for layer in model.layers if type(layer).__name__ != "InputLayer"]


BRANCHY = """let stage(f, n) = (res(conv{f}(pad=same) bn relu, shortcut=conv{f}(k=1)) relu)*n
input(16, 16, 3)
conv8(name="conv_0") stage(8, 2) cat(conv4(k=1), maxpool(pool=3, s=1, pad=same) conv4(k=1)) se
gate(conv8(k=1) sigmoid) gap dense4(name="head")
"""


def test_the_direct_build_names_layers_as_keras_names_the_generated_modules(keras: Any) -> None:
    """Blocks used twice, loops, residuals, branches, a composite, and names the spec gives (conv_0 was
    the direct build's own name for the first conv once; user names stay theirs, and are not counted)."""
    from normdsl.emit_keras import auto_names

    network = normdsl.check(BRANCHY)
    keras.backend.clear_session()
    generated = layer_names(run_generated(normdsl.render(network)))
    direct = layer_names(normdsl.build_model(network))
    assert direct == generated
    assert direct[0] == "conv_0" and {"conv2d", "conv2d_1", "batch_normalization", "add", "multiply"} <= set(direct)
    assert len(set(direct)) == len(direct)
    assert auto_names(network)[:3] == [None, "conv2d", "conv2d_1"]


@settings(max_examples=25)
@given(random_model())
def test_random_specs_direct_build_and_generated_module_name_layers_alike(keras: Any, model: Any) -> None:
    try:
        network = normdsl.check(spec_text(*model))
    except normdsl.SpecError:
        return  # the oracle tests cover invalid specs
    keras.backend.clear_session()
    generated = layer_names(run_generated(normdsl.render(network)))
    assert layer_names(normdsl.build_model(network)) == generated


def test_the_header_docstring_names_the_file_holds_the_spec_and_the_totals() -> None:
    path = next(p for p in EXAMPLES if p.stem == "groupnorm")
    code = generate(path)
    assert code.startswith("# Generated by normdsl from groupnorm.nd")
    doc = ast.get_docstring(ast.parse(code))
    assert doc is not None and "groupnorm.nd" in doc and "388,672 parameters" in doc
    assert "conv32 conv64 conv128 gn(16) conv256" in doc
    assert "# groupnorm.nd:4:23  gn(16)" in code


# ---- no code injection -------------------------------------------------------------------------

EXPECTED_CALLS = {"keras.Input", "keras.Model", "range", "build_model().summary", "ImportError"}  # (the import guard)


def calls_and_imports(code: str) -> tuple[set[str], set[str]]:
    """Every call target and import in the module, by name (independent of normdsl's own check)."""
    tree = ast.parse(code)
    calls, imports = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = node.func.func if isinstance(node.func, ast.Call) else node.func
            calls.add(ast.unparse(target))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            imports.add(ast.unparse(node))
    return calls, imports


def assert_only_keras(code: str) -> None:
    calls, imports = calls_and_imports(code)
    own = {node.name for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)}
    # keras.applications' own layers (LayerScale, StochasticDepth) come from where keras.applications defines them
    applications = {f"from {k.module} import {k.keras_class}" for k in KINDS.values() if k.module}
    assert {"import keras", "from keras import layers"} <= imports  # Keras 3, whatever its backend
    assert imports <= {"import keras", "from keras import layers"} | applications
    unexpected = {
        c
        for c in calls
        if c not in EXPECTED_CALLS | own | {k.keras_class for k in KINDS.values() if k.module}
        and not (c.startswith("layers.") and c[7:].isidentifier())
    }
    assert unexpected == set()


HOSTILE = [
    'a")\nimport os\n#',
    'a"); import os; os.system("x"); ("',
    "x'''\"\"\"; __import__('os')",
    '\\"""\\n',
    "\u202e\u2028\u0085evil",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_layer_names_are_rejected_with_a_diagnostic(payload: str) -> None:
    escaped = payload.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    try:
        spec = normdsl.parse(f'conv8(name="{escaped}")')
    except normdsl.SpecError:
        return  # not even a string the grammar admits
    with pytest.raises(normdsl.SpecError, match="'name' must be"):
        normdsl.check(spec)


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_comments_and_file_names_stay_inert(payload: str) -> None:
    line = payload.replace("\n", " ")  # a comment ends at a newline; everything else stays in it
    text = f'# {line}\ninput(8, 8, 3) # """{line}\nconv8 relu  # {line}\n'
    code = normdsl.render(normdsl.parse(text, filename=f"{payload}.nd"))
    assert_only_keras(code)
    doc = ast.get_docstring(ast.parse(code))
    assert doc is not None
    for line in text.strip("\n").splitlines():  # the spec survives in the docstring, escaped not lost
        if line.isprintable():
            assert line.rstrip() in doc


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids())
def test_generated_examples_call_only_keras(path: Path) -> None:
    assert_only_keras(generate(path))


# ---- templates ---------------------------------------------------------------------------------


def test_a_template_dir_of_ones_own(tmp_path: Path) -> None:
    (tmp_path / "plain.py.j2").write_text(
        "{{ marker }}\nimport keras\nfrom keras import layers\n\n\n"
        "def build_model():\n    inputs = keras.Input(shape={{ input_shape }})\n"
        "{% for s in body %}\n    {{ s.code }}\n{% endfor %}\n"
        "    return keras.Model(inputs, {{ output }})\n"
    )
    code = normdsl.render("input(8, 8, 3) conv8 relu", "plain", template_dir=tmp_path)
    assert 'x = layers.Conv2D(8, 3, padding="valid")(inputs)' in code
    assert 'x = layers.Activation("relu")(x)' in code
    assert_only_keras(code)


def test_an_unknown_template_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no template named 'nope'"):
        normdsl.render("conv8", "nope")


def test_a_user_template_may_import_the_built_in_macros(tmp_path: Path) -> None:
    (tmp_path / "mine.py.j2").write_text(
        '{% from "_macros.j2" import model_code with context %}\n{{ marker }}\n'
        "import keras\nfrom keras import layers\n\n\n{{ model_code() }}\n"
    )
    spec = "input(8, 8, 3) conv8 relu"
    code = normdsl.render(spec, "mine", template_dir=tmp_path)
    built_in = normdsl.render(spec)
    body = built_in[built_in.index("def build_model") : built_in.index('\n\n\nif __name__ == "__main__"')]
    assert body in code


def test_a_template_dir_adds_to_the_built_in_templates_and_may_replace_one(tmp_path: Path) -> None:
    from normdsl.emit_source import templates

    (tmp_path / "model.py.j2").write_text("{{ marker }}\nNAME = {{ name }}\n")
    assert templates(tmp_path) == ["compare", "compare-notebook", "model", "notebook", "train"]
    assert normdsl.render("conv8", "model", template_dir=tmp_path) == '# Generated by normdsl\nNAME = "model"\n'
    assert normdsl.render("conv8", "train", template_dir=tmp_path) == normdsl.render("conv8", "train")


MISTAKES = [  # a user's template, and the diagnostic it gets (at the template's line, or the code it rendered)
    ("{{ marker }}\nx = {{ not_a_field }}\n", "mine.py.j2:2:8: error: 'not_a_field' is undefined"),
    ("{{ marker }}\n{% for s in %}\n", "mine.py.j2:2:1: error: template syntax: Expected an expression"),
    ('{{ marker }}\n{% include "_missing.j2" %}\n', "mine.py.j2:2:13: error: template '_missing.j2' not found"),
    ("{{ marker }}\n\nx = {{ 1 // 0 }}\n", "mine.py.j2:3:1: error: ZeroDivisionError: integer division"),
    ("{{ marker }}\n{{ cycler.__init__ }}\n", "mine.py.j2:2:11: error: the sandbox refuses it: access to attribute"),
    ("{{ marker }}\nx = {{ network.source }}\n", "mine.py.j2:2:1: error: a template printed str 'conv8"),
    (
        '{% from "_macros.j2" import model_code %}\n{{ model_code() }}\n',
        "mine.py.j2:2:1: error: 'functions' is undefined",
    ),
    ("{{ marker }}\nimport os\n", "<mine.py.j2 output>:2:1: error: the safety check refuses import os"),
    ("{{ marker }}\ndef (:\n", "<mine.py.j2 output>:2:5: error: the template rendered code that is not Python"),
]


@pytest.mark.parametrize(("template", "diagnostic"), MISTAKES)
def test_mistakes_in_a_user_template_are_diagnostics_at_its_line(
    template: str, diagnostic: str, tmp_path: Path, capsys: Any
) -> None:
    from normdsl import cli
    from normdsl.emit_source import BadTemplate

    (tmp_path / "mine.py.j2").write_text(template)
    with pytest.raises(BadTemplate) as caught:
        normdsl.render("conv8", "mine", template_dir=tmp_path)
    rendered = caught.value.render().replace(f"{tmp_path}/", "")
    assert rendered.startswith(diagnostic), rendered
    assert "Traceback" not in rendered and re.search(r"\n +\^", rendered)  # the line, and a caret under it
    spec = tmp_path / "spec.nd"
    spec.write_text("conv8\n")
    args = ["build", str(spec), "--template-dir", str(tmp_path), "--template", "mine", "-o", "-"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.replace(f"{tmp_path}/", "")
    assert err.startswith(diagnostic) and "Traceback" not in err and "internal error" not in err, err


def test_the_readmes_template_example_is_real_output(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    from conftest import ROOT

    from normdsl import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- template-example -->", 1)[1].split("<!-- /template-example -->")[0]
    template, command = (textwrap.dedent(part).strip() for part in section.split("the build names the mistake:"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "plain.py.j2").write_text(template + "\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "groupnorm.nd").write_text((ROOT / "examples" / "groupnorm.nd").read_text())
    monkeypatch.chdir(tmp_path)
    first, *shown = command.split("\n")
    assert cli.main(first.split()[2:]) == 1
    assert capsys.readouterr().err == "\n".join(shown) + "\n"


def test_names_a_user_template_adds_are_reserved_for_it(tmp_path: Path) -> None:
    """A template defining globals of its own (SCALE, helper, model): blocks named like them are
    renamed, each name is defined once, and ruff finds no redefinition or undefined name."""
    from normdsl.emit_source import template_names

    (tmp_path / "mine.py.j2").write_text(
        '{% from "_macros.j2" import model_code with context %}\n{{ marker }}\n'
        "import keras\nfrom keras import layers\n\nSCALE = 2\n\n\n"
        "def helper(value):\n    return value\n\n\n{{ model_code() }}\n\n\n"
        "def model():\n    return helper(build_model())\n"
    )
    assert {"SCALE", "helper", "value", "model", "build_model"} <= template_names("mine", tmp_path)
    assert "helper" not in template_names("model")
    spec = "let SCALE = relu\nlet helper(value) = conv{value}\nlet model = relu\ninput(8, 8, 3) SCALE helper(4) model"
    code = normdsl.render(spec, "mine", template_dir=tmp_path)
    tree = ast.parse(code)
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    defined += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert sorted(defined) == ["SCALE", "SCALE_", "build_model", "helper", "helper_", "model", "model_"]
    assert "def helper_(x, value_):" in code
    assert "x = helper(x)" not in code and "x = helper_(x, 4)" in code
    (tmp_path / "mine.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F811,F821,F823", str(tmp_path / "mine.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_a_template_failing_only_for_the_network_its_names_are_found_with_is_still_an_error(tmp_path: Path) -> None:
    from normdsl.emit_source import BadTemplate

    (tmp_path / "odd.py.j2").write_text("{{ marker }}\n{% if classes == 10 %}x = {{ 1 // 0 }}{% endif %}\n")
    with pytest.raises(BadTemplate, match=r"odd\.py\.j2:2:1: error: ZeroDivisionError"):
        normdsl.render("input(8, 8, 3) conv4 gap dense3(act=softmax)", "odd", template_dir=tmp_path)


def test_the_keras_target_renders_every_kind_of_ir_operation() -> None:
    import typing

    from normdsl import ir, target_keras

    assert set(target_keras.TRANSFORMS) == set(typing.get_args(ir.Op))

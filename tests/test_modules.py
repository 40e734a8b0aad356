"""``use``: other files' blocks in a spec's scope (issue 13). Paths are relative to the using file;
cycles, clashes and missing files are diagnostics; a problem inside a used file is shown at that
file's own line and column; the model is the one Keras builds from the same layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import keras_rows

import normdsl
from normdsl.modules import MAX_FILES

BLOCKS = """\
# blocks used by a spec in the folder above
let unit(f) = (conv{f}(pad=same) norm relu)
let pair(f) = (unit(f) unit({2*f}))
let bad(f) = conv{f}(k=x)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.nd").write_text(BLOCKS)
    (tmp_path / "lib" / "more.nd").write_text('use "blocks.nd"\nlet four(f) = (pair(f) pair(f))\n')
    (tmp_path / "model.nd").write_text('use "lib/more.nd"\nnorm = bn\ninput(16, 16, 3)\nfour(4)\n')
    return tmp_path


def check_file(path: Path) -> normdsl.Network:
    return normdsl.check(normdsl.parse(path.read_text(), filename=str(path)))


def errors(path: Path) -> str:
    with pytest.raises(normdsl.SpecError) as caught:
        check_file(path)
    return caught.value.render()


def test_used_blocks_build_the_model_keras_builds(project: Path, keras: Any) -> None:
    network = check_file(project / "model.nd")
    L = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for f in (4, 8, 4, 8):  # four(4) = pair(4) pair(4); pair(f) = unit(f) unit(2f)
        x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(f, 3, padding="same")(x)))
    reference = keras.Model(inputs, x)
    assert keras_rows(normdsl.build_model(network)) == keras_rows(reference)
    assert network.params == reference.count_params()


def test_a_problem_inside_a_used_file_is_shown_at_its_own_line_and_column(project: Path) -> None:
    (project / "model.nd").write_text('use "lib/blocks.nd"\nnorm = bn\ninput(16, 16, 3)\nbad(4)\n')
    rendered = errors(project / "model.nd")
    # line 4 of blocks.nd is `let bad(f) = conv{f}(k=x)`: k=x starts at column 22
    assert rendered.startswith(f"{project / 'lib' / 'blocks.nd'}:4:22: error: conv: 'k' must be")
    assert rendered.splitlines()[1] == "  let bad(f) = conv{f}(k=x)"


def test_the_generated_code_cites_the_used_file(project: Path) -> None:
    code = normdsl.render(check_file(project / "model.nd"))
    assert "# blocks.nd:2:1  block unit(f)" in code and "# more.nd:2:1  block four(f)" in code
    assert "# blocks.nd:2:16  conv{f}(pad=same)" in code


def test_files_using_each_other_are_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.nd").write_text('use "b.nd"\nlet one = relu\n')
    (tmp_path / "b.nd").write_text('use "a.nd"\nlet two = relu\n')
    (tmp_path / "m.nd").write_text('use "a.nd"\ninput(4) one two\n')
    rendered = errors(tmp_path / "m.nd")
    assert "files use each other in a cycle: " in rendered and "a.nd → " in rendered and "b.nd → " in rendered
    assert f"{tmp_path / 'b.nd'}:1:1: error" in rendered


def test_a_block_defined_in_two_files_names_both_places(tmp_path: Path) -> None:
    (tmp_path / "a.nd").write_text("let unit = relu\n")
    (tmp_path / "m.nd").write_text('use "a.nd"\n\nlet unit = gelu\ninput(4) unit\n')
    rendered = errors(tmp_path / "m.nd")
    assert f"{tmp_path / 'a.nd'}:1:5: error: block 'unit' is defined in {tmp_path / 'a.nd'} and in" in rendered
    assert "m.nd:3:5" in rendered


@pytest.mark.parametrize(
    ("use", "message"),
    [
        ('use "nope.nd"', "cannot use {d}/nope.nd: no such file (looked for {d}/nope.nd)"),
        ("use std/nope", "cannot use std/nope.nd: no such file"),
        ('use "notes.txt"', "only .nd files hold blocks"),
        ('use "folder.nd"', "not a regular file"),
        ('use "layers.nd"', "layers.nd is used for its blocks: it cannot hold layers or input(...)"),
        ('use "broken.nd"', "broken.nd:1:14: error: the spec ends too early"),  # after (relu
    ],
)
def test_a_use_that_cannot_be_made_is_a_diagnostic(tmp_path: Path, use: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("let x = relu\n")
    (tmp_path / "folder.nd").mkdir()
    (tmp_path / "layers.nd").write_text("input(4) relu\n")
    (tmp_path / "broken.nd").write_text("let x = (relu\n")
    (tmp_path / "m.nd").write_text(f"{use}\ninput(4) relu\n")
    assert message.format(d=tmp_path) in errors(tmp_path / "m.nd")


def test_text_that_is_no_file_uses_paths_from_the_working_folder(project: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(project)
    network = normdsl.check('use "lib/blocks.nd"\nnorm = bn\ninput(8, 8, 3) unit(4)')
    assert [layer.kind for layer in network.layers] == ["conv", "bn", "relu"]
    result = subprocess.run(
        [sys.executable, "-m", "normdsl", "check", "-"],
        input='use "lib/blocks.nd"\nnorm = bn\ninput(8, 8, 3) pair(2)',
        capture_output=True,
        text=True,
        cwd=project,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_file_used_twice_is_read_once(project: Path) -> None:
    (project / "model.nd").write_text('use "lib/more.nd"\nuse "lib/blocks.nd"\nnorm = bn\ninput(8, 8, 3) unit(4)\n')
    assert check_file(project / "model.nd").params > 0


def test_uses_nested_too_deep_or_too_many_files_stop_with_a_diagnostic(tmp_path: Path) -> None:
    for i in range(100):  # a chain 100 files deep
        (tmp_path / f"c{i}.nd").write_text(f'use "c{i + 1}.nd"\n' if i < 99 else "let end = relu\n")
    (tmp_path / "deep.nd").write_text('use "c0.nd"\ninput(4) relu\n')
    assert "uses nested too deep" in errors(tmp_path / "deep.nd")
    for i in range(MAX_FILES + 5):  # a fan of files, each used once
        (tmp_path / f"f{i}.nd").write_text(f"let b{i} = relu\n")
    (tmp_path / "wide.nd").write_text("".join(f'use "f{i}.nd"\n' for i in range(MAX_FILES + 5)) + "input(4) relu\n")
    assert f"more than {MAX_FILES} used files" in errors(tmp_path / "wide.nd")


def test_uses_survive_the_json_round_trip() -> None:
    spec = normdsl.parse('use "a/b.nd"\nuse std/mbconv\ninput(4) relu')
    assert normdsl.Spec.from_json(spec.to_json()) == spec
    assert [(u.path, u.std) for u in spec.uses] == [("a/b.nd", False), ("mbconv", True)]

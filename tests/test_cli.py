"""The normdsl command: exit codes, output files that are never lost or half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, ROOT, checker_rows, keras_rows

import normdsl
from normdsl import cli

GROUPNORM = next(p for p in EXAMPLES if p.stem == "groupnorm")


SCRIPT = Path(sys.executable).parent / "normdsl"  # the console script installed beside this Python


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_check_accepts_every_example() -> None:
    result = run("check", *map(str, EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok,") == len(EXAMPLES)


def test_check_rejects_a_bad_spec_with_a_positioned_diagnostic(tmp_path: Path) -> None:
    spec = tmp_path / "model.nd"
    spec.write_text("input(224, 224, 3)\nconv32 conv64 conv128 bnn conv256\n")
    result = run("check", str(spec))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{spec}:2:23: error: unknown layer 'bnn'",
        "  conv32 conv64 conv128 bnn conv256",
        "                        ^~~",
        "  hint: did you mean 'bn'?",
        "1 error, 0 warnings",
    ]


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run([sys.executable, "-m", "normdsl", "check", str(GROUPNORM)], capture_output=True, text=True)
    assert result.returncode == 0 and ": ok," in result.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [(["check", "/no/such/file.nd"], 2), (["frobnicate"], 2), (["summary", "x.nd", "--input", "3,x"], 2), ([], 2)],
)
def test_usage_errors_exit_2(args: list[str], code: int) -> None:
    result = run(*args)
    assert result.returncode == code
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"\x00\x01\x02binary", "binary file"), (b"conv8 \xff\xfe", "not UTF-8"), (b"", None)],
)
def test_files_that_are_not_specs_get_one_clear_line(tmp_path: Path, content: bytes, needle: str | None) -> None:
    spec = tmp_path / "odd.nd"
    spec.write_bytes(content)
    result = run("check", str(spec))
    assert "Traceback" not in result.stderr
    if needle is None:  # an empty spec is a valid model with no layers
        assert result.returncode == 0
    else:
        assert result.returncode == 1 and needle in result.stderr
        assert result.stderr.splitlines()[1:] == ["1 error, 0 warnings"]


def test_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run("check", str(tmp_path))
    assert result.returncode == 2 and "is a directory" in result.stderr


def test_parse_json_round_trips(tmp_path: Path) -> None:
    result = run("parse", str(GROUPNORM), "--json")
    assert result.returncode == 0
    assert normdsl.Spec.from_json(result.stdout) == normdsl.parse(GROUPNORM.read_text(), filename=str(GROUPNORM))


def test_summary_prints_kerass_count_for_the_seed_group_norm_model() -> None:
    result = run("summary", str(GROUPNORM))
    assert result.returncode == 0
    assert "Total params: 388,672" in result.stdout
    assert "gn(16) (GroupNormalization)" in result.stdout


def test_summary_json_and_input_override(keras: Any) -> None:
    result = run("summary", str(GROUPNORM), "--json", "--input", "32,32,3")
    figures = json.loads(result.stdout)
    assert figures["input_shape"] == [None, 32, 32, 3]
    assert figures["output_shape"] == [None, 24, 24, 256]
    assert figures["params"] == 388_672  # convolution and norm weights do not depend on the spatial size
    assert [layer["text"] for layer in figures["layers"]] == ["conv32", "conv64", "conv128", "gn(16)", "conv256"]


def test_summary_keras_prints_kerass_own_summary() -> None:
    result = run("summary", str(GROUPNORM), "--keras", "--input", "16,16,3")
    assert result.returncode == 0, result.stderr
    assert "Total params: 388,672" in result.stdout and "GroupNormalization" in result.stdout


# ---- build: the main job -----------------------------------------------------------------------


def test_build_writes_code_next_to_the_spec_that_runs(tmp_path: Path) -> None:
    spec = tmp_path / "groupnorm.nd"
    spec.write_text(GROUPNORM.read_text())
    result = run("build", str(spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {tmp_path / 'groupnorm.py'}: 388,672 params")
    out = subprocess.run([sys.executable, str(tmp_path / "groupnorm.py")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Total params: 388,672" in out.stdout


def test_build_to_stdout_writes_no_file(tmp_path: Path) -> None:
    spec = tmp_path / "m.nd"
    spec.write_text("input(8, 8, 3) conv8")
    result = run("build", str(spec), "-o", "-")
    assert result.returncode == 0 and result.stdout.startswith("# Generated by normdsl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd"]


def test_build_verify_compares_the_written_code_with_keras(tmp_path: Path) -> None:
    out = tmp_path / "g.py"
    result = run("build", str(GROUPNORM), "-o", str(out), "--verify", "--input", "16,16,3")
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stderr


def test_build_writes_nothing_when_the_spec_has_errors(tmp_path: Path) -> None:
    spec = tmp_path / "bad.nd"
    spec.write_text("conv32 gn(12)")
    result = run("build", str(spec))
    assert result.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.nd"]


def test_build_refuses_to_overwrite_a_file_it_did_not_generate(tmp_path: Path) -> None:
    spec, out = tmp_path / "m.nd", tmp_path / "m.py"
    spec.write_text("input(8, 8, 3) conv8")
    out.write_text("my precious code\n")
    result = run("build", str(spec))
    assert result.returncode == 2 and "not generated by normdsl" in result.stderr
    assert out.read_text() == "my precious code\n"
    assert run("build", str(spec), "--force").returncode == 0
    assert out.read_text().startswith("# Generated by normdsl")


def test_build_overwrites_its_own_output(tmp_path: Path) -> None:
    spec, out = tmp_path / "m.nd", tmp_path / "m.py"
    spec.write_text("input(8, 8, 3) conv8")
    assert run("build", str(spec)).returncode == 0
    spec.write_text("input(8, 8, 3) conv16")
    assert run("build", str(spec)).returncode == 0
    assert "Conv2D(16" in out.read_text()


def test_build_does_not_replace_a_symlink(tmp_path: Path) -> None:
    spec, target, link = tmp_path / "m.nd", tmp_path / "elsewhere.py", tmp_path / "m.py"
    spec.write_text("conv8")
    target.write_text("# Generated by normdsl, but reached through a link\n")
    link.symlink_to(target)
    result = run("build", str(spec))
    assert result.returncode == 2 and "symbolic link" in result.stderr
    assert link.is_symlink() and target.read_text().startswith("# Generated by normdsl, but")


def test_a_failed_write_leaves_the_old_file_intact_and_no_temporary(tmp_path: Path, monkeypatch: Any) -> None:
    spec, out = tmp_path / "m.nd", tmp_path / "m.py"
    spec.write_text("input(8, 8, 3) conv8")
    assert cli.main(["build", str(spec)]) == 0
    before = out.read_text()
    spec.write_text("input(8, 8, 3) conv16")

    def crash(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    assert cli.main(["build", str(spec)]) == 2
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd", "m.py"]


def test_save_writes_a_keras_file_that_loads_with_the_same_figures(keras: Any, tmp_path: Path) -> None:
    out = tmp_path / "model.keras"
    spec = next(p for p in EXAMPLES if p.stem == "cifar_vgg")
    assert cli.main(["save", str(spec), "-o", str(out)]) == 0
    loaded = keras.models.load_model(out)
    assert keras_rows(loaded) == checker_rows(normdsl.check(spec.read_text()))
    assert cli.main(["save", str(spec), "-o", str(out)]) == 0  # normdsl wrote it: replaced without --force
    out.write_bytes(b"a model of someone else's")
    assert cli.main(["save", str(spec), "-o", str(out)]) == 2  # only with --force
    assert cli.main(["save", str(spec), "-o", str(out), "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_building_without_tensorflow_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # as if TensorFlow were not installed
        "from normdsl import cli; sys.exit(cli.main(['save', sys.argv[1], '-o', sys.argv[2]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(GROUPNORM), str(tmp_path / "m.keras")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert 'pip install "normdsl[tensorflow]"' in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_50_megabyte_file_is_one_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "huge.nd"
    with spec.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    result = run("check", str(spec))
    assert result.returncode == 1 and "too large for a spec" in result.stderr
    assert len(result.stderr.splitlines()) == 2 and "Traceback" not in result.stderr  # the error, the count


def test_a_failing_renderer_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: Any) -> None:
    import normdsl.emit_source

    spec, out = tmp_path / "m.nd", tmp_path / "m.py"
    spec.write_text("input(8, 8, 3) conv8")
    assert cli.main(["build", str(spec)]) == 0
    before = out.read_bytes()

    def broken(*_: object, **__: object) -> str:
        raise normdsl.emit_source.RenderError("the renderer broke")

    monkeypatch.setattr(normdsl.emit_source, "render", broken)
    assert cli.main(["build", str(spec)]) == 3  # an internal error, said in one line
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd", "m.py"]


def test_an_interrupted_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: Any) -> None:
    from normdsl import writer

    out = tmp_path / "m.py"
    out.write_text("# Generated by normdsl, the old version\n")

    def interrupted(tmp: Path) -> None:
        tmp.write_text("# Generated by normdsl, half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        writer.write_atomically(out, interrupted)
    assert out.read_text() == "# Generated by normdsl, the old version\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.py"]


def test_32_concurrent_builds_into_one_folder_write_exactly_the_right_files(tmp_path: Path) -> None:
    specs = []
    for i in range(32):
        spec = tmp_path / f"m{i}.nd"
        spec.write_text(f"input(8, 8, 3) conv{i + 1}(pad=same) relu")
        specs.append(spec)
    processes = [
        subprocess.Popen([str(SCRIPT), "build", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in specs
    ]
    assert [p.wait(timeout=300) for p in processes] == [0] * 32
    for i, spec in enumerate(specs):
        code = spec.with_suffix(".py").read_text()
        assert code.startswith("# Generated by normdsl from m") and f"layers.Conv2D({i + 1}, 3," in code
        compile(code, spec.name, "exec")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [s.name for s in specs] + [s.with_suffix(".py").name for s in specs]
    )


def test_kinds_lists_every_registry_entry_and_the_readme_table_is_generated_from_it() -> None:
    from normdsl.layers import COMPOSITES, KINDS
    from normdsl.reference import markdown_table

    result = subprocess.run(
        [sys.executable, "-m", "normdsl", "kinds", "--json"], capture_output=True, text=True, check=True, timeout=60
    )
    listed = json.loads(result.stdout)
    assert [k["kind"] for k in listed] == [*KINDS, *COMPOSITES]
    conv = next(k for k in listed if k["kind"] == "conv")
    assert conv["keras_class"] == "Conv2D" and {"key": "k", "keras": "kernel_size"}.items() <= conv["params"][0].items()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- kinds:", 1)[1].split("\n", 1)[1].split("\n<!-- /kinds -->", 1)[0]
    assert table == markdown_table()


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "normdsl", "kinds"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert err == "" and process.returncode in (0, 141)

"""The command line as a Unix tool (issue 15): closed pipes, several specs, standard input and -e, options
that conflict, help and shell completion, colour, the count line, TensorFlow kept quiet."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES

from normdsl import cli, writer

GROUPNORM = next(p for p in EXAMPLES if p.stem == "groupnorm")
SCRIPT = Path(sys.executable).parent / "normdsl"  # the console script installed beside this Python
SPEC = "input(8, 8, 3) conv8\n"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour or style escape


def environment(**changes: str | None) -> dict[str, str]:
    """This environment without colour settings or TensorFlow's log level, then ``changes`` (None removes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TF_CPP_MIN_LOG_LEVEL")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env or environment(), **kwargs
    )


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "m.nd"
    path.write_text(SPEC)
    return path


# ---- a closed pipe, and errors that are not usage errors ----------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["check", str(GROUPNORM)],
        ["summary", str(GROUPNORM)],
        ["summary", str(GROUPNORM), "--json"],
        ["parse", str(GROUPNORM)],
        ["build", str(GROUPNORM), "-o", "-"],
        ["kinds"],
    ],
    ids=lambda args: " ".join(a for a in args if "/" not in a),
)
def test_every_command_writing_into_a_closed_pipe_stops_quietly_as_unix_tools_do(args: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte (as `| head -0`)
    try:
        result = subprocess.run([str(SCRIPT), *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")  # 128 + SIGPIPE, as a process killed by it


@pytest.mark.parametrize(
    "args", [["check", str(GROUPNORM)], ["build", str(GROUPNORM), "-o", "-"]], ids=["check", "build"]
)
def test_a_command_started_with_standard_output_closed_says_so(args: list[str]) -> None:
    def close_stdout() -> None:
        os.close(1)  # as `normdsl ... >&-`

    result = subprocess.run(
        [str(SCRIPT), *args], stdout=None, stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=close_stdout
    )
    assert (result.returncode, result.stderr) == (2, "normdsl: error: <stdout>: standard output is closed\n")


def test_the_program_exits_at_once_yet_everything_it_printed_arrives(tmp_path: Path, capsys: Any) -> None:
    """The console script skips the interpreter's teardown (cli.run): what it wrote, to a file and through a pipe,
    is all there, byte for byte what main() prints in process."""
    resnet = next(p for p in EXAMPLES if p.stem == "resnet50")
    for args in (["parse", str(resnet)], ["summary", str(resnet)], ["check", "-e", "input(8) foo"]):
        assert cli.main(args) in (0, 1)
        expected = capsys.readouterr()
        with open(tmp_path / "out", "w") as out:
            code = subprocess.run([str(SCRIPT), *args], stdout=out, stderr=subprocess.PIPE, text=True, timeout=120)
        piped = run(*args)
        assert (tmp_path / "out").read_text() == piped.stdout == expected.out and len(expected.out + expected.err) > 30
        assert code.stderr == piped.stderr == expected.err and code.returncode == piped.returncode


def test_an_internal_value_error_is_an_internal_error_not_a_usage_error(monkeypatch: Any, capsys: Any) -> None:
    def broken(*_: object, **__: object) -> Any:
        raise ValueError("a bug of ours")

    monkeypatch.setattr(cli, "parse", broken)
    assert cli.main(["summary", str(GROUPNORM)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("normdsl: internal error: ") and "a bug of ours" in err and "Traceback" not in err


def test_an_internal_error_shows_its_traceback_with_verbose(monkeypatch: Any, capsys: Any) -> None:
    def broken(*_: object, **__: object) -> Any:
        raise ValueError("a bug of ours")

    monkeypatch.setattr(cli, "parse", broken)
    assert cli.main(["summary", str(GROUPNORM), "--verbose"]) == 3
    assert "Traceback" in capsys.readouterr().err


# ---- several specs, standard input, -e -------------------------------------------------------------


def test_summary_of_several_files_prints_each(tmp_path: Path) -> None:
    (tmp_path / "a.nd").write_text("input(8, 8, 3) conv8\n")
    (tmp_path / "b.nd").write_text("input(8, 8, 3) conv16\n")
    result = run("summary", "a.nd", "b.nd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Model:")] == ['"a"', '"b"']


def test_check_reads_standard_input_for_a_dash() -> None:
    result = run("check", "-", input="input(8, 8, 3) conv8 bnn\n")
    assert result.returncode == 1 and result.stderr.startswith("<stdin>:1:22: error: unknown layer 'bnn'")


def test_dash_e_checks_a_spec_given_on_the_command_line() -> None:
    result = run("check", "-e", "input(8, 8, 3) conv8", "-e", "input(8, 8, 3) conv8 bnn")
    assert result.returncode == 1
    assert result.stdout.startswith("<expr>: ok, 224 params")
    assert result.stderr.startswith("<expr2>:1:22: error: unknown layer 'bnn'")


@pytest.mark.parametrize("command", [["summary"], ["summary", "--json"], ["parse"]])
def test_dash_e_works_for_every_command_that_reads_a_spec(command: list[str]) -> None:
    result = run(*command, "-e", "input(8, 8, 3) conv8")
    assert result.returncode == 0, result.stderr
    assert "conv" in result.stdout


def test_build_of_several_files_writes_each_beside_its_spec(tmp_path: Path) -> None:
    (tmp_path / "a.nd").write_text("input(8, 8, 3) conv8\n")
    (tmp_path / "b.nd").write_text("input(8, 8, 3) conv16\n")
    result = run("build", "a.nd", "b.nd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Conv2D(8," in (tmp_path / "a.py").read_text() and "Conv2D(16," in (tmp_path / "b.py").read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["parse", "a.nd", "a.nd"], "parse takes one spec"),
        (["save", "a.nd", "a.nd", "-o", "m.keras"], "save takes one spec"),
        (["summary", "--json", "a.nd", "a.nd"], "--json takes one spec"),
        (["build", "a.nd", "a.nd", "-o", "x.py"], "-o names one file"),
        (["build", "-e", "conv8"], "needs -o"),
        (["build", "a.nd", "-e", "conv8"], "needs -o"),
        (["build", "a.nd", "-"], "needs -o"),
        (["check", "-", "-"], "standard input"),
        (["check"], "give a SPEC"),
    ],
)
def test_specs_a_command_cannot_take_are_usage_errors(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "a.nd").write_text(SPEC)
    result = run(*args, cwd=tmp_path, input="")
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nd"]


# ---- options that would be ignored or half-applied are errors -----------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["parse", "{spec}", "--norm", "gn(2)"], "unrecognized arguments: --norm"),
        (["parse", "{spec}", "--input", "8,8,3"], "unrecognized arguments: --input"),
        (["summary", "{spec}", "--json", "--keras"], "not allowed with argument"),
        (["build", "{spec}", "--strategy", "mirrored"], "--strategy"),
        (["build", "{spec}", "--template", "notebook", "-o", "{dir}/x.py"], ".ipynb"),
        (["build", "{spec}", "--template", "notebook", "-o", "{dir}/x.ipynb", "--verify"], "--verify"),
    ],
)
def test_an_option_that_cannot_apply_is_a_usage_error_and_nothing_is_written(
    spec: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    result = run(*(a.format(spec=spec, dir=tmp_path) for a in args))
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd"]


def test_verify_without_tensorflow_fails_before_writing(spec: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # as if TensorFlow were not installed
        "from normdsl import cli; sys.exit(cli.main(['build', sys.argv[1], '--verify']))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and 'pip install "normdsl[tensorflow]"' in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd"]


# ---- files: .keras ownership, a missing folder -------------------------------------------------


def test_save_overwrites_a_keras_file_it_wrote_itself(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    assert run("save", str(spec), "-o", str(out)).returncode == 0
    again = run("save", str(spec), "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.nd"]


def test_a_keras_file_normdsl_wrote_loads_in_keras(keras: Any, spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    assert cli.main(["save", str(spec), "-o", str(out)]) == 0
    assert writer.is_generated(out)
    assert keras.models.load_model(out).count_params() == 224  # Conv2D(8, 3) on 3 channels: 3*3*3*8 + 8


@pytest.mark.parametrize("content", ["zip", "text"])
def test_save_refuses_a_keras_file_it_did_not_write(spec: Path, tmp_path: Path, content: str) -> None:
    out = tmp_path / "m.keras"
    if content == "zip":  # as Keras writes one: a zip archive without our mark
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("metadata.json", "{}")
    else:
        out.write_text("my model\n")
    before = out.read_bytes()
    result = run("save", str(spec), "-o", str(out))
    assert result.returncode == 2 and "was not generated by normdsl" in result.stderr
    assert out.read_bytes() == before


def test_writing_into_a_missing_folder_names_the_folder(spec: Path, tmp_path: Path) -> None:
    result = run("build", str(spec), "-o", str(tmp_path / "missing" / "x.py"))
    assert result.returncode == 2
    assert result.stderr == f"normdsl: error: {tmp_path / 'missing'}: no such folder\n"


def test_a_failing_temporary_file_is_reported_with_its_folder(spec: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import tempfile

    def refused(**_: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied", str(tmp_path / ".x.py.abcdefgh.tmp.py"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OSError) as caught:
        writer.write_text(tmp_path / "x.py", "text")
    assert caught.value.filename == str(tmp_path) and caught.value.strerror == "Permission denied"


# ---- help and shell completion -------------------------------------------------------------------


def test_no_arguments_prints_the_help() -> None:
    result = run()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: normdsl") and "validate spec files" in result.stderr


def complete(line: str, tmp_path: Path, shell: str = "bash") -> list[str]:
    """What the shell is offered for ``line``: argcomplete's protocol, as its own tests drive it, with the
    variables its shell scripts set (fish asks for descriptions after a tab)."""
    out = tmp_path / "completions"
    env = environment(
        _ARGCOMPLETE="1",
        _ARGCOMPLETE_SHELL=shell,
        _ARGCOMPLETE_STDOUT_FILENAME=str(out),
        _ARGCOMPLETE_SUPPRESS_SPACE="1",
        _ARGCOMPLETE_DFS="\t" if shell == "fish" else None,
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
    )
    subprocess.run([str(SCRIPT)], env=env, capture_output=True, timeout=60, cwd=tmp_path, check=True)
    return sorted(out.read_text().split("\v"))


def test_completion_offers_the_commands(tmp_path: Path) -> None:
    assert complete("normdsl s", tmp_path) == ["save", "scale-report", "summary"]
    assert complete("normdsl bu", tmp_path) == ["build"]


def test_completion_offers_options_and_spec_files(tmp_path: Path) -> None:
    (tmp_path / "model.nd").write_text(SPEC)
    (tmp_path / "notes.txt").write_text("")
    assert complete("normdsl build --templ", tmp_path) == ["--template", "--template-dir"]
    assert complete("normdsl check m", tmp_path) == ["model.nd"]
    assert complete("normdsl build m.nd --template ", tmp_path) == [
        "compare",
        "compare-notebook",
        "model",
        "notebook",
        "train",
    ]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_in_zsh_and_fish_describes_the_commands(tmp_path: Path, shell: str) -> None:
    offered = complete("normdsl ch", tmp_path, shell=shell)
    assert len(offered) == 1 and offered[0].startswith("check") and "validate spec files" in offered[0]


# ---- colour, and the count line ------------------------------------------------------------------

BAD = "input(8, 8, 3)\nconv8 bnn\n"
WARNS = "input(8, 8, 3)\nconv8 bn bn\n"  # a normalization right after another


def test_diagnostics_are_coloured_on_request_and_only_their_colour_differs(tmp_path: Path) -> None:
    (tmp_path / "m.nd").write_text(BAD)
    (tmp_path / "w.nd").write_text(WARNS)
    plain = run("check", "m.nd", "w.nd", cwd=tmp_path)
    coloured = run("check", "m.nd", "w.nd", cwd=tmp_path, env=environment(FORCE_COLOR="1"))
    assert "\x1b[" not in plain.stderr
    assert "\x1b[1;31merror:\x1b[0m" in coloured.stderr and "\x1b[1;35mwarning:\x1b[0m" in coloured.stderr
    assert SGR.sub("", coloured.stderr) == plain.stderr


def test_no_color_wins_over_force_color(tmp_path: Path) -> None:
    (tmp_path / "m.nd").write_text(BAD)
    result = run("check", "m.nd", cwd=tmp_path, env=environment(FORCE_COLOR="1", NO_COLOR="1"))
    assert result.returncode == 1 and "\x1b[" not in result.stderr


def test_diagnostics_on_a_terminal_are_coloured(tmp_path: Path) -> None:
    (tmp_path / "m.nd").write_text(BAD)
    code, received = on_a_terminal(["check", "m.nd"], tmp_path, "stderr")
    assert code == 1 and b"\x1b[1;31merror:\x1b[0m" in received


def on_a_terminal(args: list[str], cwd: Path, stream: str) -> tuple[int, bytes]:
    """Run normdsl with ``stream`` (stdout or stderr) on a pseudo-terminal, the other to /dev/null:
    the exit status and what the terminal received."""
    leader, follower = pty.openpty()
    try:
        streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, stream: follower}
        process = subprocess.Popen([str(SCRIPT), *args], cwd=cwd, env=environment(TERM="xterm"), **streams)
        os.close(follower)
        received = b""
        while chunk := _read(leader):
            received += chunk
        return process.wait(timeout=60), received
    finally:
        os.close(leader)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end closed (Linux says EIO)
        return b""


def test_check_ends_with_a_count_of_errors_and_warnings(tmp_path: Path) -> None:
    (tmp_path / "bad.nd").write_text(BAD)
    (tmp_path / "warn.nd").write_text(WARNS)
    (tmp_path / "ok.nd").write_text(SPEC)
    assert run("check", "ok.nd", cwd=tmp_path).stderr == "0 errors, 0 warnings\n"
    assert run("check", "warn.nd", cwd=tmp_path).stderr.splitlines()[-1] == "0 errors, 1 warning"
    result = run("check", "bad.nd", "warn.nd", "missing.nd", "ok.nd", cwd=tmp_path)
    assert result.stderr.splitlines()[-1] == "2 errors, 1 warning"  # bnn and missing.nd; bn bn


# ---- TensorFlow's start-up lines ---------------------------------------------------------------------

TF_NOISE = re.compile(r"absl::InitializeLog|oneDNN|cpu_feature_guard|^[IWE]\d{4} ", re.MULTILINE)


@pytest.mark.parametrize(
    "args",
    [["summary", "{spec}", "--keras"], ["save", "{spec}", "-o", "{dir}/m.keras"], ["build", "{spec}", "--verify"]],
    ids=["summary --keras", "save", "build --verify"],
)
def test_tensorflows_start_up_lines_are_not_shown(spec: Path, tmp_path: Path, args: list[str]) -> None:
    result = run(*(a.format(spec=spec, dir=tmp_path) for a in args))
    assert result.returncode == 0, result.stderr
    assert not TF_NOISE.search(result.stderr), result.stderr
    assert result.stderr in ("", "verified: Keras (tensorflow) builds 1 layers with the same shapes and 224 params\n")


# ---- errors in --norm and --set text point into that text ----------------------------------------


def test_a_syntax_error_in_norm_points_into_the_norm_text(spec: Path) -> None:
    result = run("check", str(spec), "--norm", "gn((")
    assert result.returncode == 1
    assert result.stderr.splitlines()[:3] == ["--norm:1:5: error: the spec ends too early", "  gn((", "      ^"]


def test_a_syntax_error_in_set_points_into_the_set_text(spec: Path) -> None:
    result = run("check", str(spec), "--set", "stem=conv8 )")
    assert result.returncode == 1 and result.stderr.startswith("--set stem:1:7: error:")


@pytest.mark.parametrize(
    ("norm", "expected"),
    [
        ("gnn(4)", ["--norm:1:1: error: unknown layer 'gnn'", "  gnn(4)", "  ^~~"]),
        ("bn(foo=1)", ["--norm:1:4: error: bn has no argument 'foo'", "  bn(foo=1)", "     ^~~~~"]),
    ],
)
def test_a_checking_error_in_norm_is_shown_in_the_norm_text(tmp_path: Path, norm: str, expected: list[str]) -> None:
    (tmp_path / "m.nd").write_text("input(8, 8, 3)\nnorm = bn\nconv8 norm relu\n")
    result = run("check", "m.nd", "--norm", norm, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:3] == expected


def test_the_summary_on_a_terminal_is_styled_and_only_its_style_differs(tmp_path: Path) -> None:
    (tmp_path / "m.nd").write_text(SPEC)
    code, received = on_a_terminal(["summary", "m.nd"], tmp_path, "stdout")
    assert code == 0
    styled = received.decode().replace("\r\n", "\n")
    plain = subprocess.run(
        [str(SCRIPT), "summary", "m.nd"], cwd=tmp_path, capture_output=True, text=True, env=environment(), timeout=60
    ).stdout
    assert "\x1b[1mModel:" in styled and " \x1b[1mTotal params:" in styled and "\x1b" not in plain
    assert SGR.sub("", styled) == plain

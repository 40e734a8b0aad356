"""What the command does with files that are not what they seem: devices, pipes, sockets, standard input,
long or hostile names, signals and full disks. Nothing hangs, nothing is lost, every error names its subject."""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from normdsl import cli, writer

SPEC = "input(8, 8, 3) conv8\n"
ONE_ERROR = "1 error, 0 warnings\n"  # the count line ending every check


def run(*args: str, stdin: Any = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m normdsl`` with a memory cap, so that a command reading without end fails instead of
    swapping the machine, and a timeout, so that one that blocks fails instead of hanging the tests."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    return subprocess.run(
        [sys.executable, "-m", "normdsl", *args],
        capture_output=True,
        text=True,
        stdin=stdin,
        timeout=timeout,
        preexec_fn=cap_memory,
    )


def stdin_of(monkeypatch: Any, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "m.nd"
    path.write_text(SPEC)
    return path


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.nd"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sock.nd"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        yield path


# 1. Only regular files (or standard input) are read as specs, and never more than the limit.


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_at_once(device: str) -> None:
    result = run("check", device)
    assert result.returncode == 2
    assert result.stderr == f"normdsl: error: {device}: is a character device, not a regular file\n{ONE_ERROR}"


def test_a_fifo_without_a_writer_is_refused_without_waiting(fifo: Path) -> None:
    result = run("check", str(fifo), timeout=30)
    assert result.returncode == 2 and result.stderr.endswith(f"is a named pipe (FIFO), not a regular file\n{ONE_ERROR}")


def test_a_fifo_fed_without_end_is_refused_without_reading_it(fifo: Path) -> None:
    writer_end = os.open(fifo, os.O_RDWR)  # opening read-write does not wait for a reader
    yes = subprocess.Popen(["yes"], stdout=writer_end, stderr=subprocess.DEVNULL)
    os.close(writer_end)
    try:
        result = run("check", str(fifo), timeout=30)
    finally:
        yes.kill()
        yes.wait()
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_a_socket_is_refused(unix_socket: Path) -> None:
    result = run("check", str(unix_socket))
    assert result.returncode == 2
    assert result.stderr == f"normdsl: error: {unix_socket}: is a socket, not a regular file\n{ONE_ERROR}"


def test_a_dash_reads_the_spec_from_standard_input(monkeypatch: Any, capsys: Any) -> None:
    stdin_of(monkeypatch, SPEC.encode())
    assert cli.main(["check", "-"]) == 0
    assert capsys.readouterr().out.startswith("<stdin>: ok, ")


def test_diagnostics_for_standard_input_say_stdin(monkeypatch: Any, capsys: Any) -> None:
    stdin_of(monkeypatch, b"conv8 bnn\n")
    assert cli.main(["check", "-"]) == 1
    assert capsys.readouterr().err.startswith("<stdin>:1:7: error: unknown layer 'bnn'")


@pytest.mark.parametrize("command", [["parse", "-", "--json"], ["summary", "-"], ["summary", "-", "--json"]])
def test_every_command_that_reads_a_spec_reads_standard_input(
    monkeypatch: Any, capsys: Any, command: list[str]
) -> None:
    stdin_of(monkeypatch, SPEC.encode())
    assert cli.main(command) == 0
    assert "conv" in capsys.readouterr().out.lower()


def test_build_from_standard_input_writes_where_o_says(monkeypatch: Any, tmp_path: Path) -> None:
    stdin_of(monkeypatch, SPEC.encode())
    out = tmp_path / "m.py"
    assert cli.main(["build", "-", "-o", str(out)]) == 0
    assert out.read_text().startswith(writer.MARKER)


def test_build_from_standard_input_needs_o(monkeypatch: Any, capsys: Any, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    stdin_of(monkeypatch, SPEC.encode())
    assert cli.main(["build", "-"]) == 2
    assert "needs -o" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_standard_input_without_end_is_read_only_up_to_the_limit() -> None:
    with open("/dev/zero", "rb") as zeros:
        result = run("check", "-", stdin=zeros)
    assert result.returncode == 1
    too_large = f"normdsl: error: <stdin>: more than {cli.MAX_SPEC_BYTES:,} bytes is too large for a spec\n"
    assert result.stderr == too_large + ONE_ERROR


# 2. The -o target: never opened in a way that blocks, parsed without limit, or mistaken for ours.


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_fifo_target_is_refused_even_with_force(spec: Path, tmp_path: Path, force: list[str]) -> None:
    out = tmp_path / "m.py"
    os.mkfifo(out)
    result = run("build", str(spec), "-o", str(out), *force, timeout=60)
    assert result.returncode == 2 and "is a named pipe (FIFO), not a regular file" in result.stderr
    assert stat.S_ISFIFO(os.lstat(out).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd", "m.py"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_socket_target_is_refused_even_with_force(spec: Path, tmp_path: Path, capsys: Any, force: list[str]) -> None:
    out = tmp_path / "m.py"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(out))
        assert cli.main(["build", str(spec), "-o", str(out), *force]) == 2
        assert "is a socket, not a regular file" in capsys.readouterr().err
        assert stat.S_ISSOCK(os.lstat(out).st_mode)


def test_a_deeply_nested_py_target_is_simply_not_ours(spec: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "m.py"
    out.write_text("[" * 100_000)
    assert cli.main(["build", str(spec), "-o", str(out)]) == 2
    assert "was not generated by normdsl" in capsys.readouterr().err
    assert out.read_text() == "[" * 100_000


def test_a_py_target_with_notebook_metadata_is_not_ours(spec: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "m.py"
    out.write_text(json.dumps({"metadata": {"normdsl": {"generated": True}}}))
    assert cli.main(["build", str(spec), "-o", str(out)]) == 2
    assert "was not generated by normdsl" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["[" * 100_000, '{"metadata": []}', '{"metadata": {"normdsl": 1}}', "\xff"])
def test_a_notebook_target_that_is_not_ours_is_refused(spec: Path, tmp_path: Path, capsys: Any, content: str) -> None:
    out = tmp_path / "m.ipynb"
    out.write_text(content, encoding="latin-1")
    assert writer.is_generated(out) is False
    with pytest.raises(writer.WriteRefused, match="was not generated by normdsl"):
        writer.guard(out, force=False)


def test_a_notebook_whose_metadata_says_normdsl_wrote_it_is_ours(tmp_path: Path) -> None:
    out = tmp_path / "m.ipynb"
    out.write_text(json.dumps({"metadata": {"normdsl": {"generated": True}}}))
    assert writer.is_generated(out)


def test_force_replaces_a_symlink_itself_and_not_what_it_points_to(spec: Path, tmp_path: Path) -> None:
    target, link = tmp_path / "elsewhere.py", tmp_path / "m.py"
    target.write_text("kept\n")
    link.symlink_to(target)
    assert cli.main(["build", str(spec), "-o", str(link), "--force"]) == 0
    assert not link.is_symlink() and link.read_text().startswith(writer.MARKER)
    assert target.read_text() == "kept\n"


# 3. SIGTERM and SIGHUP while writing: the old file stays, no temporary is left, exit 128 + signal.

SLOW_WRITER = """
import sys, time
import normdsl.writer as w

original = w.write_atomically

def slow(path, produce):
    def produce_then_wait(tmp):
        produce(tmp)
        print("writing", flush=True)
        time.sleep(60)
    original(path, produce_then_wait)

w.write_atomically = slow
from normdsl.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_build_leaves_the_old_file_and_no_temporary(spec: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "m.py"
    out.write_text(f"{writer.MARKER}, the old version\n")
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, "build", str(spec), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    assert any(p.name.startswith(".m.py.") for p in tmp_path.iterdir())  # the temporary exists right now
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert err.endswith("normdsl: interrupted\n")
    assert out.read_text() == f"{writer.MARKER}, the old version\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd", "m.py"]


def test_writing_restores_the_signal_handlers(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    writer.write_text(tmp_path / "m.py", "x = 1\n")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before


# 4. Long names and permission bits.


@pytest.mark.parametrize("stem", ["m" * 237, "é" * 118], ids=["ascii", "two-byte"])
def test_a_name_near_the_limit_is_written(spec: Path, tmp_path: Path, stem: str) -> None:
    out = tmp_path / f"{stem}.py"
    assert len(os.fsencode(out.name)) >= 239
    assert cli.main(["build", str(spec), "-o", str(out)]) == 0
    assert out.read_text().startswith(writer.MARKER)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.nd", out.name])


def test_a_replaced_file_keeps_its_permission_bits(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.py"
    assert cli.main(["build", str(spec), "-o", str(out)]) == 0
    out.chmod(0o751)
    assert cli.main(["build", str(spec), "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o751


def test_a_new_file_gets_the_umask_mode(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.py"
    umask = os.umask(0o027)
    try:
        assert cli.main(["build", str(spec), "-o", str(out)]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


# 5. Every error line names its subject.


def test_a_template_outside_its_folder_is_an_error_with_a_subject(spec: Path, tmp_path: Path, capsys: Any) -> None:
    from normdsl._paths import data_dir

    (tmp_path / "templates" / "sub").mkdir(parents=True)
    (tmp_path / "templates" / "model.py.j2").write_text((Path(data_dir("templates")) / "model.py.j2").read_text())
    out = tmp_path / "m.py"
    args = ["build", str(spec), "-o", str(out), "--template-dir", str(tmp_path / "templates" / "sub")]
    assert cli.main([*args, "--template", "../model"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and ": None" not in err and not err.startswith("normdsl: error: :")
    assert "model" in err


def test_an_error_that_names_no_file_is_shown_with_the_file_being_written(
    spec: Path, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    import normdsl.emit_source

    def broken(*_: object, **__: object) -> str:
        raise OSError()

    monkeypatch.setattr(normdsl.emit_source, "render", broken)
    out = tmp_path / "m.py"
    assert cli.main(["build", str(spec), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"normdsl: error: {out}: OSError\n"


def test_a_full_disk_names_the_file_it_could_not_write(
    spec: Path, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    out = tmp_path / "m.py"
    out.write_text(f"{writer.MARKER}, the old version\n")

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert cli.main(["build", str(spec), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"normdsl: error: {out}: No space left on device\n"
    assert out.read_text() == f"{writer.MARKER}, the old version\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nd", "m.py"]


# 6. Names with escape sequences are shown escaped, never sent to the terminal raw.

HOSTILE = "a\x1b[31mred\x07\u202e.nd"
ESCAPED = "a\\x1b[31mred\\x07\\u202e.nd"


def test_shown_escapes_only_what_is_unprintable() -> None:
    assert cli.shown(HOSTILE) == ESCAPED
    assert cli.shown("dossier/café modèle.nd") == "dossier/café modèle.nd"
    assert cli.shown("a\nb\tc") == "a\\nb\\tc"


def test_check_shows_a_hostile_name_escaped(tmp_path: Path, capsys: Any) -> None:
    spec = tmp_path / HOSTILE
    spec.write_text(SPEC)
    assert cli.main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.startswith(f"{tmp_path}/{ESCAPED}: ok, ")


def test_build_shows_a_hostile_output_name_escaped(spec: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / HOSTILE.replace(".nd", ".py")
    assert cli.main(["build", str(spec), "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path}/{ESCAPED.replace('.nd', '.py')}: ")
    out.write_text("mine\n")
    assert cli.main(["build", str(spec), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and ESCAPED.replace(".nd", ".py") in err


@pytest.mark.parametrize("name", [HOSTILE, f"missing/{HOSTILE}"])
def test_errors_about_a_hostile_name_show_it_escaped(tmp_path: Path, capsys: Any, name: str) -> None:
    path = tmp_path / name
    if "missing" not in name:
        path.mkdir()
    assert cli.main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and ESCAPED in err


# 7. One file's internal error does not stop the others.


@pytest.mark.parametrize("error", [ValueError("bad\nvalue"), RecursionError(), MemoryError(), KeyError("k")])
def test_an_internal_error_in_one_file_does_not_stop_the_others(
    tmp_path: Path, capsys: Any, monkeypatch: Any, error: BaseException
) -> None:
    paths = [tmp_path / f"{name}.nd" for name in "abc"]
    for path in paths:
        path.write_text(SPEC)
    original = cli.parse

    def parse(text: str, **kwargs: Any) -> Any:
        if kwargs.get("filename", "").endswith("b.nd"):
            raise error
        return original(text, **kwargs)

    monkeypatch.setattr(cli, "parse", parse)
    assert cli.main(["check", *map(str, paths)]) == 3
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(paths[0]), str(paths[2])]
    assert err.splitlines() == [f"normdsl: internal error: {paths[1]}: {error!r}", "1 error, 0 warnings"]


def test_an_input_dimension_beyond_pythons_digit_limit_is_a_usage_error(spec: Path, capsys: Any) -> None:
    huge = "9" * 5000
    with pytest.raises(SystemExit) as exit:
        cli.main(["check", str(spec), "--input", f"8,8,{huge}"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "argument --input" in err and huge in err and "Traceback" not in err

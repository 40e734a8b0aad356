"""The ``normdsl`` command: argument parsing, reading files, printing, exit codes. Nothing else."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from normdsl import summary
from normdsl.ast import IDENTIFIER
from normdsl.check import check
from normdsl.diagnostics import RenderError, SpecError, one_line, render_all, shown
from normdsl.layers import Shape
from normdsl.limits import DEFAULT_LIMITS
from normdsl.network import Network
from normdsl.parser import parse
from normdsl.plugins import PluginError
from normdsl.writer import O_NONBLOCK, Terminated, WriteRefused, kind

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
MAX_SPEC_BYTES = 10 * 1024 * 1024
STDIN = "-"  # a SPEC of - is standard input


class UsageError(Exception):
    """Exit code 2: the command line or the files it names cannot be used."""


class BadFile(Exception):
    """Exit code 1: the file exists but is not spec text."""


def spec_name(path: str) -> str:
    """What diagnostics call a spec: its path, or <stdin>."""
    return "<stdin>" if path == STDIN else path


def read_spec(path: str) -> str:
    """The text of a spec: a regular file (never a device, pipe or socket, which may never end or may block)
    or standard input for ``-``, in either case at most MAX_SPEC_BYTES."""
    data = _read_stdin() if path == STDIN else _read_regular_file(path)
    name = shown(spec_name(path))
    if len(data) > MAX_SPEC_BYTES:
        raise BadFile(f"{name}: more than {MAX_SPEC_BYTES:,} bytes is too large for a spec")
    if b"\0" in data:
        raise BadFile(f"{name}: is a binary file, not spec text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadFile(f"{name}: is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None


def _read_stdin() -> bytes:
    if sys.stdin is None:
        raise UsageError("<stdin>: standard input is closed")
    try:
        return sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"<stdin>: cannot read: {exc.strerror or exc}") from None


def _read_regular_file(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | O_NONBLOCK)  # a FIFO without a writer opens at once, to be refused
    except FileNotFoundError:
        raise UsageError(f"{shown(path)}: no such file") from None
    except OSError as exc:  # a socket cannot be opened at all: say what it is
        reason = f"cannot read: {exc.strerror}"
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(mode := os.stat(path).st_mode):
                reason = f"is {kind(mode)}, not a regular file"
        raise UsageError(f"{shown(path)}: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{shown(path)}: is {kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_SPEC_BYTES:
            raise BadFile(f"{shown(path)}: {info.st_size:,} bytes is too large for a spec (limit {MAX_SPEC_BYTES:,})")
        with open(fd, "rb", closefd=False) as f:
            return f.read(MAX_SPEC_BYTES + 1)  # the file may have grown since fstat
    except OSError as exc:
        raise UsageError(f"{shown(path)}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _shape(text: str) -> Shape:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 32,32,3; got {text!r}"
        ) from None
    if not shape or min(shape) < 1 or max(shape) > DEFAULT_LIMITS.max_dim:
        raise argparse.ArgumentTypeError(
            f"dimensions must be from 1 to {DEFAULT_LIMITS.max_dim:,}, got {shown(text)[:80]!r}"
        )
    return shape


def _assignment(text: str) -> tuple[str, str]:
    name, sep, layers = text.partition("=")
    if not sep or not IDENTIFIER.fullmatch(name.strip()):
        raise argparse.ArgumentTypeError(f"expected BLOCK=LAYERS, e.g. norm=gn(32); got {shown(text)[:80]!r}")
    return name.strip(), layers


def _network(args: argparse.Namespace, path: str) -> Network:
    name = spec_name(path)
    replace = dict(args.set or ())
    if args.norm is not None and "norm" in replace:
        raise UsageError("give the norm once: --norm LAYERS or --set norm=LAYERS")
    spec = parse(read_spec(path), filename=name)
    network = check(spec, input_shape=args.input, norm=args.norm, replace=replace)
    if network.warnings:
        print(render_all(network.warnings, network.source, name), file=sys.stderr)
    return network


def cmd_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.specs:
        try:
            network = _network(args, path)
        except SpecError as exc:
            print(exc.render(), file=sys.stderr)
            status = max(status, EXIT_SPEC)
        except BadFile as exc:
            print(f"normdsl: error: {exc}", file=sys.stderr)
            status = max(status, EXIT_SPEC)
        except (UsageError, PluginError) as exc:
            print(f"normdsl: error: {exc}", file=sys.stderr)
            status = max(status, EXIT_USAGE)
        except Exception as exc:  # our bug, on this file only: say so and check the others
            print(f"normdsl: internal error: {shown(spec_name(path))}: {shown(repr(exc))[:500]}", file=sys.stderr)
            status = max(status, EXIT_INTERNAL)
        else:
            print(f"{shown(spec_name(path))}: ok, {summary.one_line(network)}")
    return status


def cmd_kinds(args: argparse.Namespace) -> int:
    from normdsl import reference

    print(reference.as_json() if args.json else reference.as_text())
    return EXIT_OK


def cmd_parse(args: argparse.Namespace) -> int:
    print(parse(read_spec(args.spec), filename=spec_name(args.spec)).to_json())
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    network = _network(args, args.spec)
    if args.keras:
        from normdsl.emit_keras import build_model

        build_model(network).summary()
    else:
        print(summary.as_json(network) if args.json else summary.text(network))
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from normdsl.emit_source import render, strategy_warnings, template_suffix
    from normdsl.writer import guard, write_text

    if args.spec == STDIN and not args.output:
        raise UsageError("build -: a spec read from standard input needs -o OUT (or -o - for standard output)")
    network = _network(args, args.spec)
    suffix = template_suffix(args.template, args.template_dir)
    for warning in strategy_warnings(network, args.strategy):
        print(warning.render(network.source, spec_name(args.spec)), file=sys.stderr)
    out = args.output = args.output or str(Path(args.spec).with_suffix(suffix))  # for errors naming no file
    if out != "-":
        guard(Path(out), force=args.force)
    code = render(network, args.template, strategy=args.strategy, template_dir=args.template_dir)
    if out == "-":
        sys.stdout.write(code)
    else:
        write_text(Path(out), code)
        print(f"wrote {shown(out)}: {summary.one_line(network)}")
    if args.verify:
        if suffix != ".py":
            raise UsageError("--verify checks Python modules; the notebook template makes a notebook")
        return _verify(code, network)
    return EXIT_OK


def _verify(code: str, network: Network) -> int:
    from normdsl.emit_keras import differences, keras_module

    keras_module()
    namespace: dict[str, object] = {"__name__": "normdsl_verify"}
    try:
        exec(compile(code, "<generated>", "exec"), namespace)
        model = namespace["build_model"]()  # type: ignore[operator]
    except Exception as exc:  # Keras refused what the checker accepted: say so, with Keras's words
        print(
            f"normdsl: verify: Keras cannot build the generated code: {shown(one_line(str(exc)))[:500]}",
            file=sys.stderr,
        )
        return EXIT_SPEC
    found = differences(model, network)
    for line in found:
        print(f"normdsl: verify: {line}", file=sys.stderr)
    if found:
        return EXIT_SPEC
    print(
        f"verified: Keras builds {len(network.layers)} layers with the same shapes and {network.params:,} params",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_save(args: argparse.Namespace) -> int:
    from normdsl.emit_keras import build_model
    from normdsl.writer import guard, write_atomically

    network = _network(args, args.spec)
    out = Path(args.output)
    if out.suffix != ".keras":
        raise UsageError(f"{shown(out)}: Keras saves models to files ending in .keras")
    guard(out, force=args.force, ours=lambda _: False)  # a .keras file carries no marker: overwrite only with --force
    model = build_model(network)
    write_atomically(out, lambda tmp: model.save(tmp))
    print(f"saved {shown(out)}: {summary.one_line(network)}")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    from normdsl._version import __version__

    top = argparse.ArgumentParser(
        prog="normdsl", description="Check, summarize and generate Keras models from normdsl specs."
    )
    top.add_argument("--version", action="version", version=f"normdsl {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: object, help: str, *, many: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if many:
            p.add_argument("specs", nargs="+", metavar="SPEC")
        else:
            p.add_argument("spec", metavar="SPEC")
        p.add_argument("--input", type=_shape, metavar="H,W,C", help="override the spec's input shape, e.g. 32,32,3")
        p.add_argument("--norm", metavar="LAYER", help="replace the spec's norm placeholder everywhere, e.g. 'gn(32)'")
        p.add_argument(
            "--set",
            type=_assignment,
            action="append",
            metavar="BLOCK=LAYERS",
            help="replace a block without parameters everywhere, e.g. 'stem=conv32(k=7, s=2) relu' (repeatable)",
        )
        p.set_defaults(run=run)
        return p

    command("check", cmd_check, "validate spec files", many=True)
    kinds = sub.add_parser("kinds", help="list the layer kinds, their Keras classes and arguments")
    kinds.add_argument("--json", action="store_true", help="as JSON")
    kinds.set_defaults(run=cmd_kinds)
    p = command("parse", cmd_parse, "print a spec's syntax tree")
    p.add_argument("--json", action="store_true", help="as JSON (the only format; accepted for clarity)")
    p = command("summary", cmd_summary, "print static shapes, parameter counts, MACs and activation memory")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keras", action="store_true", help="build the model with Keras and print Keras's own summary")
    p = command("build", cmd_build, "write black-formatted Keras code for a spec")
    p.add_argument("-o", "--output", metavar="OUT", help="the file to write (default: SPEC with .py; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite OUT even if normdsl did not generate it")
    p.add_argument(
        "--template",
        default="model",
        metavar="NAME",
        help="model (default), train or notebook; or one of --template-dir",
    )
    p.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multiworker"],
        default="default",
        help="the tf.distribute strategy a train script defaults to",
    )
    p.add_argument("--template-dir", type=Path, metavar="DIR", help="a folder of your own NAME.py.j2 templates")
    p.add_argument(
        "--verify", action="store_true", help="then build the written code with Keras and compare its figures"
    )
    p = command("save", cmd_save, "build the model with Keras and save it as a .keras file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.keras")
    p.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    from normdsl.emit_keras import TensorFlowMissing

    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except SpecError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_SPEC
    except BadFile as exc:
        print(f"normdsl: error: {exc}", file=sys.stderr)
        return EXIT_SPEC
    except (UsageError, WriteRefused) as exc:
        print(f"normdsl: error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (TensorFlowMissing, ValueError) as exc:
        print(f"normdsl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (normdsl kinds | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    except OSError as exc:
        print(f"normdsl: error: {shown(_os_error(exc, args))}", file=sys.stderr)
        return EXIT_USAGE
    except RenderError as exc:  # a template made code that black or the safety check rejects: our bug
        print(f"normdsl: internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP while writing (Terminated)
        print("normdsl: interrupted", file=sys.stderr)
        return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def _os_error(exc: OSError, args: argparse.Namespace) -> str:
    """``{file}: {reason}``; when the error names no file, the file the command writes."""
    subject = exc.filename
    if subject is None:  # the file the command writes: OUT, or standard output
        output = getattr(args, "output", None)
        subject = output if output and output != "-" else "<stdout>"
    reason = exc.strerror or (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return f"{os.fsdecode(subject) if isinstance(subject, bytes) else subject}: {reason}"

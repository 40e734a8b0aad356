# PYTHON_ARGCOMPLETE_OK  (argcomplete's global completion looks for this line)
"""The ``normdsl`` command: argument parsing, reading files, printing, exit codes. Nothing else."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TextIO, TypeAlias, cast

from normdsl import scaling, summary
from normdsl.ast import IDENTIFIER
from normdsl.check import ScaleError, check
from normdsl.diagnostics import Diagnostic, RenderError, SpecError, one_line, painted, render_all, shown
from normdsl.layers import KINDS, Shape
from normdsl.limits import DEFAULT_LIMITS
from normdsl.network import Network
from normdsl.parser import parse
from normdsl.plugins import PluginError
from normdsl.writer import O_NONBLOCK, Terminated, WriteRefused, kind

if TYPE_CHECKING:
    from pathlib import Path  # (imported by the commands that write files: pathlib costs a check's start 4 ms)

    from normdsl.diagrams import Format as DiagramFormat

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_PIPE = 128 + signal.SIGPIPE  # the reader went away: as a process killed by SIGPIPE
MAX_SPEC_BYTES = 10 * 1024 * 1024
STDIN = "-"  # a SPEC of - is standard input


class UsageError(Exception):
    """Exit code 2: the command line or the files it names cannot be used."""


class BadFile(Exception):
    """Exit code 1: the file exists but is not spec text."""


def spec_name(path: str) -> str:
    """What diagnostics call a spec: its path, or <stdin>."""
    return "<stdin>" if path == STDIN else path


@dataclass(frozen=True, slots=True)
class Source:
    """A spec to read: a file, standard input (``-``), or the text of ``-e``."""

    name: str  # as diagnostics show it: the path, <stdin>, <expr>
    path: str | None = None  # None for -e text
    text: str = ""

    def read(self) -> str:
        return self.text if self.path is None else read_spec(self.path)


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


def sources(args: argparse.Namespace) -> list[Source]:
    """The specs a command is given: files (``-`` once at most), then each ``-e TEXT``."""
    if args.specs.count(STDIN) > 1:
        raise UsageError("standard input (-) can be read only once")
    found = [Source(spec_name(path), path) for path in args.specs]
    for i, text in enumerate(args.expr or ()):
        if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
            raise UsageError(f"-e: more than {MAX_SPEC_BYTES:,} bytes is too large for a spec")
        found.append(Source("<expr>" if i == 0 else f"<expr{i + 1}>", text=text))
    if not found:
        raise UsageError(f"{args.command}: give a SPEC file, - for standard input, or -e TEXT")
    if len(found) > 1 and not args.many:
        raise UsageError(f"{args.command} takes one spec, got {len(found)}")
    return found


@dataclass
class Report:
    """Where diagnostics and error lines go (standard error, coloured on a terminal), and how many there were."""

    color: bool = False
    verbose: bool = False
    errors: int = 0
    warnings: int = 0

    def diagnostics(self, found: Sequence[Diagnostic], source: str, filename: str) -> None:
        print(render_all(found, source, filename, color=self.color), file=sys.stderr)
        errors = sum(d.severity == "error" for d in found)
        self.errors += errors
        self.warnings += len(found) - errors

    def error(self, text: str, *, label: str = "error:") -> None:
        print(f"normdsl: {painted(label, 'error', color=self.color)} {text}", file=sys.stderr)
        self.errors += 1

    def internal(self, subject: str, exc: BaseException) -> None:
        if self.verbose:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        self.error(f"{subject}{shown(one_line(repr(exc)))[:500]}", label="internal error:")

    def counts(self) -> str:
        """``3 errors, 1 warning``."""
        errors = f"{self.errors} error{'' if self.errors == 1 else 's'}"
        warnings = f"{self.warnings} warning{'' if self.warnings == 1 else 's'}"
        errors = painted(errors, "error", color=self.color) if self.errors else errors
        warnings = painted(warnings, "warning", color=self.color) if self.warnings else warnings
        return f"{errors}, {warnings}"


def use_color(stream: TextIO) -> bool:
    """Colour as CPython decides it for its own tracebacks: NO_COLOR (set and not empty) turns it off,
    FORCE_COLOR on, TERM=dumb off; otherwise on when ``stream`` is a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or replaced by something without a terminal
        return False


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


def _model_options(p: argparse.ArgumentParser, *, several_norms: bool = False, several_scales: bool = False) -> None:
    """--input, --norm, --set and the scaling options: what changes the model, for the commands that check it
    (compare and the compare templates take several norms, compare several scales: their variants)."""
    p.add_argument("--input", type=_shape, metavar="H,W,C", help="override the spec's input shape")
    if several_norms:
        help = "replace the spec's norm placeholder; several: the variants, e.g. bn ln in 'gn(16)'"
        p.add_argument("--norm", nargs="+", metavar="LAYERS", help=help)
    else:
        p.add_argument("--norm", metavar="LAYER", help="replace the spec's norm placeholder, e.g. 'gn(32)'")
    p.add_argument(
        "--set",
        type=_assignment,
        action="append",
        metavar="BLOCK=LAYERS",
        help="replace a block without parameters everywhere, e.g. 'stem=conv32(k=7, s=2) relu' (repeatable)",
    )
    _scaling_options(p, many=several_scales)


def _scaling_options(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """--scale NAME, --width X, --depth X: which of the spec's scales, or multipliers of its own."""
    if many:
        p.add_argument("--scale", nargs="+", metavar="NAME", help="the spec's named scales to compare, e.g. b0 b1 b2")
    else:
        p.add_argument("--scale", metavar="NAME", help="one of the spec's named scales: scaling b1(...)")
    p.add_argument("--width", type=_multiplier, metavar="X", help="the width multiplier w() uses, e.g. 0.75")
    p.add_argument("--depth", type=_multiplier, metavar="X", help="the depth multiplier d() uses, e.g. 1.2")
    p.add_argument(
        "--round-for-groups",
        action="store_true",
        help="move a scaled width to the nearest one every group norm and grouped conv consuming it accepts",
    )


def _multiplier(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"expected a number above 0 (at most 100), got {shown(text)[:80]!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {shown(text)[:80]!r}")
    return int(text)


def _assignment(text: str) -> tuple[str, str]:
    name, sep, layers = text.partition("=")
    name = name.strip()
    if not sep or not IDENTIFIER.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected BLOCK=LAYERS, e.g. norm=gn(32); got {shown(text)[:80]!r}")
    if name in KINDS:
        raise argparse.ArgumentTypeError(f"'{name}' is a layer of the language, not a block; --set replaces blocks")
    return name, layers


def _network(args: argparse.Namespace, source: Source, report: Report) -> Network:
    replace = dict(args.set or ())
    if args.norm is not None and "norm" in replace:
        raise UsageError("give the norm once: --norm LAYERS or --set norm=LAYERS")
    spec = parse(source.read(), filename=source.name)
    try:
        network = check(
            spec,
            input_shape=args.input,
            norm=args.norm,
            replace=replace,
            scale=args.scale,
            width=args.width,
            depth=args.depth,
            round_for_groups=args.round_for_groups,
        )
    except ScaleError as exc:
        raise UsageError(f"{shown(source.name)}: {exc}") from None
    if network.warnings:
        report.diagnostics(network.warnings, network.source, source.name)
    if getattr(args, "target", "keras") == "torch":  # what PyTorch cannot compute as Keras does: errors
        from normdsl.target_torch import check_torch

        check_torch(network)
    return network


def each(args: argparse.Namespace, report: Report, run: Callable[[Source], int]) -> int:
    """``run`` on every spec given; a spec that fails is reported and the others are still done. The worst
    exit code: 1 a spec's errors, 2 a usage error, 3 our own bug."""
    status = EXIT_OK
    for source in sources(args):
        try:
            status = max(status, run(source))
        except SpecError as exc:
            report.diagnostics(exc.diagnostics, exc.source, exc.filename)
            status = max(status, EXIT_SPEC)
        except BadFile as exc:
            report.error(str(exc))
            status = max(status, EXIT_SPEC)
        except (UsageError, WriteRefused, PluginError) as exc:
            report.error(shown(str(exc)))
            status = max(status, EXIT_USAGE)
        except BrokenPipeError:
            raise
        except OSError as exc:
            report.error(shown(_os_error(exc)))
            status = max(status, EXIT_USAGE)
        except RenderError as exc:  # a template made code that black or the safety check rejects: our bug
            report.error(str(exc), label="internal error:")
            status = max(status, EXIT_INTERNAL)
        except Exception as exc:  # our bug, on this spec only: say so and go on with the others
            report.internal(f"{shown(source.name)}: ", exc)
            status = max(status, EXIT_INTERNAL)
    return status


def cmd_check(args: argparse.Namespace, report: Report) -> int:
    def run(source: Source) -> int:
        network = _network(args, source, report)
        print(f"{shown(source.name)}: ok, {summary.one_line(network)}")
        if args.target == "torch":
            from normdsl.target_torch import figures_line

            print(f"  {figures_line(network)}")
        return EXIT_OK

    status = each(args, report, run)
    sys.stdout.flush()  # a closed pipe ends the command here, before the count
    print(report.counts(), file=sys.stderr)
    return status


def cmd_kinds(args: argparse.Namespace, report: Report) -> int:
    from normdsl import reference

    print(reference.as_json() if args.json else reference.as_text())
    return EXIT_OK


def cmd_parse(args: argparse.Namespace, report: Report) -> int:
    def run(source: Source) -> int:
        print(parse(source.read(), filename=source.name).to_json())
        return EXIT_OK

    return each(args, report, run)


def cmd_summary(args: argparse.Namespace, report: Report) -> int:
    if args.json and len(sources(args)) > 1:
        raise UsageError("summary --json takes one spec (it prints one JSON document)")
    if args.keras:
        load_keras(report)
    first = True

    def run(source: Source) -> int:
        nonlocal first
        network = _network(args, source, report)
        if not first:
            print()
        first = False
        if args.keras:
            from normdsl.emit_keras import build_model

            build_model(network).summary()
        else:
            if args.json:
                print(summary.as_json(network))
            else:
                print(summary.text(network, depth=args.levels, color=use_color(sys.stdout)))
                if network.scaling.moved:
                    print(scaling.report(network.scaling))
                if args.target == "torch":
                    from normdsl.target_torch import figures_line

                    print(figures_line(network))
        return EXIT_OK

    if args.levels is not None and (args.json or args.keras):
        raise UsageError("--levels shapes the table: it cannot go with --json or --keras")
    return each(args, report, run)


def cmd_compare(args: argparse.Namespace, report: Report) -> int:
    from normdsl import compare

    replace = dict(args.set or ())
    if args.norm and "norm" in replace:
        raise UsageError("give the norms once: --norm LAYERS... or --set norm=LAYERS")
    specs = [(source.name, source.read()) for source in sources(args)]
    try:
        found = compare.variants(
            specs, args.norm or (), replace=replace, input_shape=args.input, scales=args.scale or (),
            width=args.width, depth=args.depth, round_for_groups=args.round_for_groups,
        )  # fmt: skip
    except ScaleError as exc:
        raise UsageError(str(exc)) from None
    fmt = "json" if args.json else "csv" if args.csv else "markdown" if args.markdown else "text"
    print(compare.sites(found) if args.layers else compare.table(found, fmt))
    return EXIT_OK if all(v.network is not None for v in found) else EXIT_SPEC


def cmd_scale_report(args: argparse.Namespace, report: Report) -> int:
    def run(source: Source) -> int:
        print(scaling.report(_network(args, source, report).scaling))
        return EXIT_OK

    return each(args, report, run)


def cmd_explain(args: argparse.Namespace, report: Report) -> int:
    from normdsl import compare

    def run(source: Source) -> int:
        print(compare.explain(_network(args, source, report)))
        return EXIT_OK

    return each(args, report, run)


def cmd_build(args: argparse.Namespace, report: Report) -> int:
    import dataclasses
    from pathlib import Path

    from normdsl import compare
    from normdsl.compare import Variant
    from normdsl.emit_source import (
        TemplateProblem,
        compares,
        render,
        render_variants,
        strategy_warnings,
        template_suffix,
    )
    from normdsl.writer import guard, write_text

    specs = sources(args)
    if any(sep in args.template for sep in {"/", os.sep, os.altsep or "/"}):
        raise UsageError(f"--template {args.template!r}: a template's name, not a path (a folder is --template-dir)")
    try:
        suffix = template_suffix(args.template, args.template_dir)
    except ValueError as exc:  # an unknown template
        raise UsageError(str(exc)) from None
    _check_build_options(args, specs, suffix)
    norms: list[str] = args.norm or []
    if not compares(args.template):
        args.norm = norms[0] if norms else None  # one, as for check and summary
    if args.verify:
        load_keras(report)

    def variants(source: Source) -> list[Variant]:
        """The variants of a comparison template: the spec with each --norm value (as written without
        --norm), checked. One that is no valid model is a warning here (and a failed row of the generated
        comparison); when none is valid, the first one's errors are the spec's."""
        replace = dict(args.set or ())
        if norms and "norm" in replace:
            raise UsageError("give the norms once: --norm LAYERS... or --set norm=LAYERS")
        try:
            found = compare.variants(
                [(source.name, source.read())], norms, replace=replace, input_shape=args.input,
                scales=(args.scale,) if args.scale else (), width=args.width, depth=args.depth,
                round_for_groups=args.round_for_groups,
            )  # fmt: skip
        except ScaleError as exc:
            raise UsageError(f"{shown(source.name)}: {exc}") from None
        if all(v.network is None for v in found):
            assert found[0].error is not None
            raise found[0].error
        for variant in found:
            if variant.network is not None:
                warnings = [*variant.network.warnings, *strategy_warnings(variant.network, args.strategy)]
                if warnings:
                    report.diagnostics(warnings, variant.network.source, source.name)
            elif variant.error is not None:
                left_out = [
                    dataclasses.replace(
                        d, severity="warning", message=f"variant {variant.name} is left out: {d.message}"
                    )
                    for d in variant.error.errors
                ]
                report.diagnostics(left_out, variant.error.source, variant.error.filename)
        return found

    def run(source: Source) -> int:
        out = args.output or str(Path(str(source.path)).with_suffix(suffix))
        try:
            if compares(args.template):
                found = variants(source)
                network = next(v.network for v in found if v.network is not None)
                names = ", ".join(v.name or network.name for v in found)
                line = f"{sum(v.network is not None for v in found)} of {len(found)} variants to train ({names})"
            else:
                found = []
                network = _network(args, source, report)
                for warning in strategy_warnings(network, args.strategy):
                    report.diagnostics([warning], network.source, source.name)
                line = summary.one_line(network)
            if out != "-":
                guard(Path(out), force=args.force)
            try:
                if found:
                    code = render_variants(found, args.template, strategy=args.strategy, template_dir=args.template_dir)
                elif args.target == "torch":
                    from normdsl.target_torch import render as render_torch

                    code = render_torch(network)
                else:
                    code = render(network, args.template, strategy=args.strategy, template_dir=args.template_dir)
            except TemplateProblem as exc:  # the user's template cannot be rendered
                raise UsageError(str(exc)) from None
            except ValueError as exc:  # the variants meet the loss differently
                if isinstance(exc, SpecError) or not found:  # (a user's template's mistake: a diagnostic)
                    raise
                raise UsageError(f"{shown(source.name)}: {exc}") from None
            if out == "-":
                sys.stdout.write(code)
            else:
                write_text(Path(out), code)
                print(f"wrote {shown(out)}: {line}")
        except OSError as exc:
            if exc.filename is None:  # an error naming no file is about the one being written
                exc.filename = "<stdout>" if out == "-" else out
            raise
        return _verify(code, network) if args.verify else EXIT_OK

    return each(args, report, run)


def _check_build_options(args: argparse.Namespace, specs: list[Source], suffix: str) -> None:
    """Options that could not apply, refused before anything is read or written."""
    from pathlib import Path

    from normdsl.emit_source import compares

    what = "a notebook" if suffix == ".ipynb" else "a Python module"
    if args.output and len(specs) > 1:
        raise UsageError("-o names one file; build several specs without it (each writes SPEC.py beside SPEC)")
    unnamed = next((spec for spec in specs if spec.path in (None, STDIN)), None)
    if not args.output and unnamed is not None:
        raise UsageError(f"build {unnamed.name}: a spec not read from a file needs -o OUT (or -o - for stdout)")
    if args.output and args.output != "-" and Path(args.output).suffix != suffix:
        raise UsageError(f"{shown(args.output)}: the {args.template} template writes {what}; name it ...{suffix}")
    if args.strategy != "default" and args.template_dir is None and args.template not in ("train", "compare"):
        raise UsageError(
            f"--strategy sets the default of the train and compare templates' scripts; {args.template} has none"
        )
    if args.norm and len(args.norm) > 1 and not compares(args.template):
        raise UsageError(
            f"--norm takes one value for the {args.template} template; several are variants for --template compare"
            " or compare-notebook"
        )
    if args.target != "keras" and (args.template != "model" or args.template_dir or args.verify):
        raise UsageError(f"--target {args.target} writes a model module: no --template, --template-dir or --verify")
    if args.verify and (suffix != ".py" or compares(args.template)):
        raise UsageError(f"--verify builds a model module with Keras; the {args.template} template writes {what}")
    if suffix == ".ipynb" and importlib.util.find_spec("nbformat") is None:
        raise UsageError('notebook templates need nbformat: pip install "normdsl[notebook]"')


def _verify(code: str, network: Network) -> int:
    from normdsl.emit_keras import differences, keras_module

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
    backend = keras_module().backend.backend()
    print(
        f"verified: Keras ({backend}) builds {len(network.layers)} layers with the same shapes"
        f" and {network.params:,} params",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_save(args: argparse.Namespace, report: Report) -> int:
    from pathlib import Path

    from normdsl.writer import guard, mark_archive, write_atomically

    out = Path(args.output)
    if out.suffix != ".keras":
        raise UsageError(f"{shown(out)}: Keras saves models to files ending in .keras")

    def run(source: Source) -> int:
        from normdsl.emit_keras import build_model

        guard(out, force=args.force)  # ours: a .keras archive whose comment says normdsl wrote it
        network = _network(args, source, report)
        load_keras(report)
        model = build_model(network)

        def produce(tmp: Path) -> None:
            model.save(tmp)
            mark_archive(tmp)

        write_atomically(out, produce)
        print(f"saved {shown(out)}: {summary.one_line(network)}")
        return EXIT_OK

    return each(args, report, run)


def cmd_import(args: argparse.Namespace, report: Report) -> int:
    """normdsl import SOURCE: a Keras model as a spec (issue 19)."""
    from pathlib import Path

    from normdsl.importer import ImportProblem, import_source
    from normdsl.writer import guard, write_text

    out = None if args.output in (None, "-") else Path(args.output)
    if out is not None:
        guard(out, force=args.force, ours=_imported_spec)
    load_keras(report)
    try:
        with contextlib.nullcontext() if report.verbose else _standard_error_held():
            text = import_source(args.source, keep_names=args.keep_names)
    except ImportProblem as problem:
        for line in problem.problems[:100]:
            report.error(shown(line))
        if len(problem.problems) > 100:
            report.error(f"... and {len(problem.problems) - 100} more")
        return EXIT_SPEC
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        lines = sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        print(f"wrote {shown(out)}: {lines} lines", file=sys.stderr)
    return EXIT_OK


def _imported_spec(path: Path) -> bool:
    """A spec normdsl import wrote (its first line says so): one it may replace."""
    try:
        with open(path, encoding="utf-8") as f:
            return "by normdsl import." in f.readline(400)
    except (OSError, UnicodeDecodeError):
        return False


def cmd_port_weights(args: argparse.Namespace, report: Report) -> int:
    """Keras weights (.weights.h5) → a PyTorch state_dict (.pt), or back, through the two models the spec builds."""
    from pathlib import Path

    from normdsl.writer import guard, write_atomically

    weights, out = Path(args.weights), Path(args.output)
    to_torch = weights.name.endswith(".weights.h5")
    if to_torch and out.suffix not in (".pt", ".pth"):
        raise UsageError(f"{shown(out)}: Keras weights become a PyTorch state_dict: name it .pt")
    if not to_torch and (weights.suffix not in (".pt", ".pth") or not out.name.endswith(".weights.h5")):
        raise UsageError(
            "port-weights reads Keras's .weights.h5 (then -o OUT.pt) or PyTorch's .pt (then -o OUT.weights.h5)"
        )
    args.specs, args.expr, args.many = [args.spec], None, False

    def run(source: Source) -> int:
        from normdsl.emit_keras import build_model
        from normdsl.emit_torch import TorchMissing, build_module, copy_weights, torch_module
        from normdsl.target_torch import check_torch

        network = check_torch(_network(args, source, report))
        guard(out, force=args.force)
        load_keras(report)
        try:
            torch = torch_module()
        except TorchMissing as exc:
            raise UsageError(str(exc)) from None
        model, module = build_model(network), build_module(network)
        try:
            if to_torch:
                model.load_weights(weights)
                copy_weights(model, module)
                write_atomically(out, lambda tmp: torch.save(module.state_dict(), tmp))
            else:
                module.load_state_dict(torch.load(weights, weights_only=True))
                copy_weights(module, model)

                def produce(tmp: Path) -> None:  # (Keras wants the name to end in .weights.h5)
                    staged = tmp.with_name(tmp.name + ".weights.h5")
                    try:
                        model.save_weights(staged)
                        os.replace(staged, tmp)
                    finally:
                        staged.unlink(missing_ok=True)

                write_atomically(out, produce)
        except (ValueError, RuntimeError, KeyError) as exc:  # weights of another model: the frameworks' words
            raise UsageError(f"{shown(str(weights))}: {shown(one_line(str(exc)))[:600]}") from None
        print(f"wrote {shown(out)}: the weights of {shown(str(weights))} for {summary.one_line(network)}")
        return EXIT_OK

    return each(args, report, run)


def cmd_fmt(args: argparse.Namespace, report: Report) -> int:
    import difflib
    from pathlib import Path

    from normdsl.fmt import format_spec
    from normdsl.writer import write_text

    args.specs = _nd_files(args.specs)
    counts = {"changed": 0, "unchanged": 0}
    rewrite = not (args.check or args.diff)  # else change nothing

    def run(source: Source) -> int:
        text = source.read()
        formatted = format_spec(text, width=args.line_length, filename=source.name)
        changed = formatted != text
        if args.diff:
            lines = (text.splitlines(keepends=True), formatted.splitlines(keepends=True))
            for line in difflib.unified_diff(*lines, source.name, source.name):
                sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        if changed and args.check:
            print(f"would reformat {shown(source.name)}", file=sys.stderr)
        if rewrite and source.path in (None, STDIN):
            sys.stdout.write(formatted)
        elif rewrite and changed:
            if not str(source.path).endswith(".nd"):
                raise UsageError(f"{shown(source.name)}: fmt rewrites only .nd files (see the change with --diff)")
            write_text(Path(os.path.realpath(str(source.path))), formatted)  # (a link stays a link)
            print(f"reformatted {shown(source.name)}", file=sys.stderr)
        counts["changed" if changed else "unchanged"] += 1
        return EXIT_OK

    status = each(args, report, run)
    sys.stdout.flush()
    would = "would be " if args.check else ""
    changed, unchanged = counts["changed"], counts["unchanged"]
    if args.check or any(path != STDIN for path in args.specs):  # (a filter of standard input says nothing)
        print(
            f"{changed} spec{'s' * (changed != 1)} {would}reformatted, {unchanged} {would}left unchanged",
            file=sys.stderr,
        )
    return max(status, EXIT_SPEC if args.check and changed else EXIT_OK)


def cmd_lsp(args: argparse.Namespace, report: Report) -> int:
    """The language server over standard input and output (pygls: the ``[lsp]`` extra)."""
    try:
        from normdsl import lsp
    except ImportError as exc:
        raise UsageError(
            f"normdsl lsp needs pygls and lsprotocol: pip install 'normdsl[lsp]' ({exc.name} is missing)"
        ) from None
    options = {"inlayHints": not args.no_inlay_hints, "lineLength": args.line_length}
    return lsp.main(options)


def _nd_files(paths: list[str]) -> list[str]:
    """The paths, each folder replaced by the .nd files beneath it (not in hidden folders), sorted."""
    found: list[str] = []
    for path in paths:
        if path == STDIN or not os.path.isdir(path):
            found.append(path)
            continue
        beneath = []
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            beneath += [os.path.join(folder, name) for name in files if name.endswith(".nd")]
        if not beneath:
            raise UsageError(f"{shown(path)}: no .nd files in this folder")
        found += sorted(beneath)
    return found


# ---- diagram and report (issue 17) --------------------------------------------------------------


def cmd_diagram(args: argparse.Namespace, report: Report) -> int:
    from pathlib import Path

    from normdsl import diagrams
    from normdsl.writer import guard, write_text

    fmt = _picture_format(args.output, args.format)

    def run(source: Source) -> int:
        network = _network(args, source, report)
        if args.output != "-":
            guard(Path(args.output), force=args.force, ours=diagrams.is_ours)
        try:
            text = diagrams.diagram(network, fmt, depth=args.levels)
        except diagrams.DiagramTooLarge as exc:
            raise UsageError(f"{shown(source.name)}: {exc}") from None
        if args.output == "-":
            sys.stdout.write(text)
        else:
            write_text(Path(args.output), text)
            print(f"wrote {shown(args.output)}: {fmt}, {summary.one_line(network)}")
        return EXIT_OK

    return each(args, report, run)


def _picture_format(output: str, given: str | None) -> DiagramFormat:
    """The format ``-o``'s suffix names (or ``--format``, which must agree)."""
    from pathlib import Path

    from normdsl.diagrams import SUFFIXES

    if output == "-":
        return cast("DiagramFormat", given or "svg")
    named = SUFFIXES.get(Path(output).suffix.lower())
    if named is None:
        raise UsageError(f"{shown(output)}: name the diagram .svg, .html, .mmd (Mermaid) or .dot (Graphviz)")
    if given is not None and given != named:
        raise UsageError(f"{shown(output)} is {named}, not {given}: drop --format or rename the file")
    return cast("DiagramFormat", named)


def cmd_report(args: argparse.Namespace, report: Report) -> int:
    from pathlib import Path

    from normdsl import diagrams
    from normdsl.report import report as html_report
    from normdsl.writer import guard, write_text

    if not args.output.endswith((".html", ".htm")) and args.output != "-":
        raise UsageError(f"{shown(args.output)}: a report is one HTML file; name it ...html")
    replace = dict(args.set or ())
    if args.norm and "norm" in replace:
        raise UsageError("give the norms once: --norm LAYERS... or --set norm=LAYERS")
    specs = [(source.name, source.read()) for source in sources(args)]
    if args.output != "-":
        guard(Path(args.output), force=args.force, ours=diagrams.is_ours)
    try:
        text, found = html_report(
            specs, args.norm or (), replace=replace, input_shape=args.input, scale=args.scale, width=args.width,
            depth=args.depth, round_for_groups=args.round_for_groups, levels=args.levels,
        )  # fmt: skip
    except ScaleError as exc:
        raise UsageError(str(exc)) from None
    for variant in found:
        if variant.error is not None:
            report.diagnostics(variant.error.diagnostics, variant.error.source, variant.error.filename)
        elif variant.network is not None and variant.network.warnings:
            report.diagnostics(variant.network.warnings, variant.network.source, variant.filename)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_text(Path(args.output), text)
        valid = sum(v.network is not None for v in found)
        print(f"wrote {shown(args.output)}: {valid} of {len(found)} variants valid")
    return EXIT_OK if all(v.network is not None for v in found) else EXIT_SPEC


def load_keras(report: Report) -> None:
    """Import Keras and its backend now (a clear UsageError if either is missing), its start-up lines held back (unless
    --verbose): TF_CPP_MIN_LOG_LEVEL=2 unless set, and, for what C++ libraries write to file descriptor 2
    before absl's logging is set up (which no setting reaches), that descriptor set aside during the import
    and what was written there shown only if the import fails."""
    from normdsl.emit_keras import BackendMissing, keras_module

    if not report.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with contextlib.nullcontext() if report.verbose else _standard_error_held():
            keras_module()
    except BackendMissing as exc:
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def _standard_error_held() -> Iterator[None]:
    """File descriptor 2 redirected to a temporary file, whose text is written out only on an exception."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to protect
        yield
        return
    try:
        import tempfile

        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            except BaseException:
                sys.stderr.flush()
                os.dup2(saved, 2)
                held.seek(0)
                sys.stderr.write(held.read(64 * 1024).decode("utf-8", "replace"))
                raise
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. With ``only`` (the command being run), only that command's arguments are
    built: building every command's takes longer than checking ResNet-50 (its usage and errors are the same)."""
    from normdsl._version import __version__

    top = argparse.ArgumentParser(
        prog="normdsl", description="Check, summarize and generate Keras models from normdsl specs."
    )
    top.add_argument("--version", action="version", version=f"normdsl {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", prog="normdsl")  # (prog: no formatter)

    def command(name: str, run: object, help: str, *, many: bool = True, model: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        specs = p.add_argument("specs", nargs="*", metavar="SPEC", help="a spec file, or - for standard input")
        _completes(specs, _spec_files)
        p.add_argument("-e", "--expr", action="append", metavar="TEXT", help="a spec given as text (repeatable)")
        if model:
            _model_options(p)
        p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and TensorFlow's log lines")
        p.set_defaults(run=run, many=many)
        return p

    for name, add in COMMANDS.items():
        if only in (None, name):
            add(command, sub)
    return top


Command = Callable[..., argparse.ArgumentParser]  # _parser's command(name, run, help, *, many=, model=)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # (for commands not on specs)
TARGETS = ("keras", "torch")  # what --target knows (normdsl/target_torch.py is the second)


def _target_option(p: argparse.ArgumentParser) -> None:
    """--target, of check, summary and build (issue 22)."""
    p.add_argument(
        "--target",
        choices=TARGETS,
        default="keras",
        help="keras (default) or torch: write a PyTorch module, check what PyTorch can compute, its figures",
    )


def _add_check(command: Command, sub: Subparsers) -> None:
    _target_option(command("check", cmd_check, "validate spec files"))


def _add_kinds(command: Command, sub: Subparsers) -> None:
    kinds = sub.add_parser("kinds", help="list the layer kinds, their Keras classes and arguments")
    kinds.add_argument("--json", action="store_true", help="as JSON")
    kinds.set_defaults(run=cmd_kinds)


def _add_parse(command: Command, sub: Subparsers) -> None:
    p = command("parse", cmd_parse, "print a spec's syntax tree", many=False, model=False)
    p.add_argument("--json", action="store_true", help="as JSON (the only format; accepted for clarity)")


def _add_summary(command: Command, sub: Subparsers) -> None:
    p = command("summary", cmd_summary, "print static shapes, parameter counts, MACs and activation memory")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the figures as JSON")
    output.add_argument("--keras", action="store_true", help="build the model with Keras and print its own summary")
    p.add_argument(
        "--levels",
        type=_positive,
        metavar="N",
        help="show blocks nested N deep or more as one row each (torchinfo's depth)",
    )
    _target_option(p)


def _add_compare(command: Command, sub: Subparsers) -> None:
    p = command("compare", cmd_compare, "compare normalization variants of specs side by side", model=False)
    _model_options(p, several_norms=True, several_scales=True)
    p.add_argument("--layers", action="store_true", help="one row per normalization site that differs between variants")
    output = p.add_mutually_exclusive_group()
    for fmt in ("json", "csv", "markdown"):
        output.add_argument(
            f"--{fmt}", action="store_true", help=f"the table as {fmt.upper() if fmt != 'markdown' else 'Markdown'}"
        )


def _add_explain(command: Command, sub: Subparsers) -> None:
    command("explain", cmd_explain, "say what each normalization layer computes, for its shape")


def _add_scale_report(command: Command, sub: Subparsers) -> None:
    command("scale-report", cmd_scale_report, "show the scale in use and every width moved for group counts")


def _add_build(command: Command, sub: Subparsers) -> None:
    from pathlib import Path

    p = command("build", cmd_build, "write black-formatted Keras code for a spec", model=False)
    _model_options(p, several_norms=True)  # several: the variants of the compare templates
    p.add_argument("-o", "--output", metavar="OUT", help="the file to write (default: SPEC with .py; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite OUT even if normdsl did not generate it")
    template = p.add_argument(
        "--template",
        default="model",
        metavar="NAME",
        help="model (default), train, notebook, compare or compare-notebook; or one of --template-dir",
    )
    _completes(template, _template_names)
    p.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multiworker"],
        default="default",
        help="the tf.distribute strategy the train and compare templates' scripts default to",
    )
    p.add_argument("--template-dir", type=Path, metavar="DIR", help="a folder of your own NAME.py.j2 templates")
    p.add_argument(
        "--verify", action="store_true", help="then build the written code with Keras and compare its figures"
    )
    _target_option(p)


def _add_fmt(command: Command, sub: Subparsers) -> None:
    from normdsl.fmt import DEFAULT_WIDTH

    p = command("fmt", cmd_fmt, "rewrite specs in the canonical layout (files, folders, - for stdin)", model=False)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a spec would be reformatted")
    p.add_argument("--diff", action="store_true", help="change nothing; print what would change as a unified diff")
    p.add_argument(
        "-l", "--line-length", type=_positive, default=DEFAULT_WIDTH, metavar="N", help="the longest line (default 120)"
    )


def _add_lsp(command: Command, sub: Subparsers) -> None:
    from normdsl.fmt import DEFAULT_WIDTH

    p = sub.add_parser("lsp", help="serve the language server on standard input and output (for editors)")
    p.add_argument("--no-inlay-hints", action="store_true", help="no output shapes at line ends")
    p.add_argument(
        "-l", "--line-length", type=_positive, default=DEFAULT_WIDTH, metavar="N", help="formatting's longest line"
    )
    p.set_defaults(run=cmd_lsp)


LEVELS = "collapse blocks nested N deep or more into one box each (as summary --levels)"


def _add_diagram(command: Command, sub: Subparsers) -> None:
    p = command(
        "diagram", cmd_diagram, "draw the model: SVG, HTML, Mermaid or DOT, laid out without Graphviz", many=False
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.svg, .html, .mmd or .dot; - for stdout")
    p.add_argument("--format", choices=["svg", "html", "mermaid", "dot"], help="the format for -o - (default svg)")
    p.add_argument("--levels", type=_positive, metavar="N", help=LEVELS)
    p.add_argument("--force", action="store_true", help="overwrite OUT even if normdsl did not write it")


def _add_report(command: Command, sub: Subparsers) -> None:
    p = command("report", cmd_report, "write one self-contained HTML report: source, summary, diagram", model=False)
    _model_options(p, several_norms=True)
    p.add_argument("-o", "--output", required=True, metavar="OUT.html", help="the report to write; - for stdout")
    p.add_argument("--levels", type=_positive, metavar="N", help=LEVELS)
    p.add_argument("--force", action="store_true", help="overwrite OUT even if normdsl did not write it")


def _add_import(command: Command, sub: Subparsers) -> None:
    p = sub.add_parser(
        "import",
        help="write a Keras model as a compact spec that rebuilds it",
        description="Write a Keras model as a compact spec that rebuilds it: the same layers and configurations"
        " (names aside unless --keep-names), connections and parameter counts. SOURCE is a .keras file (its"
        " config is read as data: none of its code runs), keras.applications.NAME (built with weights=None),"
        " or module:function returning a model. Warning: module:function imports the module and calls the"
        " function, which runs their code: import only modules you trust.",
    )
    p.add_argument("source", metavar="SOURCE", help="model.keras, keras.applications.NAME or module:function")
    p.add_argument("-o", "--output", metavar="OUT.nd", help="the spec file to write (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite OUT even if normdsl import did not write it")
    p.add_argument(
        "--keep-names", action="store_true", help="keep each layer's name (name=...): no repetitions nor blocks then"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and TensorFlow's log lines")
    p.set_defaults(run=cmd_import)


def _add_port_weights(command: Command, sub: Subparsers) -> None:
    p = sub.add_parser(  # Keras ↔ PyTorch (issue 22)
        "port-weights",
        help="move trained weights between Keras (.weights.h5) and PyTorch (.pt) models of a spec",
        description="Build the spec's Keras model and PyTorch module, load WEIGHTS into the one it fits, copy "
        "them layer by layer into the other and save them: SPEC model.weights.h5 -o model.pt, or the reverse.",
    )
    p.add_argument("spec", metavar="SPEC", help="the spec both models are built from")
    p.add_argument("weights", metavar="WEIGHTS", help="model.weights.h5 (Keras) or model.pt (a PyTorch state_dict)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.pt or OUT.weights.h5")
    p.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and TensorFlow's log lines")
    _model_options(p)
    p.set_defaults(run=cmd_port_weights)


def _add_save(command: Command, sub: Subparsers) -> None:
    p = command("save", cmd_save, "build the model with Keras and save it as a .keras file", many=False)
    p.add_argument("-o", "--output", required=True, metavar="OUT.keras")
    p.add_argument("--force", action="store_true", help="overwrite an existing OUT")


# Each command and what adds its parser, in the order `normdsl --help` lists them.
COMMANDS: dict[str, Callable[[Command, Subparsers], None]] = {
    "check": _add_check,
    "kinds": _add_kinds,
    "parse": _add_parse,
    "summary": _add_summary,
    "compare": _add_compare,
    "explain": _add_explain,
    "scale-report": _add_scale_report,
    "build": _add_build,
    "fmt": _add_fmt,
    "lsp": _add_lsp,
    "diagram": _add_diagram,
    "report": _add_report,
    "import": _add_import,
    "port-weights": _add_port_weights,
    "save": _add_save,
}


def _completes(action: argparse.Action, completer: Callable[..., list[str]]) -> None:
    """What argcomplete offers for ``action``'s value (it reads the attribute ``completer``)."""
    action.completer = completer  # type: ignore[attr-defined]


def _spec_files(prefix: str, **kwargs: object) -> list[str]:
    """Completion of SPEC: .nd files and folders."""
    from argcomplete.completers import FilesCompleter

    return list(FilesCompleter(["nd"])(prefix, **kwargs))


def _template_names(parsed_args: argparse.Namespace, **_: object) -> list[str]:
    """Completion of --template: the templates of --template-dir, or normdsl's own."""
    from normdsl.emit_source import templates

    return templates(getattr(parsed_args, "template_dir", None))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    completing = "_ARGCOMPLETE" in os.environ
    parser = _parser(argv[0] if argv and argv[0] in COMMANDS and not completing else None)
    if completing:  # the shell asks for completions (bash, zsh, fish): argcomplete answers, exits
        import argcomplete

        argcomplete.autocomplete(parser)
    if not argv:  # `normdsl` alone: what it can do
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    report = Report(color=use_color(sys.stderr), verbose=getattr(args, "verbose", False))
    if sys.stdout is None:  # started with descriptor 1 closed (`>&-`): what it prints would be lost
        report.error("<stdout>: standard output is closed")
        return EXIT_USAGE
    try:
        code: int = args.run(args, report)
        sys.stdout.flush()  # a closed pipe is found here, not as Python exits
        return code
    except (UsageError, PluginError) as exc:
        report.error(shown(str(exc)))
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (normdsl kinds | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_PIPE
    except OSError as exc:
        report.error(shown(_os_error(exc)))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP while writing (Terminated)
        print("normdsl: interrupted", file=sys.stderr)
        return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
    except Exception as exc:  # our bug: one line (the traceback with --verbose), never a usage error
        report.internal("", exc)
        return EXIT_INTERNAL


# Loaded, these may have exit handlers to run (a framework's, coverage's): then Python exits as usual.
_EXIT_HANDLERS = ("tensorflow", "keras", "jax", "torch", "coverage")


def run() -> NoReturn:
    """The ``normdsl`` program: :func:`main`, then, unless a module with exit handlers was loaded, an immediate
    exit once the output is flushed (as mypy does): tearing the interpreter down takes longer than checking
    ResNet-50, and nothing of ours needs it (every file is written and closed before main returns)."""
    code = main()
    if any(name in sys.modules for name in _EXIT_HANDLERS):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or gone (a broken pipe)
            stream.flush()
    os._exit(code)


def _os_error(exc: OSError) -> str:
    """``{file}: {reason}``; an error naming no file is about standard output."""
    subject = "<stdout>" if exc.filename is None else exc.filename
    said = ", ".join(map(str, exc.args))  # (not str(exc), which shows the file name given it)
    reason = exc.strerror or (f"{type(exc).__name__}: {said}" if said else type(exc).__name__)
    return f"{os.fsdecode(subject) if isinstance(subject, bytes) else subject}: {reason}"

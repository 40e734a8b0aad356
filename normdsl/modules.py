"""``use`` statements: other files' blocks brought into a spec's scope.

``use "blocks.nd"`` reads a file relative to the using file (relative to the working folder for a
spec that is no file: standard input, ``-e``, the API's text); ``use std/mbconv`` reads normdsl's
own library (``normdsl/std/*.nd``). A used file is a ``.nd`` file (a spec cannot make normdsl read,
and quote in its diagnostics, any other file) and holds blocks (and ``use`` statements) only. Every
problem is a diagnostic: a missing file with the path tried, a cycle, a block defined twice (both
places named), and a problem inside a used file at that file's own line and column.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from normdsl.ast import BlockDef, Spec, UseDecl
from normdsl.diagnostics import Diagnostic, Span, SpecError
from normdsl.limits import Limits
from normdsl.parser import parse

STD = Path(__file__).parent / "std"  # normdsl's library of blocks: use std/NAME
MAX_BYTES = 10 * 1024 * 1024  # of one used file, as of a spec
MAX_FILES = 256  # used files in all, through every use


@dataclass(frozen=True, slots=True)
class Home:
    """A file blocks come from: its name as diagnostics show it, and its text."""

    filename: str
    source: str


@dataclass
class Used:
    """What a spec's uses bring: blocks by name with the file each is defined in, and the problems found."""

    blocks: dict[str, tuple[BlockDef, Home]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def load(spec: Spec, limits: Limits) -> Used:
    """Read every file ``spec`` uses, directly or not (each once), and gather their blocks."""
    used = Used()
    if spec.uses:
        home = Home(spec.filename, spec.source)
        _Loader(used, limits).visit(spec, home, _folder(spec.filename), ())
    return used


def _folder(filename: str) -> Path:
    """Where a spec's relative uses are looked up: beside its file, or here for text that is no file."""
    if filename.startswith("<") or filename.startswith("--"):
        return Path(".")
    return Path(filename).parent


class _Loader:
    def __init__(self, used: Used, limits: Limits):
        self.used, self.limits = used, limits
        self.seen: dict[Path, str] = {}  # every file read (its real path) → its name in diagnostics
        self.first_use: dict[Path, tuple[Home, UseDecl]] = {}

    def problem(self, home: Home, span: Span, message: str, hint: str | None = None) -> None:
        elsewhere = (home.filename, home.source)
        self.used.diagnostics.append(Diagnostic("error", message, span, hint, elsewhere=elsewhere))

    def visit(self, spec: Spec, home: Home, folder: Path, chain: tuple[Path, ...]) -> None:
        for use in spec.uses:
            path, shown = (STD / f"{use.path}.nd", f"std/{use.path}.nd") if use.std else _relative(folder, use.path)
            if path.suffix != ".nd":  # a spec never makes normdsl read (and quote) other files
                self.problem(home, use.span, f"cannot use {shown}: only .nd files hold blocks", 'e.g. use "blocks.nd"')
                continue
            try:
                real = path.resolve()
            except (OSError, RuntimeError) as exc:  # a symlink loop
                self.problem(home, use.span, f"cannot use {shown}: {exc}")
                continue
            if real in chain:
                cycle = " → ".join([*(self.seen[p] for p in chain[chain.index(real) :]), shown])
                self.problem(home, use.span, f"files use each other in a cycle: {cycle}", "take the use out of one")
                continue
            if real in self.seen:
                continue  # read once: its blocks are in scope already
            if len(self.seen) >= MAX_FILES or len(chain) >= self.limits.max_call_depth:
                self.problem(home, use.span, f"more than {MAX_FILES} used files, or uses nested too deep")
                continue
            text = self.read(path, shown, home, use)
            if text is None:
                continue
            self.seen[real] = shown
            self.load(text, shown, path.parent, (*chain, real))

    def read(self, path: Path, shown: str, home: Home, use: UseDecl) -> str | None:
        try:
            return _read(path)
        except FileNotFoundError:
            hint = "normdsl's library: " + ", ".join(sorted(p.stem for p in STD.glob("*.nd"))) if use.std else None
            self.problem(home, use.span, f"cannot use {shown}: no such file (looked for {path})", hint)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.problem(home, use.span, f"cannot use {shown}: {reason}")
        return None

    def load(self, text: str, shown: str, folder: Path, chain: tuple[Path, ...]) -> None:
        home = Home(shown, text)
        try:
            spec = parse(text, filename=shown, limits=self.limits)
        except SpecError as exc:
            elsewhere = (shown, text)
            self.used.diagnostics += [_moved(d, elsewhere) for d in exc.diagnostics]
            return
        for node in (*spec.inputs, *spec.body)[:1]:
            self.problem(home, node.span, f"{shown} is used for its blocks: it cannot hold layers or input(...)")
        for block in spec.blocks:
            other = self.used.blocks.get(block.name)
            if other is not None and other[1].filename != shown:
                where = f"{other[1].filename}:{other[0].name_span.line}:{other[0].name_span.column}"
                message = f"block '{block.name}' is defined in {shown} and in {where}"
                self.problem(home, block.name_span, message, "rename one of them")
                continue
            self.used.blocks.setdefault(block.name, (block, home))
        self.visit(spec, home, folder, chain)


def _relative(folder: Path, path: str) -> tuple[Path, str]:
    full = folder / path
    return full, os.path.normpath(full)


def _read(path: Path) -> str:
    """A used file's text: a regular file of UTF-8 text, at most MAX_BYTES (ValueError otherwise)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once, to be refused
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ValueError(f"more than {MAX_BYTES:,} bytes")
    if b"\0" in data:
        raise ValueError("a binary file, not spec text")
    return data.decode("utf-8-sig")  # a UnicodeDecodeError is a ValueError


def _moved(diagnostic: Diagnostic, elsewhere: tuple[str, str]) -> Diagnostic:
    return Diagnostic(
        diagnostic.severity, diagnostic.message, diagnostic.span, diagnostic.hint, diagnostic.notes, elsewhere
    )

"""Text → Spec: builds the Lark parser once, runs it, and translates Lark's errors into diagnostics."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import re
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from normdsl._paths import data_dir
from normdsl.ast import (
    Arg,
    BinOp,
    BlockDef,
    Call,
    Concat,
    Expr,
    InputDecl,
    Layer,
    Node,
    Param,
    Ref,
    Repeat,
    Residual,
    ScaleDecl,
    Spec,
    UseDecl,
    Value,
    Word,
)
from normdsl.diagnostics import Diagnostic, Span, SpecError
from normdsl.hints import expected, pair_rewrite, spaced_call_rewrite
from normdsl.lalr import FORMAT, Tables, Tok, Unsupported, export, run
from normdsl.limits import DEFAULT_LIMITS, Limits
from normdsl.util import paused_gc

if TYPE_CHECKING:  # lark is imported only to build the tables, and to say what is wrong with a spec
    from lark import Lark, Token, Tree
    from lark.exceptions import UnexpectedInput

_OPTIONS = {"parser": "lalr", "lexer": "contextual", "propagate_positions": True, "maybe_placeholders": False}


@functools.cache
def _lark() -> Lark:
    """The LALR parser, built once per process. Its tables are cached as JSON (never a pickle: a
    planted cache file can at worst be ignored) in the user's cache folder, keyed by a hash of
    the grammar, the options and the versions; loading them is ~25 ms faster than building."""
    import hashlib

    from lark import Lark
    from lark import __version__ as lark_version

    grammar = _grammar()
    key = hashlib.sha256(f"{grammar}{_OPTIONS}{lark_version}{sys.version_info[:2]}".encode()).hexdigest()
    folder = cache_folder()
    cached = _read_cache(os.path.join(folder, f"parser-{key[:16]}.json"), key) if folder else None
    if cached is not None:
        return cached
    parser = Lark(grammar, **_OPTIONS, **_hooks())
    if folder is not None:
        _write_cache(folder, f"parser-{key[:16]}.json", key, parser)
    return parser


def _grammar() -> str:
    with open(os.path.join(data_dir("grammar"), "normdsl.lark"), encoding="utf-8") as f:
        return f.read()


@functools.cache
def _tables() -> Tables | None:
    """The parser's tables for the driver in lalr.py, exported from lark once and cached as JSON beside
    lark's own cache: valid for this grammar's exact text, this lark installation and this Python. None
    if this lark parser cannot be exported (then lark parses everything)."""
    grammar = _grammar()
    stamp = [grammar, _lark_stamp(), list(sys.version_info[:2]), FORMAT]  # (two normdsl versions: two files)
    folder = cache_folder()
    name = f"tables-{zlib.crc32(repr(stamp).encode()):08x}.json"  # one per grammar, lark and Python: venvs don't take turns
    cached = _read_json(os.path.join(folder, name)) if folder else None
    if isinstance(cached, dict) and cached.get("stamp") == stamp:
        try:
            tables = Tables(cached["tables"])
            if isinstance(_run(tables, _SMOKE, _ToAst(), DEFAULT_LIMITS), Spec):  # a damaged table fails here
                return tables
        except Exception:  # a damaged or foreign cache is ignored: the tables are exported again
            pass
    try:
        data = export(_lark())
        tables = Tables(data)
    except NotImplementedError:
        return None
    if folder is not None:
        _write_json(folder, name, {"stamp": stamp, "tables": data})
    return tables


def _lark_stamp() -> list[object]:
    """Which lark is installed (its location, size and time), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("lark")
    origin = spec.origin if spec is not None else None
    if origin is None:
        return []
    st = os.stat(origin)
    return [origin, st.st_size, st.st_mtime_ns]


def cache_folder() -> str | None:
    """``$XDG_CACHE_HOME/normdsl`` (an absolute XDG_CACHE_HOME only, as the XDG spec says) or
    ``$HOME/.cache/normdsl``, if it is a real folder of this user that no one else can write to;
    None without HOME, with NORMDSL_NO_CACHE set, or when the folder is not safe."""
    if os.environ.get("NORMDSL_NO_CACHE"):
        return None
    xdg, home = os.environ.get("XDG_CACHE_HOME", ""), os.environ.get("HOME", "")
    if os.path.isabs(xdg):
        base = xdg
    elif os.path.isabs(home):
        base = os.path.join(home, ".cache")
    else:
        return None
    folder = os.path.join(base, "normdsl")  # (os.path, not pathlib: pathlib costs a check's start 4 ms)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return folder if _ours(os.lstat(folder), stat.S_ISDIR) else None
    except OSError:
        return None


def _ours(st: os.stat_result, kind: Callable[[int], bool]) -> bool:
    """Of the right kind (not a symbolic link), owned by this user, writable by no one else."""
    return kind(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o022 == 0


def _read_json(path: str, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A cache file's JSON, if it is a regular file of this user no one else can write, not too large;
    else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not _ours(st, stat.S_ISREG) or st.st_size > _MAX_CACHE_BYTES:
                return None
            return json.loads(f.read(_MAX_CACHE_BYTES), object_hook=object_hook)
    except Exception:  # a damaged file is ignored
        return None


def _read_cache(path: str, key: str) -> Lark | None:
    from lark import Lark

    cached = _read_json(path, object_hook=_int_keys)
    try:
        if cached.get("key") != key:
            return None
        options = cached["data"]["options"]  # only lark's plain options: no plugins, callbacks or classes
        hooks = _hooks()
        cached["data"]["options"] = {k: v for k, v in options.items() if not k.startswith("_") and k not in hooks}
        parser: Lark = Lark._load_from_dict(cached["data"], cached["memo"], **hooks)  # type: ignore[no-untyped-call]
        if parser.parse("conv8(k=3) relu").data != "start":  # a smoke test: a damaged table fails here, not later
            return None
        return parser
    except Exception:  # a damaged or foreign cache is ignored: the parser is built instead
        return None


_MAX_CACHE_BYTES = 1 << 20


def _int_keys(d: dict[str, object]) -> dict[object, object]:
    """JSON turned lark's integer keys (memo ids, parser states) into strings; terminal and rule
    names are never digits."""
    return {int(k) if k.isdigit() else k: v for k, v in d.items()}


def _write_cache(folder: str, name: str, key: str, parser: Lark) -> None:
    """Write the tables to a private temporary file in the folder and rename it into place."""
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k not in _hooks()}  # functions: given on load
    _write_json(folder, name, {"key": key, "data": data, "memo": memo})


def _write_json(folder: str, name: str, content: object) -> None:
    """Write JSON to a private temporary file in the folder and rename it into place; then remove the
    oldest files of its kind beyond the newest ``_KEPT``."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".parser-", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(content, f)
            os.replace(tmp, os.path.join(folder, name))
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(folder, name.split("-", 1)[0] + "-")
    except (OSError, TypeError, ValueError):
        pass  # no cache, then: the next start builds the parser again


_KEPT = 8  # files of each kind (tables-, parser-) kept in the cache folder


def _prune(folder: str, prefix: str) -> None:
    """Each installation (venv, lark, Python, grammar) has its own cache file, so the folder would grow by
    one file per new virtual environment forever: keep the ``_KEPT`` most recently written (an installation
    whose file goes exports its tables again on its next start)."""
    with os.scandir(folder) as entries:
        files = [e for e in entries if e.name.startswith(prefix) and e.name.endswith(".json") and e.is_file()]
    files.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
    for old in files[_KEPT:]:
        with contextlib.suppress(OSError):  # (another process removed it first)
            os.unlink(old.path)


def parse(text: str, *, filename: str = "<spec>", limits: Limits = DEFAULT_LIMITS) -> Spec:
    """Parse spec text into a :class:`Spec`; raise :class:`SpecError` with positioned diagnostics."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes the spec's text as a str, got {type(text).__name__}")
    if not isinstance(filename, str):
        raise TypeError(f"parse(filename=...) must be a str, got {type(filename).__name__}")
    if not isinstance(limits, Limits):
        raise TypeError(f"parse(limits=...) must be a normdsl.Limits, got {type(limits).__name__}")
    tables = _tables()
    with paused_gc():
        if tables is not None:
            translate = _ToAst()
            try:
                spec = _run(tables, text, translate, limits)
            except Unsupported:
                pass  # something to report: lark's parse below says what
            else:
                if translate.problems:
                    raise SpecError(translate.problems, text, filename)
                assert isinstance(spec, Spec)
                return dataclasses.replace(spec, filename=filename, source=text)
        return parse_with_lark(text, filename=filename, limits=limits)


def _run(tables: Tables, text: str, translate: _ToAst, limits: Limits) -> object:
    return run(
        tables,
        text,
        translate,
        max_nodes=limits.max_nodes,
        max_layers=limits.max_layers,
        layer_rules=_LAYER_RULES,
        nesting_rules=_NESTING,
        max_nesting=limits.max_nesting,
    )


_SMOKE = 'use std/se\nlet b(f, s=1) = res(conv{2*f}(k=(1, 1), s=s, n="a") gn(2), shortcut=id, first=body)\nx = b(8)*2'


def parse_with_lark(text: str, *, filename: str = "<spec>", limits: Limits = DEFAULT_LIMITS) -> Spec:
    """:func:`parse` by lark itself: a parse tree, its nesting checked, then translated. Every problem
    is found and reported from here; the driver in lalr.py must build the same AST (a test compares)."""
    from lark.exceptions import UnexpectedInput

    parser = _lark()  # (built or loaded outside the budget: loading parses a smoke test)
    with paused_gc():
        try:
            with _budget(limits):  # (not around the error's hint: match_examples parses again)
                tree = parser.parse(text)
        except UnexpectedInput as exc:
            raise SpecError([_syntax_diagnostic(exc, text)], text, filename) from None
        except _TooLarge as exc:
            diagnostic = Diagnostic("error", exc.message, Span.at(text, exc.offset), exc.hint)
            raise SpecError([diagnostic], text, filename) from None
        _check_nesting(tree, text, filename, limits.max_nesting)
        translate = _ToAst()
        try:
            spec = translate.transform(tree)
        except RecursionError:  # a safety net: _check_nesting bounds the depth of the walk
            message = "the spec is nested too deeply to read"
            raise SpecError([Diagnostic("error", message, Span.at(text, 0), "flatten it")], text, filename) from None
        if translate.problems:
            raise SpecError(translate.problems, text, filename)
    assert isinstance(spec, Spec)
    return dataclasses.replace(spec, filename=filename, source=text)


# ---- bounded work: a huge spec stops while it is being parsed ----------------------------------


class _TooLarge(Exception):
    def __init__(self, message: str, offset: int, hint: str):
        self.message, self.offset, self.hint = message, offset, hint


class _Budget(threading.local):
    """What one parse may build: layers as written, and syntax nodes (trees and numbers)."""

    layers = nodes = 0
    max_layers = max_nodes = sys.maxsize  # unbounded outside parse() (lark's match_examples)


_BUDGET = _Budget()
_LAYER_RULES = frozenset({"bare_layer", "call_layer", "width_layer", "width_call_layer"})


@contextlib.contextmanager
def _budget(limits: Limits) -> Iterator[None]:
    saved = (_BUDGET.layers, _BUDGET.nodes, _BUDGET.max_layers, _BUDGET.max_nodes)
    _BUDGET.layers = _BUDGET.nodes = 0
    _BUDGET.max_layers, _BUDGET.max_nodes = limits.max_layers, limits.max_nodes
    try:
        yield
    finally:
        _BUDGET.layers, _BUDGET.nodes, _BUDGET.max_layers, _BUDGET.max_nodes = saved


def _spend(rule: str, offset: int) -> None:
    budget = _BUDGET
    budget.nodes += 1
    if budget.nodes > budget.max_nodes:
        raise _TooLarge(
            f"the spec is too large: more than {budget.max_nodes:,} syntax nodes (names, numbers, arguments)",
            offset,
            "split it, or use repetitions and blocks instead of writing everything out",
        )
    if rule in _LAYER_RULES:
        budget.layers += 1
        if budget.layers > budget.max_layers:
            raise _TooLarge(
                f"the spec writes more than {budget.max_layers:,} layers, the limit of layers in a model",
                offset,
                "use repetitions and blocks instead of writing every layer out",
            )


@functools.cache
def _hooks() -> dict[str, Any]:
    """lark's tree class and lexer callback that count a parse's work (lark imported on first need)."""
    from lark import Token, Tree

    class CountedTree(Tree[Token]):
        """lark's Tree, counted against the parse's budget as the parser builds it."""

        def __init__(self, data: str, children: list[Any], meta: Any = None):
            if not data.startswith("_"):  # lark's helper trees for repetitions (spliced into their parent) are free
                first = children[0] if children else None
                _spend(data, (first.start_pos or 0) if isinstance(first, Token) else 0)
            super().__init__(data, children, meta)

    def count_number(token: Token) -> Token:
        _spend("INT", token.start_pos or 0)
        return token

    return {"tree_class": CountedTree, "lexer_callbacks": {"INT": count_number}}


def _tok(token: Token) -> Tok:
    """A lark token as the AST builder takes tokens."""
    t = token
    return Tok(str(t), t.type, t.line, t.column, t.start_pos, t.end_line, t.end_column, t.end_pos)  # type: ignore[arg-type]


def _extent(meta: Any) -> Tok | None:
    """A lark tree's position (None if it has none) as the AST builder takes it."""
    if meta.empty:
        return None
    m = meta
    return Tok("", "", m.line, m.column, m.start_pos, m.end_line, m.end_column, m.end_pos)


def _span(extent: Tok | None) -> Span:
    assert extent is not None  # (only an empty spec has no extent, and start() takes none)
    e = extent  # (by index: a large spec makes a span per node)
    return Span(e[2], e[3], e[5], e[6], e[4], e[7])


_SIZED = re.compile(r"([A-Za-z_]+)([0-9]+)")
_MAX_DIGITS = 30
_HUGE: int = 10**_MAX_DIGITS  # stands for a number too large to convert, after reporting it


class _ToAst:
    """Reductions → AST: one method per grammar rule (or alias), called with the rule's extent (its
    span) and its children already translated (tokens as :class:`Tok`), by the driver in lalr.py as it
    reduces or by :meth:`transform` over lark's parse tree. A rule without a method is an internal error,
    not a stray Tree."""

    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []
        # Names, keys and words as written, each made once per parse (a large spec repeats a few of them):
        self._layers: dict[str, tuple[str, int | None]] = {}  # a layer's name → its kind and written width
        self._strings: dict[str, str] = {}
        self._words: dict[str, Value] = {"true": True, "false": False}

    def number(self, token: Tok, digits: str | None = None) -> int:
        """The integer a token (or the ``digits`` in it) writes; one of more than 30 digits, beyond
        every limit, is reported at the token (Python refuses to convert more than 4,300)."""
        text = token.text if digits is None else digits
        if len(text.lstrip("-")) > _MAX_DIGITS:
            message = f"a number of {len(text.lstrip('-')):,} digits is too large"
            self.problems.append(Diagnostic("error", message, _span(token), "no count, width or size needs that"))
            return _HUGE
        value: int = int(text)
        return value

    def transform(self, tree: Tree[Token]) -> object:
        from lark import Tree

        children = [self.transform(c) if isinstance(c, Tree) else _tok(c) for c in tree.children]
        method = getattr(self, tree.data, None)
        if method is None or tree.data.startswith("_") or tree.data == "transform":
            raise NotImplementedError(f"normdsl: grammar rule {tree.data!r} has no AST translation")
        return method(_extent(tree.meta), children)

    def start(self, meta: Tok | None, children: list[object]) -> Spec:
        inputs: list[InputDecl] = []
        blocks: list[BlockDef] = []
        uses: list[UseDecl] = []
        scalings: list[ScaleDecl] = []
        body: list[Node] = []
        into: dict[type, list[Any]] = {InputDecl: inputs, BlockDef: blocks, UseDecl: uses, ScaleDecl: scalings}
        for statement in children:  # (one pass: a large spec is mostly its body)
            into.get(type(statement), body).append(statement)
        assert all(type(node) in _NODE_TYPES for node in body)
        if blocks:
            for block, after in itertools.pairwise(children):
                if isinstance(block, BlockDef) and _statement(after).span.line == block.span.end_line:
                    self.problems.append(_run_on(block, _statement(after)))
        return Spec(
            body=tuple(body), inputs=tuple(inputs), blocks=tuple(blocks), uses=tuple(uses), scalings=tuple(scalings)
        )

    def scale_defaults(self, meta: Tok | None, children: list[object]) -> ScaleDecl:
        return ScaleDecl(None, tuple(_arg(c) for c in children[1:] if c is not None), _span(meta))

    def scale_named(self, meta: Tok | None, children: list[object]) -> ScaleDecl:
        name = children[0]
        assert isinstance(name, Tok)
        return ScaleDecl(name.text[:-1], tuple(_arg(c) for c in children[1:] if c is not None), _span(meta))

    def call(self, meta: Tok | None, children: list[object]) -> Call:
        name = children[0]
        assert isinstance(name, Tok)
        return Call(name.text[:-1], tuple(_expr(c) for c in children[1:]), _span(meta))

    def use_decl(self, meta: Tok | None, children: list[Tok]) -> UseDecl:
        (path,) = children
        if path.type == "STD_PATH":
            return UseDecl(path.text.removeprefix("std/"), True, _span(meta))
        return UseDecl(json.loads(path.text), False, _span(meta))

    def input_decl(self, meta: Tok | None, children: list[Tok]) -> InputDecl:
        return InputDecl(tuple(self.number(t) for t in children[1:]), _span(meta))

    def block_def(self, meta: Tok | None, children: list[object]) -> BlockDef:
        head, *params, body = children
        assert isinstance(head, Tok)
        params_ = tuple(p for p in params if isinstance(p, Param))
        return BlockDef(head.text[:-1], params_, _node(body), _span(meta), _name_span(head, len(head.text) - 1))

    def alias_def(self, meta: Tok | None, children: list[object]) -> BlockDef:
        name, body = children
        assert isinstance(name, Tok)
        return BlockDef(name.text, (), _node(body), _span(meta), _span(name))

    def param(self, meta: Tok | None, children: list[object]) -> Param:
        name, *default = children
        assert isinstance(name, Tok)
        return Param(name.text, _value(default[0]) if default else None, _span(meta))

    def repeat(self, meta: Tok | None, children: list[object]) -> Repeat:
        unit, count = _node(children[0]), _expr(children[1])
        body = unit.body if isinstance(unit, Repeat) and unit.count == 1 else (unit,)
        span = _span(meta)
        if isinstance(count, Ref | BinOp | Call):
            count_span = count.span
        else:  # a literal count ends the repetition
            n = len(str(count))
            count_span = Span(
                span.end_line, span.end_column - n, span.end_line, span.end_column, span.end - n, span.end
            )
        return Repeat(body, count, span, count_span)

    def group(self, meta: Tok | None, children: list[Node]) -> Repeat:
        return Repeat(tuple(children), 1, _span(meta))

    def seq(self, meta: Tok | None, children: list[Node]) -> tuple[Node, ...]:
        return tuple(children)

    def residual(self, meta: Tok | None, children: list[object]) -> Residual:
        head, body, *rest = children
        shortcut = next((c for c in rest if not isinstance(c, Tok)), None)  # a seq; a first= value is a NAME token
        first = next((c for c in rest if isinstance(c, Tok)), None)
        assert isinstance(head, Tok)
        gate = head.text == "gate("
        if first is not None and first.text not in ("body", "shortcut"):
            hint = "first=body writes Add()([body, shortcut]); first=shortcut (the default) Add()([shortcut, body])"
            message = f"first= takes body or shortcut, got {first.text}"
            self.problems.append(Diagnostic("error", message, _span(first), hint))
        span = _span(meta)
        body_first = first is not None and first.text == "body"
        return Residual(_seq(body), None if shortcut is None else _seq(shortcut), span, gate, body_first)

    def concat(self, meta: Tok | None, children: list[object]) -> Concat:
        return Concat(tuple(_seq(c) for c in children[1:]), _span(meta))

    # The layers, arguments and numbers of a large spec: tokens read by index, spans made in place, a name's
    # kind and width read once per parse (these are most of a large spec's reductions).

    def bare_layer(self, meta: Tok | None, children: list[Tok]) -> Layer:
        t = children[0]
        text = t[0]
        kind, width = self._layers.get(text) or self._sized(t, text, text)
        span = Span(t[2], t[3], t[5], t[6], t[4], t[7])
        return Layer(kind, width, (), span, span)  # (the name is all of it)

    def call_layer(self, meta: Tok | None, children: list[object]) -> Layer:
        t = children[0]
        assert isinstance(t, Tok) and meta is not None
        text = t[0]
        kind, width = self._layers.get(text) or self._sized(t, text, text[:-1])
        args = cast(tuple[Arg, ...], tuple(children[1:]))  # (the grammar's: only arguments)
        line, column, start, n = t[2], t[3], t[4], len(text) - 1
        name_span = Span(line, column, line, column + n, start, start + n)
        return Layer(kind, width, args, Span(meta[2], meta[3], meta[5], meta[6], meta[4], meta[7]), name_span)

    def width_layer(self, meta: Tok | None, children: list[object]) -> Layer:
        name, width = children
        assert isinstance(name, Tok)
        return self.layer(name, name.text[:-1], _expr(width), (), meta)

    def width_call_layer(self, meta: Tok | None, children: list[object]) -> Layer:
        name, width, _close, *args = children
        assert isinstance(name, Tok)
        return self.layer(name, name.text[:-1], _expr(width), tuple(_arg(a) for a in args), meta)

    def layer(self, token: Tok, name: str, width: Expr | None, args: tuple[Arg, ...], meta: Tok | None) -> Layer:
        kind, width = self._sized(token, token.text, name) if width is None else (self._string(name), width)
        return Layer(kind, width, args, _span(meta), _name_span(token, len(name)))

    def _sized(self, token: Tok, text: str, name: str) -> tuple[str, int | None]:
        """The kind and width a layer's name writes (conv64 → conv, 64; relu → relu, None), kept for the
        token's ``text`` (the name, or the name and its bracket)."""
        sized = _SIZED.fullmatch(name)
        if sized is None:
            known: tuple[str, int | None] = (name, None)
        elif len(sized[2]) > _MAX_DIGITS:
            return sized[1], self.number(token, sized[2])  # (reported where it is written, each time)
        else:
            known = (sized[1], int(sized[2]))
        self._layers[text] = known
        return known

    def _string(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def kwarg(self, meta: Tok | None, children: list[object]) -> Arg:
        key, value = children
        assert isinstance(key, Tok) and meta is not None
        span = Span(meta[2], meta[3], meta[5], meta[6], meta[4], meta[7])
        return Arg(self._string(key[0]), cast(Value, value), span)  # (a value: the grammar's)

    def posarg(self, meta: Tok | None, children: list[Value]) -> Arg:
        assert meta is not None
        return Arg(None, children[0], Span(meta[2], meta[3], meta[5], meta[6], meta[4], meta[7]))

    def integer(self, meta: Tok | None, children: list[Tok]) -> int:
        text = children[0][0]
        return int(text) if len(text) <= _MAX_DIGITS else self.number(children[0])

    def real(self, meta: Tok | None, children: list[Tok]) -> float:
        value = float(children[0].text)
        if not math.isfinite(value):  # 1e999: Python's inf, which no setting takes and no code can write
            self.problems.append(Diagnostic("error", f"{children[0].text} is too large a number", _span(children[0])))
        return value

    def string(self, meta: Tok | None, children: list[Tok]) -> str:
        value: str = json.loads(children[0].text)  # the grammar admits only JSON's \" \\ \n \t escapes
        return value

    def word(self, meta: Tok | None, children: list[Tok]) -> Value:
        word = children[0].text
        known = self._words.get(word)
        if known is None:
            known = self._words[word] = Word(word)
        return known

    def pair(self, meta: Tok | None, children: list[Value]) -> Value:
        return tuple(children)

    def num(self, meta: Tok | None, children: list[Tok]) -> int:
        return self.number(children[0])

    def ref(self, meta: Tok | None, children: list[Tok]) -> Ref:
        return Ref(children[0].text, _span(meta))

    def add(self, meta: Tok | None, children: list[Expr]) -> BinOp:
        return BinOp("+", children[0], children[1], _span(meta))

    def sub(self, meta: Tok | None, children: list[Expr]) -> BinOp:
        return BinOp("-", children[0], children[1], _span(meta))

    def mul(self, meta: Tok | None, children: list[Expr]) -> BinOp:
        return BinOp("*", children[0], children[1], _span(meta))

    def floordiv(self, meta: Tok | None, children: list[Expr]) -> BinOp:
        return BinOp("//", children[0], children[1], _span(meta))


Statement = Layer | Repeat | Residual | Concat | InputDecl | BlockDef | UseDecl | ScaleDecl
_NODE_TYPES = frozenset({Layer, Repeat, Residual, Concat})


# The transformer's children are the grammar's: these say (and check) which node each one is.
def _node(item: object) -> Node:
    assert isinstance(item, Layer | Repeat | Residual | Concat), item
    return item


def _nodes(items: Iterable[object]) -> tuple[Node, ...]:
    return tuple(_node(i) for i in items)


def _seq(item: object) -> tuple[Node, ...]:
    assert isinstance(item, tuple) and not isinstance(item, Tok), item
    return _nodes(item)


def _statement(item: object) -> Statement:
    assert isinstance(item, Statement), item
    return item


def _arg(item: object) -> Arg:
    assert isinstance(item, Arg), item
    return item


def _expr(item: object) -> Expr:
    assert isinstance(item, int | Ref | BinOp | Call), item
    return item


def _value(item: object) -> Value:
    assert isinstance(item, int | float | str | tuple | Ref | BinOp | Call) and not isinstance(item, Tok), item
    return item  # (a tuple holds values: the grammar makes no other)


def _run_on(block: BlockDef, after: Statement) -> Diagnostic:
    """A statement right after a block definition, on its line, is not part of the block (the body is one
    item): say so, rather than build a model other than the one the line plainly reads as."""
    span = after.span
    head = "let " + block.name + ("(...)" if block.params else "")
    message = f"this is not part of block '{block.name}': a block's body is one item, and it ended before here"
    hint = f"to put it in the block, parenthesize the body: {head} = (...); else start a new line"
    return Diagnostic("error", message, span, hint)


def _name_span(token: Tok, length: int) -> Span:
    line, column, start = token[2], token[3], token[4]
    return Span(line, column, line, column + length, start, start + length)


def _check_nesting(tree: Tree[Token], text: str, filename: str, max_nesting: int) -> None:
    """Reject specs nested deeper than ``max_nesting`` levels of groups, paths, tuples or arithmetic,
    before anything walks the tree recursively."""
    from lark import Tree

    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > max_nesting:
            message = f"the spec nests groups, paths or expressions more than {max_nesting} deep"
            hint = "flatten it, or repeat a group instead of nesting it"
            raise SpecError([Diagnostic("error", message, _span(_extent(node.meta)), hint)], text, filename)
        nested = depth + (node.data in _NESTING)
        stack.extend((c, nested) for c in node.children if isinstance(c, Tree))


_NESTING = frozenset(
    {"group", "residual", "concat", "pair", "add", "sub", "mul", "floordiv", "call", "block_def", "alias_def"}
)


# ---- syntax errors in plain words -------------------------------------------------------------

# Common mistakes, recognised by the parser state they leave it in (lark's match_examples).
_SPACED = "a call written with a space"  # a label: the hint rewrites what was typed (gn (16) -> gn(16))
_MISTAKES: dict[str, list[str]] = {
    _SPACED: ["gn (16)", "conv64 (k=5)", "gn 16", "conv64 k=5"],
    "a repetition needs a count after '*', e.g. conv64*3": ["conv64*", "conv64 * relu", "(bn relu)*"],
    "close the argument list with ')'": ["conv64(k=5", "gn(16", "conv64(k=5, s=2"],
    "separate arguments with commas; a pair is written (3, 3)": ["conv64(k=5 s=2)", "conv64(k=3x3)", "maxpool(3 3)"],
    "an argument is written key=value, e.g. conv64(k=5)": ["conv64(k=)", "conv64(=3)", "conv64(k==3)"],
    "close the group with ')'": ["(conv64 bn", "((conv64)*2"],
    "the shape is written input(H, W, C) with whole numbers, e.g. input(224, 224, 3)": [
        "input()",
        "input(a)",
        "input(32, 32.0, 3)",
        "input(32 32)",
    ],
}


_CHAR_HINTS = {
    "'": 'strings use double quotes: name="stem"',
    "\ufeff": "remove the byte-order mark (U+FEFF) from the file",
}


@functools.cache
def _token_texts() -> dict[str, str | None]:
    """Each token's text if it is plain text ("res(", "="), else None (a pattern such as NAME's)."""
    from lark.lexer import PatternStr

    return {t.name: t.pattern.value if isinstance(t.pattern, PatternStr) else None for t in _lark().terminals}


def _syntax_diagnostic(exc: UnexpectedInput, text: str) -> Diagnostic:
    """A lark error in words: what was found, a hint (a known mistake rewritten, else the tokens that
    could have come), and a note at the bracket still open if it was opened on an earlier line."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    texts = _token_texts()
    opened = _unclosed(exc)
    notes = _opened_here(opened) if opened is not None and opened.line != exc.line else ()
    if isinstance(exc, UnexpectedCharacters):
        char = text[pos] if pos < len(text) else ""
        shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
        hint = _CHAR_HINTS.get(char) or expected(exc.allowed, texts)
        if char == "/":
            in_braces = "//" in {texts.get(n) for n in exc.allowed}
            hint = "use // for integer division" + ("" if in_braces else ", in braces: k={f//2}")
        return Diagnostic("error", f"unexpected character {shown}", Span.at(text, pos), hint, notes)
    assert isinstance(exc, UnexpectedToken)  # (LALR reports the end of the text as the token $END)
    # use_accepts=True would be more precise, but lark 1.3.1 crashes formatting a debug message with it
    hint = exc.match_examples(_lark().parse, _MISTAKES, use_accepts=False)
    token = exc.token
    if hint == _SPACED:  # (or a state like it: then the tokens expected say more)
        hint = spaced_call_rewrite(text, pos) if token.type != "$END" else None
    if token.type == "INPUT_CALL":
        hint = "input(...) may only be the first statement"
    elif token.type == "NAME" and "COMMA" in exc.accepts and not (opened and opened.type == "INPUT_CALL"):
        hint = pair_rewrite(text, pos, str(token)) or hint
    hint = hint or expected(exc.accepts or exc.expected, texts)
    if token.type != "$END":
        return Diagnostic("error", f"unexpected {str(token)!r}", _span(_tok(token)), hint, notes)
    end = len(text.rstrip())  # just after the last thing written, not on a trailing empty line
    notes = _opened_here(opened) if opened is not None else ()
    return Diagnostic("error", "the spec ends too early", Span.at(text, end, 0), hint, notes)


def _unclosed(exc: UnexpectedInput) -> Token | None:
    """The innermost '(' or '{' still open where the parser stopped. Finished groups, calls and
    expressions are trees on the parser's stack; the tokens still on it are matched like brackets
    ("conv{" opens, "}(" closes and opens, ")" closes)."""
    from lark import Token

    state = getattr(getattr(exc, "interactive_parser", None), "parser_state", None)
    opened: list[Token] = []
    for value in getattr(state, "value_stack", ()):
        if isinstance(value, Token):
            if value.startswith((")", "}")) and opened:
                opened.pop()
            if value.endswith(("(", "{")):
                opened.append(value)
    return opened[-1] if opened else None


def _opened_here(token: Token) -> tuple[tuple[str, Span], ...]:
    """A note pointing at the bracket that ends ``token`` (the '(' of conv64()."""
    span = _span(_tok(token))
    bracket = Span(span.end_line, span.end_column - 1, span.end_line, span.end_column, span.end - 1, span.end)
    return ((f"'{token[-1]}' opened here", bracket),)

"""What an editor asks of a spec, answered from the parser and checker: diagnostics, what is at a place
(a layer with its figures, a block, a used file), shapes at line ends, symbols, references and completions.

Plain data in character offsets of the text; ``normdsl/lsp.py`` speaks the protocol (pygls) over it.
Nothing here imports pygls, jinja2, black or a framework.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lark.exceptions import LarkError

from normdsl import modules
from normdsl.ast import IDENTIFIER, BlockDef, Concat, Layer, Node, Repeat, Residual, Spec
from normdsl.check import check
from normdsl.diagnostics import Diagnostic, Span, SpecError
from normdsl.layers import ACTIVATIONS, COMPOSITES, KINDS, LayerKind, Param
from normdsl.limits import DEFAULT_LIMITS, Limits
from normdsl.network import NetLayer, Network, _shape
from normdsl.parser import _lark, parse
from normdsl.plugins import PluginError

MAX_SPEC_BYTES = 10 * 1024 * 1024  # as the CLI reads at most (cli.MAX_SPEC_BYTES)
KEYWORDS = ("input", "let", "use", "res", "cat", "gate", "scaling", "shortcut", "first")  # words of the grammar
MAX_USES_SHOWN = 12  # rows of "shapes at each use" in a hover
_COMPLETION_WINDOW = 64 * 1024  # characters before the cursor that completion reads


@dataclass(frozen=True, slots=True)
class Analysis:
    """A document checked: the spec if it parses, the network if it checks, and every diagnostic."""

    text: str
    filename: str
    spec: Spec | None
    network: Network | None
    diagnostics: tuple[Diagnostic, ...]


def analyze(text: str, filename: str, *, limits: Limits = DEFAULT_LIMITS) -> Analysis:
    """Parse and check ``text`` as the CLI's ``check`` does; problems become diagnostics, never exceptions."""
    too_large = len(text) * 4 > MAX_SPEC_BYTES and len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES
    if too_large:
        message = f"more than {MAX_SPEC_BYTES:,} bytes is too large for a spec"
        return Analysis(text, filename, None, None, (Diagnostic("error", message, Span.at(text, 0)),))
    if (nul := text.find("\0")) >= 0:
        message = "a NUL character: this is a binary file, not spec text"
        return Analysis(text, filename, None, None, (Diagnostic("error", message, Span.at(text, nul)),))
    try:
        spec = parse(text, filename=filename, limits=limits)
    except SpecError as exc:
        return Analysis(text, filename, None, None, exc.diagnostics)
    try:
        network = check(spec, limits=limits)
    except SpecError as exc:
        return Analysis(text, filename, spec, None, exc.diagnostics)
    except PluginError as exc:  # a broken plugin package: said once, at the top
        return Analysis(text, filename, spec, None, (Diagnostic("error", str(exc), Span.at(text, 0)),))
    return Analysis(text, filename, spec, network, network.warnings)


# ---- places ------------------------------------------------------------------------------------


def std_path(shown: str) -> Path | None:
    """The file of normdsl's library a diagnostic or a block's home names as ``std/NAME.nd``."""
    if shown.startswith("std/") and shown.endswith(".nd") and IDENTIFIER.fullmatch(shown[4:-3]):
        return modules.STD / shown[4:]
    return None


def file_of(shown: str, filename: str) -> Path | None:
    """The file a name in a diagnostic or home stands for (None for text that is no file, e.g. --norm's)."""
    if (std := std_path(shown)) is not None:
        return std
    if shown.startswith(("<", "--")) or shown == filename:
        return None
    return Path(shown) if os.path.isabs(shown) else Path(os.getcwd(), shown)


def walk(spec: Spec) -> Iterator[tuple[Layer, BlockDef | None]]:
    """Every layer (and block use) as written, with the block whose body it is in: bounded by the parser's
    nesting limit, walked with a stack."""
    roots: list[tuple[Node, BlockDef | None]] = [(node, None) for node in spec.body]
    roots += [(block.body, block) for block in spec.blocks]
    stack = list(reversed(roots))
    while stack:
        node, block = stack.pop()
        match node:
            case Layer():
                yield node, block
                continue
            case Repeat():
                children: tuple[Node, ...] = node.body
            case Residual():
                children = (*(node.shortcut or ()), *node.body)
            case Concat():
                children = tuple(n for branch in node.branches for n in branch)
        stack.extend((child, block) for child in reversed(children))


def _inside(span: Span, offset: int) -> bool:
    return span.start <= offset <= span.end


@dataclass(frozen=True, slots=True)
class Target:
    """What is at a place: a block (its definition and uses), a layer kind, or a used file."""

    name: str
    span: Span  # the word under the cursor
    block: BlockDef | None = None
    kind: LayerKind | None = None
    used_file: Path | None = None


def target_at(analysis: Analysis, offset: int) -> Target | None:
    spec = analysis.spec
    if spec is None:
        return None
    for use in spec.uses:
        if _inside(use.span, offset):
            folder = modules._folder(analysis.filename)
            path = modules.STD / f"{use.path}.nd" if use.std else folder / use.path
            return Target(use.path, use.span, used_file=path.absolute())
    for defined in spec.blocks:
        if _inside(defined.name_span, offset):
            return Target(defined.name, defined.name_span, block=defined)
    best: Layer | None = None
    for layer, _ in walk(spec):
        if _inside(layer.name_span, offset) and (best is None or layer.span.start >= best.span.start):
            best = layer
    if best is None:
        return None
    kind = KINDS.get(best.kind)
    block: BlockDef | None = None
    if kind is None:
        block = next((b for b in spec.blocks if b.name == best.kind), None)
    if kind is None and block is None and spec.uses:
        block = blocks_in_scope(analysis).get(best.kind)
    return Target(best.kind, best.name_span, block=block, kind=kind)


def blocks_in_scope(analysis: Analysis) -> dict[str, BlockDef]:
    """The blocks a spec can use: its own and those of the files it uses."""
    spec = analysis.spec
    if spec is None:
        return {}
    found = {name: block for name, (block, _) in modules.load(spec, DEFAULT_LIMITS).blocks.items()}
    found.update((b.name, b) for b in spec.blocks)
    return found


def home_of(analysis: Analysis, name: str) -> tuple[Path, str] | None:
    """The file (and its text) block ``name`` comes from when a used file defines it."""
    spec = analysis.spec
    if spec is None or not spec.uses or any(b.name == name for b in spec.blocks):
        return None
    found = modules.load(spec, DEFAULT_LIMITS).blocks.get(name)
    path = None if found is None else file_of(found[1].filename, analysis.filename)
    return None if found is None or path is None else (path, found[1].source)


def references(spec: Spec, name: str) -> list[Span]:
    """Where block ``name`` is used in ``spec`` (the name of each use)."""
    return [layer.name_span for layer, _ in walk(spec) if layer.kind == name]


# ---- figures ------------------------------------------------------------------------------------


def _site(layer: NetLayer) -> Span:
    """Where a layer of the network is in the spec's body: its own span, or its outermost block use."""
    return layer.uses[0] if layer.uses else layer.span


def layers_at(network: Network, offset: int) -> list[NetLayer]:
    """The network's layers written at ``offset`` in the spec (several for a layer in a block used more
    than once): those of the innermost layer whose span holds it."""
    written = [layer for layer in network.layers if layer.written is None and _inside(layer.span, offset)]
    if not written:
        return []
    innermost = min(written, key=lambda layer: (layer.span.end - layer.span.start, -layer.span.start))
    return [layer for layer in written if layer.span == innermost.span]


def use_at(network: Network, offset: int) -> tuple[Span, list[NetLayer]] | None:
    """The block use at ``offset`` (the innermost) and the layers it made, in order."""
    best: Span | None = None
    for layer in network.layers:
        for use in layer.uses:
            if _inside(use, offset) and (best is None or use.end - use.start < best.end - best.start):
                best = use
    if best is None:
        return None
    return best, [layer for layer in network.layers if best in layer.uses]


def hover(analysis: Analysis, offset: int) -> tuple[str, Span] | None:
    """Markdown for what is at ``offset``: a layer's resolved call, Keras call, shapes, parameters and MACs
    (at each use inside a block); a block use's shapes; a kind's documentation when the spec does not check."""
    network = analysis.network
    if network is not None:
        found = layers_at(network, offset)
        if found:
            return _layer_hover(found, network), found[0].span
        use = use_at(network, offset)
        if use is not None and use[1]:
            span, made = use
            first, last = made[0], made[-1]
            params = sum(layer.params for layer in made)
            macs = sum(layer.macs for layer in made)
            text = (
                f"**{last.blocks[last.uses.index(span)]}** block: {len(made):,} layers\n\n"
                f"`{_shape(first.input_shape)} → {_shape(last.output_shape)}` · {params:,} params · {macs:,} MACs"
            )
            return text, span
    target = target_at(analysis, offset)
    if target is None:
        return None
    if target.kind is not None:
        return kind_doc(target.kind), target.span
    if target.block is not None:
        return f"block `{signature(target.block)}`", target.span
    if target.used_file is not None:
        return f"uses `{target.used_file}`", target.span
    return None


def _layer_hover(found: list[NetLayer], network: Network) -> str:
    from normdsl.target_keras import layer_source  # (pysource and the IR: no jinja2, no black)

    layer = found[0]
    lines = [
        f"**{layer.call}** · `{layer_source(layer.keras_class, layer.module, layer.args, layer.kwargs)}`",
        "",
        f"`{_shape(layer.input_shape)} → {_shape(layer.output_shape)}` · {layer.params:,} params"
        f" ({layer.non_trainable:,} non-trainable) · {layer.macs:,} MACs",
    ]
    if layer.blocks:
        lines += ["", f"in block {' → '.join(layer.blocks)}, at each of its {len(found):,} uses:"]
        for other in found[:MAX_USES_SHOWN]:
            where = _site(other)
            lines.append(
                f"- use at {where.line}:{where.column}: `{_shape(other.input_shape)} → {_shape(other.output_shape)}`"
                f" {other.call}"
            )
        if len(found) > MAX_USES_SHOWN:
            lines.append(f"- … and {len(found) - MAX_USES_SHOWN:,} more")
    return "\n".join(lines)


def kind_doc(kind: LayerKind) -> str:
    """A layer kind from the registry: its Keras class, what it is, its arguments."""
    params = ", ".join(f"`{p.key}` → `{p.keras}` ({'required' if p.required else p.default})" for p in kind.params)
    return f"**{kind.name}** · `{kind.keras_class}`: {kind.doc}" + (f"\n\narguments: {params}" if params else "")


def signature(block: BlockDef) -> str:
    params = ", ".join(p.name if p.default is None else f"{p.name}={p.default}" for p in block.params)
    return f"{block.name}({params})" if block.params else block.name


def line_shapes(analysis: Analysis, line_of: Callable[[int], int] | None = None) -> dict[int, str]:
    """For each line (0-based; ``line_of`` says which line an offset is on, by default as the parser counts
    lines) where layers end, the output shape after it: of the model for the spec's own lines, and the shapes
    at each use (distinct, in order) for lines of a block's body."""
    network = analysis.network
    if network is None:
        return {}

    def ends_on(span: Span) -> int:
        return span.end_line - 1 if line_of is None else line_of(span.end)

    body: dict[int, Span] = {}
    last: dict[int, NetLayer] = {}
    inside: dict[int, list[str]] = {}
    for layer in network.layers:
        site = _site(layer)
        line = ends_on(site)
        if line not in body or site.end >= body[line].end:
            body[line], last[line] = site, layer
        if layer.uses and layer.written is None:
            shapes = inside.setdefault(ends_on(layer.span), [])
            shape = _shape(layer.output_shape)
            if shape not in shapes:
                shapes.append(shape)
    shown = {line: "→ " + _shape(layer.output_shape) for line, layer in last.items()}
    for line, shapes in inside.items():
        if line not in shown:
            shown[line] = "→ " + " | ".join(shapes[:4]) + (" | …" if len(shapes) > 4 else "")
    return shown


# ---- completion -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completion:
    label: str
    kind: str  # "layer", "block", "argument", "value", "keyword", "parameter"
    detail: str = ""
    doc: str = ""
    insert: str | None = None


@dataclass
class _Open:
    name: str | None  # the kind or block a call's "(" belongs to; None for a group, pair or other bracket
    brace: bool = False
    keys: list[str] = field(default_factory=list)


def completions(analysis: Analysis, offset: int, blocks: dict[str, BlockDef]) -> list[Completion]:
    """What may be written at ``offset``: argument values after ``key=``, argument keys (or a block's
    parameters) inside a call, else layer kinds, blocks and keywords. ``blocks``: the blocks known (from
    the last text that parsed, when this one does not)."""
    text = analysis.text
    start = max(0, offset - _COMPLETION_WINDOW)
    if start:
        start = text.find("\n", start, offset) + 1 or offset
    context = _context(text[start:offset])
    if context is not None:
        call, key = context
        kind = None if call in blocks else KINDS.get(call) or KINDS.get(call.rstrip("0123456789"))  # conv64(
        if key is not None:
            return _values(kind.params_by_key.get(key) if kind else None)
        if kind is not None:
            params = {p.key: p for p in (*(kind.with_args.params if kind.with_args else ()), *kind.params)}
            return [
                Completion(p.key, "argument", p.describe(), f"`{p.keras}`, default {p.default}", f"{p.key}=")
                for p in params.values()
            ]
        if call in blocks:
            block = blocks[call]
            return [Completion(p.name, "parameter", signature(block), insert=f"{p.name}=") for p in block.params]
        return []
    found = [Completion(k.name, "layer", k.keras_class, kind_doc(k)) for k in KINDS.values()]
    found += [Completion(c.name, "layer", "(composite)", c.doc) for c in COMPOSITES.values()]
    found += [Completion(b.name, "block", signature(b)) for b in blocks.values()]
    found += [Completion(word, "keyword") for word in KEYWORDS]
    return found


def known_blocks(text: str, filename: str, offset: int, last: dict[str, BlockDef]) -> dict[str, BlockDef]:
    """The blocks completion offers while the text does not parse: those of the last text that did, and
    those defined in the lines before the cursor's (which usually still parse)."""
    found = dict(last)
    with contextlib.suppress(SpecError):
        found.update((b.name, b) for b in parse(text[: text.rfind("\n", 0, offset) + 1], filename=filename).blocks)
    return found


def _values(param: Param | None) -> list[Completion]:
    if param is None:
        return []
    if param.type == "bool":
        words: tuple[str, ...] = ("true", "false")
    elif param.type == "activation":
        words = ACTIVATIONS
    else:
        words = param.choices
    return [Completion(word, "value", param.describe()) for word in words]


def _context(prefix: str) -> tuple[str, str | None] | None:
    """(the call the cursor is directly inside, the key whose value is being written) from the parser's
    own terminals over the text before the cursor; None outside a call (or where the text does not lex)."""
    try:
        tokens = list(_lark().lex(prefix))
    except LarkError:
        return None
    if tokens and tokens[-1].end_pos == len(prefix) and tokens[-1].type in ("NAME", "INT", "FLOAT"):
        tokens.pop()  # the word being typed
    stack: list[_Open] = []
    for token in tokens:
        text = str(token)
        if token.type == "CALL":
            stack.append(_Open(text[:-1]))
        elif token.type == "WIDTH_OPEN":
            stack.append(_Open(text[:-1], brace=True))
        elif token.type == "CLOSE_CALL":
            name = stack.pop().name if stack else None
            stack.append(_Open(name))
        elif text.endswith(("(", "{")):
            stack.append(_Open(None, brace=text == "{"))
        elif text in (")", "}") and stack:
            stack.pop()
    if not stack or stack[-1].name is None or stack[-1].brace:
        return None
    if len(tokens) >= 2 and str(tokens[-1]) == "=" and tokens[-2].type == "NAME":
        return stack[-1].name or "", str(tokens[-2])
    if tokens and (str(tokens[-1]) == "," or tokens[-1].type == "CALL" or tokens[-1].type == "CLOSE_CALL"):
        return stack[-1].name or "", None
    return None

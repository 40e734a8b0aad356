"""Network → a Keras-style summary table (text, Markdown, HTML), or the same figures as JSON. No
TensorFlow involved.

Each row is a layer as resolved (``conv256(k=1)``, not the block's ``conv{4*f}(k=1, s=s)``), with the
block path it sits in (``stage[2]/identity[1]``: the second use of ``stage`` at the top level, the
first ``identity`` in it); a branching model adds Keras's "Connected to" column. ``depth=N`` shows
blocks nested N deep or more as one row each, with their totals (torchinfo's ``depth``: the top
level is depth 1).

Counting convention (Keras reports neither):
- MACs: multiply-accumulates per sample of Conv2D (out_h·out_w·k_h·k_w·(C_in/groups)·filters),
  DepthwiseConv2D (out_h·out_w·k_h·k_w·C_in·mult), SeparableConv2D (that plus out_h·out_w·C_in·mult·filters)
  and Dense (positions·inputs·units); bias additions, normalization, activation, pooling, Add and
  Concatenate are not counted.
- FLOPs = 2 × MACs.
- Activation memory: the elements of each layer's output per sample × 4 bytes (float32); the total
  is their sum, i.e. what a forward pass keeps for backpropagation, not peak inference memory.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from normdsl.diagnostics import Span, painted
from normdsl.layers import Shape
from normdsl.network import NetLayer, Network

BYTES_PER_VALUE = 4  # float32
SCHEMA: Final = "urn:normdsl:summary:1"  # the "schema" of as_json's output: normdsl/schemas/summary-1.json
Format = Literal["text", "json", "markdown", "html"]
FORMATS: tuple[str, ...] = get_args(Format)


def batch_shape(shape: Shape) -> str:
    """A shape as Keras prints it, with the batch dimension: (None, 216, 216, 256)."""
    return "(None, " + ", ".join(map(str, shape)) + ")"


def memory(n_bytes: float) -> str:
    """Bytes as Keras prints them: 27.57 KB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    raise AssertionError


# ---- block uses --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Use:
    """One use of a block, found in the layer list: the layers ``start`` to ``end`` (exclusive)."""

    name: str
    ordinal: int  # among the uses of ``name`` in the same parent use, from 1
    parent: _Use | None
    first: tuple[Span, tuple[str, ...]]  # its first layer's span and inner blocks: seen again, a new use starts
    start: int
    end: int = 0
    children: dict[str, int] = field(default_factory=dict)  # uses of each block directly inside, counted

    def label(self) -> str:
        """The name, numbered when its parent holds more than one use of it: identity[2]."""
        alone = self.parent is None or self.parent.children[self.name] == 1
        return self.name if alone else f"{self.name}[{self.ordinal}]"


def _uses(network: Network) -> list[tuple[_Use, ...]]:
    """Each layer's block uses, outermost first (``NetLayer.blocks`` with the uses told apart).

    The layers of one use are consecutive; a use of the same block ends where its first layer comes
    again (same place in the spec, same inner blocks). The layers of a
    composite (se) or a replaced block (--norm) all stand at their use: there a new place is a new
    use. NetLayer records block names, not uses, so a block whose first layer comes again inside it
    (``let b = (conv8 relu)*2``) looks like several uses, and uses of one place (``se*2``) like one."""
    layers = network.layers
    spanned = frozenset(c.name for c in network.composites) | frozenset(name for name, _ in network.replaced)
    root: dict[str, int] = {}
    top = _Use("", 0, None, (Span(0, 0, 0, 0, 0, 0), ()), 0, children=root)
    stack: list[_Use] = []
    found: list[tuple[_Use, ...]] = []
    for i, layer in enumerate(layers):
        blocks = layer.blocks
        keep = 0
        while (
            keep < len(stack)
            and keep < len(blocks)
            and stack[keep].name == blocks[keep]
            and not (stack[keep].start < i and _again(stack[keep], layer, keep, spanned))
        ):
            keep += 1
        for use in stack[keep:]:
            use.end = i
        del stack[keep:]
        for depth in range(keep, len(blocks)):
            parent = stack[-1] if stack else top
            counts = parent.children
            counts[blocks[depth]] = counts.get(blocks[depth], 0) + 1
            use = _Use(blocks[depth], counts[blocks[depth]], parent, (layer.span, blocks[depth + 1 :]), i)
            stack.append(use)
        found.append(tuple(stack))
    for use in stack:
        use.end = len(layers)
    return found


def _again(use: _Use, layer: NetLayer, depth: int, spanned: frozenset[str]) -> bool:
    """Whether ``layer`` starts the use's block anew: its first layer again (for a block whose layers
    stand at its use, another place)."""
    if use.name in spanned:
        return layer.span != use.first[0]
    return use.first == (layer.span, layer.blocks[depth + 1 :])


def _path(uses: Sequence[_Use]) -> str:
    return "/".join(use.label() for use in uses)


# ---- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """A row of the table: one layer, or a block use shown as one (``depth``)."""

    first: int  # the layers first..last of Network.layers
    last: int
    label: str  # conv256(k=1) (Conv2D); bottleneck (10 layers)
    path: str  # the block uses it sits in: stage[1]/bottleneck
    output_shape: Shape
    params: int
    macs: int
    activations: int
    inputs: tuple[int, ...]  # the layers outside the row it is applied to (-1: the model input)

    @property
    def number(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def rows(network: Network, depth: int | None = None) -> list[Row]:
    """The table's rows: every layer, or with ``depth`` every block use nested ``depth`` deep or more as one."""
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)):
        raise TypeError(f"summary(depth=...) must be a positive integer or None, got {type(depth).__name__}")
    if depth is not None and depth < 1:
        raise ValueError(f"summary(depth=...) must be at least 1 (the top level), got {depth}")
    layers = network.layers
    uses = _uses(network)
    out: list[Row] = []
    i = 0
    while i < len(layers):
        layer, shown = layers[i], uses[i]
        if depth is not None and len(shown) >= depth and shown[depth - 1].end - shown[depth - 1].start > 1:
            use = shown[depth - 1]
            inside = range(use.start, use.end)
            group = layers[use.start : use.end]
            inputs = tuple(dict.fromkeys(j for member in group for j in member.inputs if j not in inside))
            out.append(
                Row(
                    use.start,
                    use.end - 1,
                    f"{use.name} ({len(group)} layers)",
                    _path(shown[:depth]),
                    layers[use.end - 1].output_shape,
                    sum(m.params for m in group),
                    sum(m.macs for m in group),
                    sum(m.activations for m in group),
                    inputs,
                )
            )
            i = use.end
            continue
        label = f"{layer.call} ({layer.keras_class})"
        out.append(
            Row(
                i, i, label, _path(shown), layer.output_shape, layer.params, layer.macs, layer.activations, layer.inputs
            )
        )
        i += 1
    return out


COMPACT_ROWS = 40  # what a notebook shows of a network at once


def compact_depth(network: Network, most: int = COMPACT_ROWS) -> int | None:
    """The ``depth`` showing the most detail in at most ``most`` rows (None: every layer fits; 1 if nothing
    does), as a notebook shows a network."""
    if len(network.layers) <= most:
        return None
    deepest = max((len(layer.blocks) for layer in network.layers), default=0)
    for depth in range(deepest, 0, -1):
        if len(rows(network, depth)) <= most:
            return depth
    return 1


def _branching(found: Sequence[Row]) -> bool:
    """Whether a row takes another input than the row before it (Keras then shows "Connected to")."""
    return any(row.inputs != (found[k - 1].last if k else -1,) for k, row in enumerate(found))


def _connected(found: Sequence[Row]) -> Callable[[Row], str]:
    owner = {j: row.number for row in found for j in range(row.first, row.last + 1)}
    return lambda row: ", ".join("input" if j < 0 else owner[j] for j in row.inputs)


@dataclass(frozen=True, slots=True)
class _Table:
    """A table to print: title, header, alignment and cells."""

    title: str
    header: tuple[str, ...]
    left: tuple[bool, ...]  # each column left-aligned (text) or right-aligned (figures)
    cells: list[tuple[str, ...]]
    totals: list[str]


def _table(network: Network, depth: int | None) -> _Table:
    found = rows(network, depth)
    blocks = any(row.path for row in found)
    branching = _branching(found)
    connected = _connected(found)
    columns: list[tuple[str, bool, Callable[[Row], str]]] = [
        *([("#", False, lambda r: r.number)] if branching else []),
        ("Layer (type)", True, lambda r: r.label),
        *([("Block", True, lambda r: r.path)] if blocks else []),
        ("Output Shape", True, lambda r: batch_shape(r.output_shape)),
        ("Param #", False, lambda r: f"{r.params:,}"),
        ("MACs", False, lambda r: f"{r.macs:,}"),
        ("Act. memory", False, lambda r: memory(r.activations * BYTES_PER_VALUE)),
        *([("Connected to", True, connected)] if branching else []),
    ]
    activations = sum(layer.activations for layer in network.layers)
    return _Table(
        title=f'Model: "{network.name}"  (input {batch_shape(network.input_shape)})',
        header=tuple(name for name, _, _ in columns),
        left=tuple(left for _, left, _ in columns),
        cells=[tuple(cell(row) for _, _, cell in columns) for row in found],
        totals=[
            f"Total params: {network.params:,} ({memory(network.params * BYTES_PER_VALUE)})",
            f"Trainable params: {network.trainable:,} ({memory(network.trainable * BYTES_PER_VALUE)})",
            f"Non-trainable params: {network.non_trainable:,} ({memory(network.non_trainable * BYTES_PER_VALUE)})",
            f"MACs per sample: {network.macs:,} (FLOPs: {2 * network.macs:,})",
            f"Activation memory per sample: {memory(activations * BYTES_PER_VALUE)} (float32)",
        ],
    )


# ---- formats -----------------------------------------------------------------------------------


def text(network: Network, *, depth: int | None = None, color: bool = False) -> str:
    """The summary as Keras prints it, plus MACs and activation-memory columns (and the block path);
    with ``color`` (a terminal), the title, header and totals in bold as Keras's rich summary has them."""
    table = _table(network, depth)
    bold = functools.partial(painted, style="bold", color=color)
    widths = [max(len(row[i]) for row in [table.header, *table.cells]) for i in range(len(table.header))]

    def line(row: tuple[str, ...]) -> str:
        cells = zip(row, widths, table.left, strict=True)
        return " " + "  ".join(cell.ljust(w) if left else cell.rjust(w) for cell, w, left in cells).rstrip()

    rule = "─" * (sum(widths) + 2 * len(widths))
    out = [bold(table.title), rule, bold(line(table.header)), rule, *(line(row) for row in table.cells), rule]
    return "\n".join(out + [f" {bold(total)}" for total in table.totals])


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&$!])")


def _md(cell: str) -> str:
    """Text that Markdown shows as it is, on one line: the characters that start markup, HTML, an
    entity, math or a cell boundary backslash-escaped (CommonMark allows it for any punctuation)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(cell.split()))


def markdown(network: Network, *, depth: int | None = None) -> str:
    """The summary as a Markdown table (GitHub's), every cell escaped."""
    table = _table(network, depth)
    out = [_md(table.title), ""]
    out.append("| " + " | ".join(_md(h) for h in table.header) + " |")
    out.append("|" + "|".join(":---" if left else "---:" for left in table.left) + "|")
    out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in table.cells]
    out.append("")
    out += [_md(total) + "  " for total in table.totals]
    return "\n".join(out).rstrip() + "\n"


def html(network: Network, *, depth: int | None = None) -> str:
    """The summary as an HTML table, every text HTML-escaped."""
    table = _table(network, depth)
    import html  # (only for HTML)

    e = html.escape

    def cells(tag: str, row: tuple[str, ...]) -> str:
        aligned = zip(row, table.left, strict=True)
        return "".join(f'<{tag} style="text-align:{"left" if left else "right"}">{e(c)}</{tag}>' for c, left in aligned)

    out = ['<div class="normdsl-summary">', f"<p><b>{e(table.title)}</b></p>", "<table>"]
    out.append(f"<thead><tr>{cells('th', table.header)}</tr></thead>")
    out.append("<tbody>" + "".join(f"<tr>{cells('td', row)}</tr>" for row in table.cells) + "</tbody>")
    out.append("</table>")
    out.append("<p>" + "<br>".join(e(total) for total in table.totals) + "</p>")
    out.append("</div>")
    return "\n".join(out)


def one_line(network: Network) -> str:
    return f"{network.params:,} params ({network.trainable:,} trainable, {network.non_trainable:,} non-trainable), output {batch_shape(network.output_shape)}"


def as_dict(network: Network) -> dict[str, Any]:
    """The figures as JSON data, described by the JSON Schema ``normdsl/schemas/summary-1.json``."""
    uses = _uses(network)
    layers = [
        {
            "text": layer.text,
            "call": layer.call,
            "kind": layer.kind,
            "keras_class": layer.keras_class,
            "blocks": list(layer.blocks),
            "path": _path(uses[i]),
            "line": layer.span.line,
            "column": layer.span.column,
            "inputs": list(layer.inputs),
            "output_shape": [None, *layer.output_shape],
            "params": layer.params,
            "trainable": layer.trainable,
            "non_trainable": layer.non_trainable,
            "macs": layer.macs,
            "flops": layer.flops,
            "activations": layer.activations,
        }
        for i, layer in enumerate(network.layers)
    ]
    return {
        "schema": SCHEMA,
        "name": network.name,
        "input_shape": [None, *network.input_shape],
        "output_shape": [None, *network.output_shape],
        "output": network.output,
        "params": network.params,
        "trainable": network.trainable,
        "non_trainable": network.non_trainable,
        "macs": network.macs,
        "flops": 2 * network.macs,
        "activation_bytes": BYTES_PER_VALUE * sum(layer.activations for layer in network.layers),
        "layers": layers,
        "warnings": [
            {"message": d.message, "line": d.span.line, "column": d.span.column, "hint": d.hint}
            for d in network.warnings
        ],
    }


def as_json(network: Network) -> str:
    return json.dumps(as_dict(network), indent=2)


def summary(network: Network, format: Format = "text", *, depth: int | None = None) -> str:
    """The summary of a checked network as ``text`` (Keras's table), ``markdown``, ``html`` or
    ``json`` (every layer, with its inputs: the graph; ``depth`` applies to the tables)."""
    if not isinstance(network, Network):
        raise TypeError(f"summary() takes a checked Network (normdsl.check(...)), got {type(network).__name__}")
    if format == "json":
        if depth is not None:
            raise ValueError("summary(depth=...) applies to the tables; the JSON lists every layer")
        return as_json(network)
    tables: dict[str, Callable[..., str]] = {"text": text, "markdown": markdown, "html": html}
    if format not in tables:
        raise ValueError(f"summary(format=...) must be one of {', '.join(map(repr, FORMATS))}, got {format!r:.60}")
    return tables[format](network, depth=depth)


class _Summary:
    """``normdsl.summary``: call it for a network's summary, ``normdsl.summary(network, "markdown")``;
    its functions are this module's (``normdsl.summary.text``, ``as_json``, ``one_line``, ...)."""

    __slots__ = ()
    text = staticmethod(text)
    markdown = staticmethod(markdown)
    html = staticmethod(html)
    as_json = staticmethod(as_json)
    as_dict = staticmethod(as_dict)
    one_line = staticmethod(one_line)
    rows = staticmethod(rows)
    batch_shape = staticmethod(batch_shape)

    def __call__(self, network: Network, format: Format = "text", *, depth: int | None = None) -> str:
        return summary(network, format, depth=depth)

    def __repr__(self) -> str:
        return "<function normdsl.summary>"


# The package exports this object as normdsl.summary: a function, and this module's functions as its
# attributes (``from normdsl import summary; summary.text(n)`` keeps working).
callable_summary: Final = _Summary()

"""Normalization variants side by side, statically (no framework): ``normdsl compare`` and
``normdsl explain``.

A variant is a spec with a normalization given for its ``norm`` block (or as written); each is
checked as ``check`` would, and a variant that fails is a row with its problems, never the end of
the comparison. ``explain`` says, per normalization site, over which axes its statistics are
computed for that site's shape, how it groups channels, whether it depends on the batch and how
many weights it has.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from normdsl.check import check
from normdsl.diagnostics import SpecError
from normdsl.layers import KINDS, Shape
from normdsl.limits import DEFAULT_LIMITS, Limits
from normdsl.network import NORM, NetLayer, Network
from normdsl.parser import parse
from normdsl.summary import BYTES_PER_VALUE, batch_shape, memory


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant compared: a spec with a normalization."""

    name: str  # what tells it apart: gn(16), or resnet50.nd gn(16) when several specs are compared
    filename: str
    source: str
    norm: str | None  # the normalization given for the norm block (None: the spec's own)
    network: Network | None
    error: SpecError | None  # why it is not a valid model


def variants(
    specs: Sequence[tuple[str, str]],
    norms: Sequence[str] = (),
    *,
    replace: Mapping[str, str] | None = None,
    input_shape: Shape | None = None,
    limits: Limits = DEFAULT_LIMITS,
    scales: Sequence[str] = (),
    width: float | None = None,
    depth: float | None = None,
    round_for_groups: bool = False,
) -> list[Variant]:
    """Every spec (filename, text) with every normalization of ``norms`` and every named scale of
    ``scales`` (or as written), checked. An unknown scale raises check.ScaleError."""
    out = []
    for filename, text in specs:
        for scale in scales or (None,):
            for norm in norms or (None,):
                parts = [filename] if len(specs) > 1 or not (norms or scales) else []
                parts += [s for s in (scale, norm) if s is not None]
                try:
                    spec = parse(text, filename=filename, limits=limits)
                    network = check(
                        spec, norm=norm, replace=replace, input_shape=input_shape, limits=limits, scale=scale,
                        width=width, depth=depth, round_for_groups=round_for_groups,
                    )  # fmt: skip
                    out.append(Variant(" ".join(parts), filename, text, norm, network, None))
                except SpecError as error:
                    out.append(Variant(" ".join(parts), filename, text, norm, None, error))
    return out


# ---- the table ---------------------------------------------------------------------------------


def _norms(network: Network) -> list[NetLayer]:
    return [layer for layer in network.layers if (kind := KINDS.get(layer.kind)) is not None and kind.is_norm]


def _batch_dependent(network: Network) -> bool:
    """Whether some layer's output depends on the other samples of the batch (batch norm, in training)."""
    return any(layer.keras_class == "BatchNormalization" for layer in network.layers)


def row(variant: Variant) -> dict[str, Any]:
    """One variant's figures (None where it is not a valid model)."""
    net = variant.network
    if net is None:
        assert variant.error is not None
        errors = len(variant.error.errors)
        first = variant.error.errors[0].message if errors else "invalid"
        return {"variant": variant.name, "status": f"{errors} error{'s' if errors != 1 else ''}: {first}"}
    sites = Counter(layer.call for layer in _norms(net))
    return {
        "variant": variant.name,
        "params": net.params,
        "trainable": net.trainable,
        "non_trainable": net.non_trainable,
        "macs": net.macs,
        "activation_bytes": sum(layer.activations for layer in net.layers) * BYTES_PER_VALUE,
        "output": list(net.output_shape),
        "norm_sites": sum(sites.values()),
        "norms": ", ".join(f"{n} × {call}" for call, n in sites.items()),
        "batch_dependent": _batch_dependent(net),
        "status": "ok",
    }


COLUMNS = (
    ("variant", "Variant"),
    ("params", "Params"),
    ("trainable", "Trainable"),
    ("non_trainable", "Non-trainable"),
    ("macs", "MACs"),
    ("activation_bytes", "Act. memory"),
    ("output", "Output"),
    ("norms", "Normalizations"),
    ("batch_dependent", "Batch-dependent"),
    ("status", "Status"),
)


def _cell(key: str, value: object) -> str:
    if value is None:
        return "—"
    if key == "activation_bytes" and isinstance(value, int):
        return memory(value)
    if key == "output" and isinstance(value, list):
        return batch_shape(tuple(value))
    if key == "batch_dependent":
        return "yes (training)" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(found: Sequence[Variant], fmt: str = "text") -> str:
    """The comparison as a text table, ``markdown``, ``csv`` or ``json``; for text, each invalid
    variant's diagnostics in full below the table."""
    rows = [row(v) for v in found]
    if fmt == "json":
        return json.dumps({"variants": rows}, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, [key for key, _ in COLUMNS], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
        return out.getvalue().rstrip("\n")
    cells = [[title for _, title in COLUMNS]] + [[_cell(key, r.get(key)) for key, _ in COLUMNS] for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(_md(c) for c in line) + " |" for line in cells]
        return "\n".join([lines[0], "|" + "---|" * len(COLUMNS), *lines[1:]])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 or i >= 6 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    ]
    out_lines = [lines[0], "─" * len(lines[0]), *lines[1:]]
    for variant in found:
        if variant.error is not None:
            out_lines += ["", f"{variant.name}:", variant.error.render()]
    return "\n".join(out_lines)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def html_table(found: Sequence[Variant]) -> str:
    """The comparison as an HTML table, every text HTML-escaped; an invalid variant's row says why."""
    import html

    rows = [row(v) for v in found]
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="text-align:{"right" if isinstance(r.get(key), int) and key != "batch_dependent" else "left"}">'
            f"{html.escape(_cell(key, r.get(key)))}</td>"
            for key, _ in COLUMNS
        )
        + "</tr>"
        for r in rows
    )
    return f'<table class="normdsl-compare"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass(frozen=True, slots=True)
class Comparison:
    """What ``normdsl.compare`` returns: the variants, shown in a notebook as the comparison table."""

    variants: tuple[Variant, ...]

    def table(self, fmt: str = "text") -> str:
        return table(self.variants, fmt)

    def __str__(self) -> str:
        return table(self.variants)

    def __repr__(self) -> str:
        valid = sum(v.network is not None for v in self.variants)
        return f"<Comparison of {len(self.variants)} variants, {valid} valid>"

    def _repr_html_(self) -> str:
        return html_table(self.variants)

    def _repr_markdown_(self) -> str:
        return table(self.variants, "markdown") + "\n"


def comparison(
    *specs: str,
    norms: Sequence[str] = (),
    input_shape: Shape | None = None,
    scales: Sequence[str] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> Comparison:
    """``normdsl.compare``: spec texts (or ``(filename, text)`` pairs) × ``norms`` × ``scales``, checked side
    by side; a variant that fails is a row with its problems."""
    pairs = [
        (s[0], s[1]) if isinstance(s, tuple) else (f"<spec{i + 1}>" if len(specs) > 1 else "<spec>", s)
        for i, s in enumerate(specs)
    ]
    if not pairs or not all(isinstance(text, str) for _, text in pairs):
        raise TypeError("compare() takes spec texts (str), or (filename, text) pairs")
    return Comparison(tuple(variants(pairs, norms, input_shape=input_shape, scales=scales, limits=limits)))


def sites(found: Sequence[Variant]) -> str:
    """``--layers``: one row per normalization site that differs between the valid variants: its
    place, its channel count, and each variant's layer with its parameter count."""
    valid = [v for v in found if v.network is not None]
    if not valid:
        return "no valid variant"
    per = [_norms(v.network) for v in valid if v.network is not None]
    header = ["Site", "Channels", *(v.name or v.filename for v in valid)]
    lines = [header]
    for i in range(max(len(p) for p in per)):
        layers = [p[i] if i < len(p) else None for p in per]
        cells = [f"{layer.call} ({layer.params:,})" if layer else "—" for layer in layers]
        if len(set(cells)) == 1:
            continue
        first = next(layer for layer in layers if layer is not None)
        lines.append([_place(first), str(first.input_shape[-1]), *cells])
    if len(lines) == 1:
        return "the variants' normalization sites do not differ"
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join([text[0], "─" * len(text[0]), *text[1:]])


# ---- explain -----------------------------------------------------------------------------------


def _positions(shape: Shape) -> str:
    """The axes besides channels: (H, W) for images, (L) for sequences."""
    return {3: "(H, W)", 2: "(L)"}.get(len(shape), "(" + ", ".join(f"d{i}" for i in range(len(shape) - 1)) + ")")


def explain_layer(layer: NetLayer) -> str:
    """What one normalization site computes, for its input's shape."""
    shape, channels = layer.input_shape, layer.input_shape[-1]
    config = dict(layer.kwargs)
    weights = f"{layer.trainable:,} trainable" + (
        f", {layer.non_trainable:,} non-trainable weights" if layer.non_trainable else " weights"
    )
    where = f"{layer.call} at {_place(layer)} on {shape}"
    if layer.keras_class == "BatchNormalization":
        what = f"statistics per channel over the batch and {_positions(shape)}, {channels} channels"
        batch = "batch-dependent in training (moving averages at inference)"
    elif layer.keras_class == "LayerNormalization":
        what = f"statistics per sample and position over the {channels} channels"
        batch = "batch-independent"
    elif layer.keras_class == "GroupNormalization":
        groups = config.get("groups", 32)
        groups = channels if groups == -1 else groups
        per = channels // groups if isinstance(groups, int) and groups else channels
        what = (
            f"statistics per sample over {_positions(shape)} and {per} channel{'s' if per != 1 else ''} per group,"
            f" {groups} groups"
        )
        batch = "batch-independent"
    else:
        what, batch = f"a {layer.keras_class}", "see its documentation"
    return f"{where}: {what}; {batch}; {weights}"


def _place(layer: NetLayer) -> str:
    """Where a site is: the layer, or for the norm placeholder the use of norm (its definition is one place)."""
    span = layer.uses[-1] if layer.blocks and layer.blocks[-1] == NORM and layer.uses else layer.span
    return f"{span.line}:{span.column}"


def explain(network: Network) -> str:
    found = _norms(network)
    if not found:
        return "the model has no normalization layers" + (f" (is there a {NORM} block?)" if network.spec else "")
    return "\n".join(explain_layer(layer) for layer in found)

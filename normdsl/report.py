"""``normdsl report``: one self-contained HTML file (no script, no network, nothing to fetch) with each
spec's source and its diagnostics inline, the comparison table of the variants (several norms or
specs), and each valid variant's summary table and diagram. No framework involved."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from normdsl import compare, diagrams
from normdsl.compare import Variant
from normdsl.diagnostics import Diagnostic, render_all_html
from normdsl.layers import Shape
from normdsl.summary import html as summary_html
from normdsl.summary import one_line

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;color:#212529;
padding:0 16px}
h1{font-size:1.6em}h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #dee2e6}h3{font-size:1.1em}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #dee2e6;padding:3px 8px;white-space:nowrap}th{background:#f1f3f5}
pre,code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:13px}
.source{background:#f8f9fa;border:1px solid #dee2e6;padding:8px;overflow-x:auto}
.source .no{color:#868e96;display:inline-block;width:3.5em;text-align:right;margin-right:1em;user-select:none}
mark.error{background:#ffc9c9}mark.warning{background:#ffec99}
.diagnostic{display:block;margin:2px 0 6px 4.5em;padding:4px 8px;border-left:4px solid;white-space:pre-wrap}
.diagnostic.error{border-color:#e03131;background:#fff5f5}.diagnostic.warning{border-color:#f08c00;background:#fff9db}
.wide{overflow-x:auto}.normdsl-compare td:last-child{white-space:normal;min-width:16em}
.ok{color:#2b8a3e}.failed{color:#c92a2a}
.diagram{overflow-x:auto;border:1px solid #dee2e6;padding:8px}
.normdsl-error{background:#fff5f5;padding:8px;white-space:pre-wrap}
"""


def report(
    specs: Sequence[tuple[str, str]],
    norms: Sequence[str] = (),
    *,
    replace: Mapping[str, str] | None = None,
    input_shape: Shape | None = None,
    scale: str | None = None,
    width: float | None = None,
    depth: float | None = None,
    round_for_groups: bool = False,
    levels: int | None = None,
) -> tuple[str, list[Variant]]:
    """The report's HTML for specs (filename, text) × norms, and the variants it shows."""
    found = compare.variants(
        specs, norms, replace=replace, input_shape=input_shape, scales=(scale,) if scale else (), width=width,
        depth=depth, round_for_groups=round_for_groups,
    )  # fmt: skip
    return page(found, levels=levels), found


def page(found: Sequence[Variant], *, levels: int | None = None) -> str:
    e = html.escape
    names = ", ".join(dict.fromkeys(v.filename for v in found))
    valid = sum(v.network is not None for v in found)
    out = [
        "<!DOCTYPE html>",
        f"<!-- {diagrams.MARK} -->",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="generator" content="normdsl">',
        f"<title>{e(diagrams.clean(names, 200))} — normdsl report</title>",
        f"<style>{STYLE}</style></head>",
        "<body>",
        f"<h1>normdsl report: {e(diagrams.clean(names, 200))}</h1>",
        f"<p>{valid} of {len(found)} variant{'s' if len(found) != 1 else ''} valid.</p>",
    ]
    if len(found) > 1:
        out += ["<h2>Comparison</h2>", f'<div class="wide">{compare.html_table(found)}</div>']
    for filename, source in dict.fromkeys((v.filename, v.source) for v in found):
        mine = [v for v in found if v.filename == filename and v.source == source]
        out.append(f"<h2>Source: {e(diagrams.clean(filename, 200))}</h2>")
        out.append(_source(source, filename, mine))
    for v in found:
        title = e(diagrams.clean(v.name or v.filename, 200))
        if v.network is None:
            out.append(f'<h2>{title}: <span class="failed">not a valid model</span></h2>')
            continue
        net = v.network
        out.append(f'<h2>{title}: <span class="ok">{e(one_line(net))}</span></h2>')
        out.append("<h3>Summary</h3>")
        out.append(summary_html(net, depth=levels))
        out.append("<h3>Diagram</h3>")
        try:
            picture = diagrams.svg(net, depth=levels)
        except diagrams.DiagramTooLarge as exc:
            picture = f"<p>{e(str(exc))}</p>"
        out.append(f'<div class="diagram">{picture}</div>')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _source(source: str, filename: str, variants: Sequence[Variant]) -> str:
    """The spec's lines numbered, each line's problems (of every variant) marked in it and said below it;
    problems in other text (a used file, --norm's value) after the listing."""
    here: dict[int, list[tuple[str, Diagnostic]]] = {}
    elsewhere: list[tuple[str, Diagnostic]] = []
    seen: set[tuple[str, str, int, int]] = set()
    for v in variants:
        found = v.error.diagnostics if v.error is not None else v.network.warnings if v.network is not None else ()
        for d in found:
            key = (d.severity, d.message, d.span.start, d.span.end)
            if key in seen:
                continue
            seen.add(key)
            who = v.name if len(variants) > 1 else ""
            if d.elsewhere is None and 1 <= d.span.line <= source.count("\n") + 1:
                here.setdefault(d.span.line, []).append((who, d))
            else:
                elsewhere.append((who, d))
    lines = source.split("\n")
    out = []
    for no, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        marked = _marked(line, [d for _, d in here.get(no, [])], no)
        said = []
        for who, d in here.get(no, []):
            label = f"{who}: " if who else ""
            hint = f"\nhint: {d.hint}" if d.hint else ""
            text = diagrams.visible(f"{label}{d.severity}: {d.message}{hint}")[:2000]
            said.append(f'<span class="diagnostic {d.severity}">{html.escape(text)}</span>')
        out.append(f'<span class="no">{no}</span>{marked}' + "".join(said))
    out = ['<pre class="source">' + "\n".join(out) + "</pre>"]
    if elsewhere:
        out.append("<h3>Problems in other text</h3>")
        for who, d in elsewhere:
            label = f"{html.escape(who)}: " if who else ""
            out.append(f'<pre class="normdsl-error">{label}{render_all_html([d], source, filename)}</pre>')
    return "\n".join(out)


def _marked(line: str, found: Sequence[Diagnostic], no: int) -> str:
    """The line, escaped, with each problem's part of it in a ``<mark>`` (the first of overlapping ones)."""
    cuts: list[tuple[int, int, str]] = []
    for d in found:
        start = d.span.column - 1
        end = d.span.end_column - 1 if d.span.end_line == no else len(line)
        start, end = max(0, min(start, len(line))), max(0, min(max(end, start + 1), len(line)))
        if end > start and all(end <= a or start >= b for a, b, _ in cuts):
            cuts.append((start, end, d.severity))
    out, at = [], 0
    for start, end, severity in sorted(cuts):
        out.append(html.escape(_visible(line[at:start])))
        out.append(f'<mark class="{severity}">{html.escape(_visible(line[start:end]))}</mark>')
        at = end
    out.append(html.escape(_visible(line[at:])))
    return "".join(out)


def _visible(text: str) -> str:
    """Spec text as shown in the report: characters XML cannot hold and direction overrides replaced."""
    return diagrams.visible(text)

"""The ``%%normdsl`` cell magic (``%load_ext normdsl``): the cell is a spec, checked; its diagnostics are
shown with the offending text marked, or its summary table and diagram, and the ``Network`` (with
``--build``, the ``keras.Model`` too) is bound to a variable of the notebook. IPython is imported here
only, when the extension is loaded."""

from __future__ import annotations

import argparse
import html as _html
import keyword
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from normdsl.check import ScaleError, check
from normdsl.diagnostics import SpecError, render_all_html
from normdsl.diagrams import DiagramTooLarge, svg
from normdsl.network import Network
from normdsl.parser import parse
from normdsl.summary import compact_depth, html, markdown


def _shape(text: str) -> tuple[int, ...]:
    from normdsl.cli import _shape as shape  # the command line's --input, its checks and messages

    return shape(text)


def _name(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise argparse.ArgumentTypeError(f"expected a Python variable name, got {text[:80]!r}")
    return text


class Shown:
    """What a cell shows: HTML for notebooks (and Markdown for other front ends)."""

    def __init__(self, html_text: str, markdown: str) -> None:
        self.html, self.markdown = html_text, markdown

    def _repr_html_(self) -> str:
        return self.html

    def _repr_markdown_(self) -> str:
        return self.markdown


def shown(network: Network, levels: int | None = None) -> Shown:
    """A checked network as a cell shows it: warnings, the summary table, the diagram (blocks collapsed to fit
    about 40 rows unless ``levels`` says)."""
    levels = compact_depth(network) if levels is None else levels
    parts = []
    if network.warnings:
        warnings = render_all_html(network.warnings, network.source, network.filename)
        parts.append(f'<pre class="normdsl-warning">{warnings}</pre>')
    parts.append(html(network, depth=levels))
    try:
        parts.append(f'<div class="normdsl-diagram-box" style="overflow-x:auto">{svg(network, depth=levels)}</div>')
    except DiagramTooLarge as exc:
        parts.append(f"<p>{_html.escape(str(exc))}</p>")
    return Shown("\n".join(parts), markdown(network, depth=levels))


@magics_class
class NormdslMagics(Magics):  # (IPython's decorators and display are untyped: see pyproject's mypy section)
    @magic_arguments()
    @argument("-o", "--output", type=_name, metavar="NAME", help="bind the checked Network to NAME")
    @argument("--build", type=_name, metavar="NAME", help="also build the keras.Model and bind it to NAME")
    @argument("--norm", metavar="LAYER", help="replace the spec's norm placeholder, e.g. 'gn(16)'")
    @argument("--input", type=_shape, metavar="H,W,C", help="override the spec's input shape")
    @argument("--set", action="append", metavar="BLOCK=LAYERS", help="replace a block (repeatable)")
    @argument("--scale", metavar="NAME", help="one of the spec's named scales")
    @argument("--levels", type=int, metavar="N", help="collapse blocks nested N deep or more")
    @cell_magic
    def normdsl(self, line: str, cell: str) -> None:
        """Check the cell as a normdsl spec; show its summary and diagram (or its diagnostics)."""
        try:
            words = shlex.split(line)  # (IPython's parse_argstring keeps the quotes)
        except ValueError as exc:
            raise UsageError(f"%%normdsl {line[:80]}: {exc}") from None
        args = self.normdsl.parser.parse_args(words)
        replace = {}
        for item in args.set or ():
            name, sep, layers = item.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"--set expects BLOCK=LAYERS, got {item[:80]!r}")
            replace[name.strip()] = layers
        try:
            network = check(
                parse(cell, filename="<cell>"),
                norm=args.norm,
                input_shape=args.input,
                replace=replace,
                scale=args.scale,
            )
        except SpecError as exc:
            display(exc)
            return
        except ScaleError as exc:
            display(Shown(f'<pre class="normdsl-error">{_html.escape(str(exc))}</pre>', _html.escape(str(exc))))
            return
        namespace = self.shell.user_ns if self.shell is not None else {}
        if args.output:
            namespace[args.output] = network
        if args.build:
            from normdsl.emit_keras import build_model

            namespace[args.build] = build_model(network)
        display(shown(network, args.levels))


def register(ipython: Any) -> None:
    ipython.register_magics(NormdslMagics)

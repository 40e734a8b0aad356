"""Network → Python source, through a Jinja2 template in templates/ and black.

Templates get a render-ready model (``SourceModel``) in which every piece of code is already a
``repr()`` of a validated value or a fixed word; they only loop over it. The result is formatted
with black and checked: it must compile and contain only the calls and imports expected.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, fields
from pathlib import Path

import jinja2

from normdsl import __version__
from normdsl._paths import data_dir
from normdsl.ast import Spec
from normdsl.check import Network, check
from normdsl.diagnostics import RenderError, one_line
from normdsl.layers import Shape
from normdsl.program import LINE_LENGTH, Function, Statement, program
from normdsl.summary import batch_shape
from normdsl.writer import MARKER


@dataclass(frozen=True, slots=True)
class SourceModel:
    """What a template receives (besides ``network``): code fragments that are safe to paste."""

    marker: str
    spec_file: str  # the spec's file name, escaped for a comment (not for a docstring)
    title: str  # escaped for the docstring
    spec_lines: tuple[str, ...]  # escaped for a docstring
    totals: str
    input_shape: str
    name: str
    functions: tuple[Function, ...]  # one per spec block the model uses: name, signature, comment, body
    body: tuple[Statement, ...]  # build_model's statements (code, comment, trailing, body for loops)
    output: str  # the variable holding the model's output
    version: str
    # for training templates (train, notebook)
    head: str  # softmax | logits | added: how the spec's output meets a classification loss
    head_note: str  # that, in words, for the generated file
    classes: int  # the head's classes (10 by default when the template adds the head)
    loss: str  # the Keras loss, as code
    output_rank: int
    sync_bn: bool  # the spec uses bn(sync=true)
    strategy: str  # the --strategy the script defaults to, as code
    out_dir: str  # where the script writes checkpoints by default, as code
    train_title: str
    notebook_title: str


def render(
    spec: Spec | Network | str,
    template: str = "model",
    *,
    input_shape: Shape | None = None,
    norm: str | None = None,
    strategy: str = "default",
    template_dir: Path | None = None,
) -> str:
    """The generated file for a spec: a black-formatted module (NAME.py.j2 templates) or a
    validated Jupyter notebook (NAME.ipynb.j2 templates, cells separated by ``# %%`` lines)."""
    network = spec if isinstance(spec, Network) else check(spec, input_shape=input_shape, norm=norm)
    suffix = template_suffix(template, template_dir)
    env = _environment(str(template_dir) if template_dir else str(data_dir("templates")))
    text = env.get_template(f"{template}{suffix}.j2").render(
        network=network, **_fields(source_model(network, strategy=strategy))
    )
    if suffix == ".ipynb":
        return _notebook(text, template)
    code = _black(text, template)
    _safety_check(code, template)
    return code


def template_suffix(template: str, template_dir: Path | None = None) -> str:
    """``.py`` or ``.ipynb``: what a template makes (ValueError for an unknown template)."""
    folder = template_dir or data_dir("templates")
    for suffix in (".py", ".ipynb"):
        if (folder / f"{template}{suffix}.j2").is_file() and not template.startswith("_"):
            return suffix
    raise ValueError(f"no template named {template!r} (templates: {', '.join(templates(template_dir))})")


def templates(template_dir: Path | None = None) -> list[str]:
    folder = template_dir or data_dir("templates")
    names = [p.name.removesuffix(".j2").rsplit(".", 1)[0] for p in folder.glob("*.j2")]
    return sorted(n for n in names if not n.startswith("_"))


def _black(text: str, template: str) -> str:
    import black  # imported here: it is slow to import, and parse/check never need it

    try:
        return black.format_str(text, mode=black.Mode(line_length=LINE_LENGTH))
    except black.parsing.InvalidInput as exc:
        raise RenderError(f"template {template!r} rendered code black cannot parse ({exc}):\n{text}") from None


def _safety_check(code: str, template: str) -> None:
    problems = unexpected_code(code)
    if problems:
        raise RenderError(f"template {template!r} rendered unexpected code: {'; '.join(problems)}")


def _notebook(text: str, template: str) -> str:
    """Percent-format text (``# %%`` code cells, ``# %% [markdown]`` cells) → a validated notebook."""
    try:
        import nbformat
    except ImportError:
        raise ValueError('notebook templates need nbformat: pip install "normdsl[notebook]"') from None
    cells = []
    for i, chunk in enumerate(("\n" + text).split("\n# %%")[1:]):
        kind, _, body = chunk.partition("\n")
        if kind.strip() == "[markdown]":
            lines = [line.removeprefix("#").removeprefix(" ") for line in body.strip("\n").splitlines()]
            cell = nbformat.v4.new_markdown_cell("\n".join(lines))  # type: ignore[no-untyped-call]
        else:
            cell = nbformat.v4.new_code_cell(_black(body.strip("\n") + "\n", template).rstrip("\n"))  # type: ignore[no-untyped-call]
        cell.id = f"cell-{i}"  # deterministic ids: the same spec gives the same notebook
        cells.append(cell)
    _safety_check("\n".join(c.source for c in cells if c.cell_type == "code"), template)
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["normdsl"] = {"generated": True, "version": __version__}  # how `build` knows its own output
    nbformat.validate(notebook)
    return str(nbformat.writes(notebook)) + "\n"  # type: ignore[no-untyped-call]


@functools.cache
def _environment(folder: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _fields(model: SourceModel) -> dict[str, object]:
    return {f.name: getattr(model, f.name) for f in fields(model)}


def source_model(network: Network, *, strategy: str = "default") -> SourceModel:
    spec_file = one_line(Path(network.filename).name)
    structure = program(network)
    head = classification_head(network)
    return SourceModel(
        marker=MARKER,
        spec_file=spec_file,
        title=_docstring_line(f"Keras model {network.name!r}, generated by normdsl {__version__} from {spec_file}."),
        spec_lines=tuple(_docstring_line(line) for line in network.source.strip("\n").splitlines()),
        totals=totals_line(network),
        input_shape=repr(tuple(network.input_shape)),
        name=repr(network.name),
        functions=structure.functions,
        body=structure.body,
        output=structure.output,
        version=__version__,
        head=head.kind,
        head_note=head.note,
        classes=head.classes,
        loss=head.loss,
        output_rank=len(network.output_shape),
        sync_bn=any(dict(layer.kwargs).get("synchronized") is True for layer in network.layers),
        strategy=repr(strategy),
        out_dir=repr(f"runs/{network.name}"),
        train_title=_docstring_line(
            f"Trains the Keras model {network.name!r} of {spec_file}; generated by normdsl {__version__}."
        ),
        notebook_title=one_line(f"Training {network.name} (from {spec_file})"),
    )


@dataclass(frozen=True, slots=True)
class Head:
    kind: str
    classes: int
    loss: str
    note: str


def classification_head(network: Network) -> Head:
    """How a training template meets the spec's output: its own softmax or logits, or an added head."""
    last = network.layers[network.output] if network.output >= 0 else None
    if last is not None and len(network.output_shape) == 1:
        classes = network.output_shape[0]
        activation = dict(last.kwargs).get("activation") if last.keras_class == "Dense" else None
        if activation == "softmax" or (last.keras_class == "Activation" and last.args == ("softmax",)):
            note = f"the spec ends in a softmax over {classes} classes ({one_line(last.text)}): sparse categorical cross-entropy."
            return Head("softmax", classes, "keras.losses.SparseCategoricalCrossentropy()", note)
        if last.keras_class == "Dense" and activation in (None, "linear"):
            note = f"the spec ends in {classes} logits ({one_line(last.text)}): sparse categorical cross-entropy from logits."
            return Head("logits", classes, "keras.losses.SparseCategoricalCrossentropy(from_logits=True)", note)
    pooling = {3: "global average pooling and ", 1: ""}.get(len(network.output_shape), "flatten and ")
    note = (
        f"the spec has no classifier head (its output is {batch_shape(network.output_shape)}), so this adds "
        f"{pooling}a softmax dense layer with one unit per class (10 for synthetic data, one per "
        "sub-folder with data), trained with sparse categorical cross-entropy."
    )
    return Head("added", 10, "keras.losses.SparseCategoricalCrossentropy()", note)


def totals_line(network: Network) -> str:
    return (
        f"{network.params:,} parameters ({network.trainable:,} trainable, {network.non_trainable:,} non-trainable); "
        f"output {batch_shape(network.output_shape)}; {network.macs:,} MACs per sample"
    )


def _docstring_line(line: str) -> str:
    """A spec line safe inside a triple-quoted docstring: backslashes doubled, the unprintable and \"\"\" escaped."""
    escaped = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line.replace("\\", "\\\\")
    )
    return escaped.replace('"""', '\\"\\"\\"').rstrip()


# ---- the safety check on generated code --------------------------------------------------------

# What generated code may import and call. Spec-derived text only ever reaches it as identifiers
# and repr() of validated values (program.py); this check is the net behind that.
_ALLOWED_MODULES = {
    "tensorflow",
    "tensorflow.keras",
    "numpy",
    "argparse",
    "json",
    "warnings",
    "pathlib",
    "matplotlib.pyplot",
}
_ALLOWED_ROOTS = {"keras", "layers", "tf", "np", "argparse", "json", "warnings", "Path", "plt", "__doc__"}
_BUILTINS = {
    "range",
    "print",
    "len",
    "int",
    "float",
    "str",
    "dict",
    "list",
    "tuple",
    "max",
    "min",
    "sum",
    "zip",
    "SystemExit",
}
_FORBIDDEN = {"exec", "eval", "compile", "__import__", "open", "globals", "locals", "vars", "getattr", "setattr"}
_FORBIDDEN |= {
    "delattr",
    "breakpoint",
    "input",
    "os",
    "sys",
    "subprocess",
    "shutil",
    "socket",
    "importlib",
    "__builtins__",
}


def unexpected_code(code: str) -> list[str]:
    """Anything in generated code beyond what the templates need (empty: all is as expected).

    Allowed: imports of TensorFlow/Keras, numpy, matplotlib and a few harmless standard modules;
    calls to those, to Keras layers applied to variables, to the module's own functions and to a
    few builtins, and methods of the module's own variables. Never exec, eval, open, os, ...
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"does not parse: {exc}"]
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assigned = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    assigned |= {a.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for a in node.args}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [module] if module else [a.name for a in node.names]
            found += [f"import {name}" for name in names if name not in _ALLOWED_MODULES]
        elif isinstance(node, ast.Name) and node.id in _FORBIDDEN:
            found.append(f"name {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr != "__doc__":
            found.append(f"attribute {node.attr}")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            root = _root(node.func)
            if not (name in _BUILTINS or root in own | _ALLOWED_ROOTS | assigned or _is_layer_application(node)):
                found.append(f"call {name}")
    return found


def _root(node: ast.expr) -> str:
    """The variable an expression starts from: x of x.reshape(...).astype, out of (out / "a").write_text."""
    while not isinstance(node, ast.Name):
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.BinOp):
            node = node.left
        else:
            return ""
    return node.id


def _is_layer(name: str) -> bool:
    return name.startswith("layers.") and name[7:].isidentifier()


def _is_layer_application(node: ast.Call) -> bool:
    """``layers.Conv2D(...)(x)`` or ``layers.Add()([a, b])``: a layer applied to variables."""
    if not (isinstance(node.func, ast.Call) and _is_layer(ast.unparse(node.func.func))) or node.keywords:
        return False
    if len(node.args) != 1:
        return False
    arg = node.args[0]
    return isinstance(arg, ast.Name) or (isinstance(arg, ast.List) and all(isinstance(e, ast.Name) for e in arg.elts))

"""Network → Python source, through a Jinja2 template in templates/ and black.

Templates get a render-ready model (``SourceModel``) in which every piece of code is already
:class:`PyCode` (made of typed values) and every piece of spec-derived text :class:`SafeText`; they
only loop over it. The environment prints nothing else: a plain string reaching ``{{ }}`` is an
error (spec text goes through the ``text`` filter, which is :func:`safe_text`). Templates, ours and
a user's ``--template-dir`` alike, run in Jinja's immutable sandbox; a ``--template-dir`` is searched
before our folder, so its templates may import our macros and templates (or replace them). The
result is formatted with black and checked by :mod:`normdsl.safety`. A mistake in a user's template
(syntax, an undefined name, a sandbox refusal, code black or the safety check refuses) is a
:class:`BadTemplate`: a diagnostic at the template's line.

A comparison template (named ``compare...``) renders several variants of one spec into one file
(:func:`render_variants`): a build function per variant (``build_bn``, ``build_gn_16``), and the
block functions of each variant that an earlier one does not define the same way (a block whose code
differs gets another name through the program's Namespace).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Unpack

import jinja2
import jinja2.sandbox
import markupsafe

from normdsl import target_keras
from normdsl._paths import data_dir
from normdsl._version import __version__
from normdsl.ast import IDENTIFIER, Spec
from normdsl.check import Options, check
from normdsl.compare import Variant
from normdsl.diagnostics import Diagnostic, RenderError, Span, SpecError, did_you_mean
from normdsl.network import Network
from normdsl.program import program
from normdsl.pysource import LINE_LENGTH, Function, PyCode, SafeText, Statement, literal, safe_text
from normdsl.safety import MODULES, unexpected_code
from normdsl.summary import batch_shape
from normdsl.util import paused_gc
from normdsl.writer import MARKER


@dataclass(frozen=True, slots=True)
class SourceModel:
    """What a template receives (besides ``network``): code fragments that are safe to paste."""

    marker: PyCode
    spec_file: SafeText  # the spec's file name
    title: SafeText
    spec_lines: tuple[SafeText, ...]
    totals: SafeText
    input_note: SafeText  # empty, or that the input shape was given at build time (not the spec's)
    input_shape: PyCode
    name: PyCode
    imports: tuple[PyCode, ...]  # plugin layers' imports: from mypackage.layers import Scale
    functions: tuple[Function, ...]  # one per spec block the model uses: name, signature, comment, body
    body: tuple[Statement, ...]  # build_model's statements (code, comment, trailing, body for loops)
    output: PyCode  # the variable holding the model's output
    version: SafeText
    # for training templates (train, notebook)
    head: str  # softmax | logits | added: how the spec's output meets a classification loss (for {% if %})
    head_note: SafeText  # that, in words, for the generated file
    classes: int  # the head's classes (10 by default when the template adds the head)
    loss: PyCode  # the Keras loss
    output_rank: int
    sync_bn: bool  # the spec uses bn(sync=true)
    strategy: PyCode  # the --strategy the script defaults to
    legacy_keras: bool  # the code imports tf.keras, which may be Keras 2 (for --strategy multiworker), not keras
    out_dir: PyCode  # where the script writes checkpoints by default
    train_title: SafeText
    notebook_title: SafeText
    # for comparison templates (compare, compare-notebook): the variants, one for other templates
    variants: tuple[VariantSource, ...]
    failed: tuple[FailedVariant, ...]  # variants that are no valid model (the checker's first error)
    spec_string: PyCode  # the spec's file name as a Python string (for the figure's title)
    compare_dir: PyCode  # where the comparison writes its results by default
    compare_title: SafeText


@dataclass(frozen=True, slots=True)
class VariantSource:
    """One variant of a comparison as the compare templates print it."""

    label: SafeText  # the variant as given (its --norm text, or the model's name)
    string: PyCode  # the same text (through safe_text) as a Python string: for tables, legends, files
    function: PyCode  # its build function: build_bn, build_gn_16
    functions: tuple[Function, ...]  # its block functions that no earlier variant defines the same way
    body: tuple[Statement, ...]
    output: PyCode
    totals: SafeText


@dataclass(frozen=True, slots=True)
class FailedVariant:
    """A variant that is no valid model: reported by the generated code, never built."""

    label: SafeText
    string: PyCode
    problem: SafeText  # the checker's first error
    reason: PyCode  # the same, as a Python string


def render(
    spec: Spec | Network | str,
    template: str = "model",
    *,
    strategy: str = "default",
    template_dir: Path | None = None,
    **options: Unpack[Options],
) -> str:
    """The generated file for a spec: a black-formatted module (NAME.py.j2 templates) or a
    validated Jupyter notebook (NAME.ipynb.j2 templates, cells separated by ``# %%`` lines); for a
    spec or its text, ``options`` are check()'s."""
    network = spec if isinstance(spec, Network) else check(spec, **options)
    with paused_gc():  # many small objects, no cycles: a collector pass over a big heap (TensorFlow's) is wasted
        return _render(network, template, strategy, template_dir)


def render_variants(
    found: Sequence[Variant],
    template: str = "compare",
    *,
    strategy: str = "default",
    template_dir: Path | None = None,
) -> str:
    """One file for several variants of a spec (``compare.variants``), with a comparison template:
    a build function per valid variant; the invalid ones are named with their first problem. The
    valid variants must meet a classification loss the same way (the same head)."""
    valid = [v.network for v in found if v.network is not None]
    if not valid:
        raise ValueError("no variant is a valid model")
    with paused_gc():
        return _render(valid[0], template, strategy, template_dir, found)


def compares(template: str) -> bool:
    """Whether a template renders several variants (``compare``, ``compare-notebook``: named compare...)."""
    return template.startswith("compare")


def _render(
    network: Network, template: str, strategy: str, template_dir: Path | None, found: Sequence[Variant] = ()
) -> str:
    suffix = template_suffix(template, template_dir)
    user = _folders(template_dir)[:-1]  # the user's folder, searched first
    loaded = _load(f"{template}{suffix}.j2", template_dir)
    try:
        reserved, failed = _names(loaded) | MODULES, None
    except Exception as exc:  # a mistake in the template: said below, in the words of the user's network
        reserved, failed = frozenset(MODULES), exc
    model = _fields(source_model(network, strategy=strategy, reserved=reserved, variants=found))
    try:
        text = loaded.render(network=network, **model)
        if failed is not None:  # (it fails only for the tiny network: its names are unknown)
            raise failed
    except Exception as exc:  # undefined names, the sandbox's refusals, a raw string printed, ...
        raise _template_error(exc, user) from None
    # Our templates and the Keras target write black's layout themselves (tests check that black changes
    # nothing); a user's template is formatted by black.
    file = str(loaded.filename)
    own = template_dir is None
    plugins = _plugins(network).union(*(_plugins(v.network) for v in found if v.network is not None))
    if suffix == ".ipynb":
        return _notebook(text, file, own=own, plugins=plugins)
    code = text if own else _black(text, file)
    _safety_check(code, file, own=own, module=True, plugins=plugins)
    return code


def template_names(template: str = "model", template_dir: Path | None = None) -> frozenset[str]:
    """The names no identifier of a spec takes in this template's code: every name the code defines
    or reads, and the library names the safety check knows (``tf`` is TensorFlow in any template)."""
    loaded = _load(f"{template}{template_suffix(template, template_dir)}.j2", template_dir)
    try:
        return _names(loaded) | MODULES
    except Exception as exc:
        raise _template_error(exc, _folders(template_dir)[:-1]) from None


def _load(file: str, template_dir: Path | None) -> jinja2.Template:
    """The template, loaded (a BadTemplate for a syntax error)."""
    folders = _folders(template_dir)
    try:
        return _environment(*folders).get_template(file)
    except Exception as exc:
        raise _template_error(exc, folders[:-1]) from None


@functools.lru_cache(maxsize=64)
def _names(template: jinja2.Template) -> frozenset[str]:
    """The names a template's code defines or reads: it is rendered once for a tiny network (no
    identifiers of its own), and the result's names are collected with ``ast``: functions,
    parameters, imports, every name assigned or read (locals too). Cached per loaded template (Jinja
    loads a changed file anew)."""
    network = _tiny_network()
    text = template.render(network=network, **_fields(source_model(network)))
    try:
        tree = ast.parse(text)
    except SyntaxError:  # black or the safety check says what is wrong with the real output
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        match node:
            case ast.Name(id=name) | ast.arg(arg=name) | ast.FunctionDef(name=name) | ast.ClassDef(name=name):
                names.add(name)
            case ast.AsyncFunctionDef(name=name):
                names.add(name)
            case ast.alias(name=name, asname=asname):
                names.add(asname or name.split(".")[0])
    return frozenset(names)


@functools.cache
def _tiny_network() -> Network:
    return check("input(8, 8, 3) conv8")


class TemplateProblem(ValueError):
    """A template printed what it may not print (a plain string); while rendering, turned into a
    :class:`BadTemplate` at the template's line."""


class BadTemplate(SpecError):
    """A user's template cannot be rendered, or renders code that black or the safety check refuses:
    a diagnostic at the template's line (or at the line of the code it rendered)."""


def _folders(template_dir: Path | None) -> tuple[str, ...]:
    """Where templates are looked up: the user's folder first, then ours."""
    own = data_dir("templates")
    return (own,) if template_dir is None else (str(template_dir), own)


def template_suffix(template: str, template_dir: Path | None = None) -> str:
    """``.py`` or ``.ipynb``: what a template makes (ValueError for an unknown template)."""
    for folder in map(Path, _folders(template_dir)):
        for suffix in (".py", ".ipynb"):
            if (folder / f"{template}{suffix}.j2").is_file() and not template.startswith("_"):
                return suffix
    raise ValueError(f"no template named {template!r} (templates: {', '.join(templates(template_dir))})")


def templates(template_dir: Path | None = None) -> list[str]:
    """The templates one may render: the user's folder's and ours."""
    names = {p.name.removesuffix(".j2").rsplit(".", 1)[0] for f in _folders(template_dir) for p in Path(f).glob("*.j2")}
    return sorted(n for n in names if not n.startswith("_"))


def _template_error(exc: Exception, user: tuple[str, ...]) -> Exception:
    """A failed render as a diagnostic at the template line it failed on: a :class:`BadTemplate` when
    that line is in the user's folder, a RenderError (our bug) when only our templates were involved."""
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.filename:
        frames = [(exc.filename, exc.lineno)]
        message = f"template syntax: {exc.message}"
    else:  # Jinja puts the templates' lines into the traceback
        frames = [(f.filename, f.lineno or 1) for f in traceback.extract_tb(exc.__traceback__)]
        frames = [frame for frame in frames if frame[0].endswith(".j2")]
        message = _message(exc)
    theirs = [frame for frame in frames if _inside(frame[0], user)]
    if not theirs:
        place = "".join(f"{file}:{line}: " for file, line in frames[-1:])
        return RenderError(f"{place}{type(exc).__name__}: {exc}")
    file, line = theirs[-1]  # the innermost line of the user's (the call of a macro of ours, say)
    hint = None
    if isinstance(exc, jinja2.UndefinedError) and not _inside(frames[-1][0], user):
        hint = "normdsl's macros read the template's fields: import them with context, as in "
        hint += '{% from "_macros.j2" import model_code with context %}'
    elif isinstance(exc, jinja2.UndefinedError) and (undefined := re.fullmatch(r"'(\w+)' is undefined", str(exc))):
        hint = did_you_mean(undefined[1], ["network", *(f.name for f in fields(SourceModel))])
    source = Path(file).read_text(encoding="utf-8", errors="replace")
    return BadTemplate([Diagnostic("error", message, _line_span(source, line, message), hint)], source, file)


def _message(exc: Exception) -> str:
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"the sandbox refuses it: {exc}"
    if isinstance(exc, jinja2.TemplateNotFound):  # (its message is the bare name)
        return f"template {exc.name!r} not found in the template folder nor among normdsl's templates"
    if isinstance(exc, jinja2.TemplateError | TemplateProblem):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _inside(filename: str, folders: tuple[str, ...]) -> bool:
    return any(os.path.dirname(os.path.abspath(filename)) == os.path.abspath(f) for f in folders)


def _line_span(source: str, line: int, message: str) -> Span:
    """Line ``line`` of ``source``: the first name the message quotes (``'nope' is undefined``), or the whole line."""
    lines = source.split("\n")
    line = max(1, min(line, len(lines)))
    start = sum(len(text) + 1 for text in lines[: line - 1])
    text = lines[line - 1]
    quoted = [q for q in re.findall(r"'([^'\n]+)'", message) if q in text]
    if quoted:
        return Span.at(source, start + text.index(quoted[0]), len(quoted[0]))
    indent = len(text) - len(text.lstrip())
    return Span.at(source, start + indent, max(1, len(text.strip())))


def _output_error(file: str, output: str, problem: str, line: int, column: int, hint: str) -> BadTemplate:
    """Code a user's template rendered that black or the safety check refuses: at the line of that code."""
    lines = output.split("\n")
    line = max(1, min(line, len(lines)))
    start = sum(len(text) + 1 for text in lines[: line - 1])
    text = lines[line - 1]
    column = max(1, min(column, len(text) + 1))
    span = Span.at(output, start + column - 1, max(1, len(text) - column + 1))
    return BadTemplate([Diagnostic("error", problem, span, hint)], output, f"<{Path(file).name} output>")


def _black(text: str, file: str) -> str:
    """A user's template's output, formatted (a BadTemplate at the line black cannot parse)."""
    import black  # imported here: it is slow to import, and parse/check never need it

    try:
        return black.format_str(text, mode=black.Mode(line_length=LINE_LENGTH))
    except black.parsing.InvalidInput as exc:
        found = re.search(r"(\d+):(\d+)", str(exc))
        line, column = (int(found[1]), int(found[2]) + 1) if found else (1, 1)
        hint = "a template must render Python (or, for notebooks, Python cells)"
        raise _output_error(file, text, "the template rendered code that is not Python", line, column, hint) from None


def _plugins(network: Network) -> frozenset[tuple[str, str]]:
    return frozenset((layer.module, layer.keras_class) for layer in network.layers if layer.module)


def _safety_check(code: str, file: str, *, own: bool, module: bool, plugins: frozenset[tuple[str, str]]) -> None:
    problems = unexpected_code(code, module=module, plugins=plugins)
    if not problems:
        return
    if own:
        raise RenderError(f"template {file} rendered unexpected code: {'; '.join(problems)}")
    found = re.match(r"line (\d+): (.*)", problems[0], re.S)
    line, what = (int(found[1]), found[2]) if found else (1, problems[0])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    hint = "generated code may call only what normdsl's templates call (see Templates in the README)"
    raise _output_error(file, code, f"the safety check refuses {what}{more}", line, 1, hint)


def _notebook(text: str, file: str, *, own: bool, plugins: frozenset[tuple[str, str]]) -> str:
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
            code = body.strip("\n") + "\n"
            cell = nbformat.v4.new_code_cell((code if own else _black(code, file)).rstrip("\n"))  # type: ignore[no-untyped-call]
        cell.id = f"cell-{i}"  # deterministic ids: the same spec gives the same notebook
        cells.append(cell)
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    _safety_check(code, file, own=own, module=False, plugins=plugins)
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["normdsl"] = {"generated": True, "version": __version__}  # how `build` knows its own output
    nbformat.validate(notebook)
    return str(nbformat.writes(notebook)) + "\n"  # type: ignore[no-untyped-call]


@functools.cache
def _environment(*folders: str) -> jinja2.Environment:
    """The sandboxed environment over ``folders`` (searched in order): ``{{ }}`` prints PyCode,
    SafeText, numbers and macro output; a plain string is an error (autoescape marks what is
    printable, ``finalize`` refuses the rest)."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder) for folder in folders]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=True,
        finalize=_printable,
    )
    env.filters["text"] = safe_text
    env.filters["body"] = _body
    env.filters["markdown"] = _markdown
    return env


def _body(code: markupsafe.Markup) -> markupsafe.Markup:
    """A block's statements indented one level; blank lines stay empty (black's nested def has one
    before it, which Jinja's indent would fill with spaces or trim away)."""
    return markupsafe.Markup("\n".join("    " + line if line else line for line in code.rstrip().split("\n")))


def _markdown(text: SafeText) -> SafeText:
    """Spec-derived text in a notebook's markdown cell: markdown's and HTML's special characters
    backslash-escaped (CommonMark shows them as themselves), so nothing in it is rendered as a tag,
    a link or emphasis. (Its backslashes are already escaped by safe_text.)"""
    return SafeText(_MARKDOWN.sub(r"\\\1", text))


_MARKDOWN = re.compile(r"([`*_\[\]<>&|#!~])")


def _printable(value: object) -> object:
    if isinstance(value, markupsafe.Markup | PyCode | SafeText):
        return value
    if isinstance(value, int | float):  # bools too: True, False
        return markupsafe.Markup(repr(value))
    raise TemplateProblem(f"a template printed {type(value).__name__} {str(value)[:60]!r}; print text with |text")


def _fields(model: SourceModel) -> dict[str, object]:
    return {f.name: getattr(model, f.name) for f in fields(model)}


def source_model(
    network: Network,
    *,
    strategy: str = "default",
    reserved: frozenset[str] = frozenset(),
    variants: Sequence[Variant] = (),
) -> SourceModel:
    """What a template receives; ``reserved``: the names of the template it is for, which no spec
    identifier takes (:func:`template_names`); ``variants``: the variants a comparison template
    trains (by default ``network`` alone)."""
    spec_file = Path(network.filename).name
    found = variants or [Variant(network.name, network.filename, network.source, None, network, None)]
    labels = _labels(found)
    sources = _variant_sources(found, labels, reserved)
    structure = sources[0]  # the first valid variant is network, whose functions are all written
    head = classification_head(network)
    if not network.name.isidentifier() or strategy not in STRATEGIES:
        raise ValueError(f"model name {network.name!r} or strategy {strategy!r} cannot be used in code")
    for other in (v.network for v in found if v.network is not None):
        theirs = classification_head(other)
        if (theirs.kind, theirs.classes, len(other.output_shape)) != (
            head.kind,
            head.classes,
            len(network.output_shape),
        ):
            raise ValueError(f"the variants meet the loss differently: {head.note} / {theirs.note}")
    networks = [v.network for v in found if v.network is not None]
    return SourceModel(
        marker=PyCode(MARKER),
        spec_file=safe_text(spec_file),
        title=safe_text(f"Keras model {network.name!r}, generated by normdsl {__version__} from {spec_file}."),
        spec_lines=tuple(safe_text(line) for line in network.source.strip("\n").split("\n")),
        totals=safe_text(totals_line(network)),
        input_note=safe_text(input_note(network)),
        input_shape=PyCode(repr(tuple(int(n) for n in network.input_shape))),
        imports=target_keras.imports(frozenset().union(*map(_plugins, networks))),
        name=PyCode(literal(network.name)),
        functions=structure.functions,
        body=structure.body,
        output=structure.output,
        version=safe_text(__version__),
        head=head.kind,
        head_note=safe_text(head.note),
        classes=head.classes,
        loss=PyCode(head.loss),
        output_rank=len(network.output_shape),
        sync_bn=any(dict(layer.kwargs).get("synchronized") is True for net in networks for layer in net.layers),
        strategy=PyCode(literal(strategy)),
        legacy_keras=strategy == "multiworker",
        out_dir=PyCode(literal(f"runs/{network.name}")),
        train_title=safe_text(
            f"Trains the Keras model {network.name!r} of {spec_file}; generated by normdsl {__version__}."
        ),
        notebook_title=safe_text(f"Training {network.name} (from {spec_file})"),
        variants=sources,
        failed=tuple(_failed(v, label) for v, label in zip(found, labels, strict=True) if v.error is not None),
        spec_string=_string(spec_file),
        compare_dir=PyCode(literal(f"runs/{network.name}-compare")),
        compare_title=safe_text(
            f"Trains the variants of {spec_file} ({', '.join(labels)}) under the same conditions; "
            f"generated by normdsl {__version__}."
        ),
    )


def _labels(found: Sequence[Variant]) -> list[str]:
    """Each variant's name (its --norm text, or the model's name), numbered when it comes again: bn, bn #2."""
    out: list[str] = []
    for variant in found:
        label = variant.name or (variant.network.name if variant.network is not None else Path(variant.filename).stem)
        n = 1
        while (f"{label} #{n}" if n > 1 else label) in out:
            n += 1
        out.append(f"{label} #{n}" if n > 1 else label)
    return out


def _string(text: str) -> PyCode:
    """Text (spec text too) as a Python string: made inert by safe_text, then written as a literal."""
    return PyCode(literal(str(safe_text(text))))


def _failed(variant: Variant, label: str) -> FailedVariant:
    assert variant.error is not None
    errors = variant.error.errors
    problem = errors[0].message if errors else "not a valid model"
    return FailedVariant(safe_text(label), _string(label), safe_text(problem), _string(problem))


def _variant_sources(
    found: Sequence[Variant], labels: Sequence[str], reserved: frozenset[str]
) -> tuple[VariantSource, ...]:
    """The valid variants' code: a build function each, named after the variant, and their block
    functions. A variant's block function that an earlier variant defines the same way is written
    once; one defined differently takes another name (the names in conflict are reserved for the
    variant's program, until none is left: each round reserves at least one more defined name)."""
    valid = [(v, label) for v, label in zip(found, labels, strict=True) if v.network is not None]
    names = _function_names([label for _, label in valid], reserved)
    reserved = reserved | frozenset(names)
    defined: dict[str, Function] = {}
    out = []
    for (variant, label), name in zip(valid, names, strict=True):
        assert variant.network is not None
        taken: frozenset[str] = frozenset()
        while True:
            structure = target_keras.render(program(variant.network, reserved=reserved | taken))
            clashes = {f.name for f in structure.functions if defined.get(f.name, f) != f}
            if not clashes:
                break
            taken |= clashes
        new = tuple(f for f in structure.functions if f.name not in defined)
        defined.update((f.name, f) for f in new)
        totals = safe_text(totals_line(variant.network))
        out.append(
            VariantSource(safe_text(label), _string(label), PyCode(name), new, structure.body, structure.output, totals)
        )
    return tuple(out)


def _function_names(labels: Sequence[str], reserved: frozenset[str]) -> list[str]:
    """``build_bn``, ``build_gn_16``: a build function's name per variant, from the ASCII letters and
    digits of its label (at most 40), numbered when two are alike (``build_bn_2``), and with ``_``
    appended while the template's code uses the name."""
    taken: set[str] = set()
    out = []
    for label in labels:
        base = "build_" + (re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40].rstrip("_") or "variant")
        name, n = base, 1
        while name in taken or name in reserved:
            if name in taken:
                n += 1
                name = f"{base}_{n}"
            else:
                name += "_"
        assert IDENTIFIER.fullmatch(name)
        taken.add(name)
        out.append(name)
    return out


STRATEGIES = ("default", "mirrored", "multiworker")


@dataclass(frozen=True, slots=True)
class Head:
    """The model's head as a training script sees it: task kind, classes, loss."""

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
            note = f"the spec ends in a softmax over {classes} classes ({last.text}): sparse categorical cross-entropy."
            return Head("softmax", classes, "keras.losses.SparseCategoricalCrossentropy()", note)
        if last.keras_class == "Dense" and activation in (None, "linear"):
            note = f"the spec ends in {classes} logits ({last.text}): sparse categorical cross-entropy from logits."
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


def input_note(network: Network) -> str:
    """Empty when the model's input is the spec's; else that it was given at build time (--input)."""
    declared = network.spec.input.shape if network.spec is not None and network.spec.input is not None else None
    if declared == network.input_shape:
        return ""
    spec = f"input({', '.join(map(str, declared))})" if declared else "none"
    return f"Built for the input shape {tuple(network.input_shape)!r}, given at build time; the spec declares {spec}."


def strategy_warnings(network: Network, strategy: str) -> list[Diagnostic]:
    """Under a distribution strategy, plain batch norm computes its statistics per replica."""
    if strategy == "default":
        return []
    for layer in network.layers:
        if layer.keras_class == "BatchNormalization" and dict(layer.kwargs).get("synchronized") is not True:
            message = f"{layer.text}: under {strategy}, batch normalization computes its statistics on each replica's share of the batch"
            hint = "bn(sync=true) synchronizes them across replicas (BatchNormalization(synchronized=True))"
            return [Diagnostic("warning", message, layer.span, hint)]
    return []

"""Injection: hostile text in comments, layer names, block and parameter names, file names and
``--norm`` reaches generated code only as inert text, for every template (model, train, notebook).

The check does not stop at reading the output's AST: the generated files are RUN, in one subprocess
per batch (tests/injection_stub/run_generated.py), under an audit hook that ends the process at the
first sign of a payload (a process started, a socket, a file written, created or removed, ``exec``
or ``eval`` called by the generated code, or the canary builtin the payloads call). TensorFlow,
Keras and matplotlib are permissive stand-ins there (tests/injection_stub), so that every statement
the file runs on import, on ``--help``, on building the model and on preparing data runs in a
fraction of a second; numpy is real. A stand-in that accepts everything cannot tell a wrong model
from a right one: tests/test_codegen.py does that with Keras.

The property's batches scale with HYPOTHESIS_PROFILE (tests/conftest.py): 15 batches of 15 specs in
"ci" (about 600 files run, ~13 s), 500 in "long" (about 21,000 files, ~8 minutes).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import normdsl
from normdsl.diagnostics import RenderError

STUB = Path(__file__).resolve().parent / "injection_stub"
RUNNER = STUB / "run_generated.py"
TEMPLATES = {"model": ".py", "train": ".py", "notebook": ".ipynb"}
CANARY = "normdsl_injection_canary"  # a builtin in the runner that stops it: every payload calls it
PAYLOAD_RAN = 99  # the runner's exit status when its audit hook saw a payload run

# ---- hostile text ------------------------------------------------------------------------------

# One line each (a comment holds anything but "\n"): what would break out of a comment, a docstring
# or a string, start a new line for Python, IPython or str.splitlines, declare an encoding (PEP 263,
# also in UTF-7), format or silence the code, or look like template syntax.
PAYLOADS = [
    '"""; import os; os.system("touch SENTINEL"); """',
    '"""; import argparse; argparse._os.system("touch SENTINEL"); """',
    f"'''; {CANARY}(); '''",
    f'"; {CANARY}(); "',
    f"); {CANARY}(); (",
    '\\"""',
    '""',
    "\\",
    "\\\\",
    "\\N{DIGIT ONE}\\x41\\u0041\\",
    f"\r{CANARY}()",
    f"\r\x0c {CANARY}()\r",
    f"\x0b\x1c\x1d\x1e\x85{CANARY}()",
    f"\u2028{CANARY}()\u2029",
    "\u2028!touch SENTINEL",
    "\u202e\u2066\u200f\u061c",
    "\ufeff",
    "\x00",
    "\t",
    "coding:utf-7",
    "-*- coding: latin-1 -*-",
    "vim: set fileencoding=utf-7 :",
    f"coding=utf_7 +AAo-{CANARY}()",
    "+AAo-import os+ADs-os.system(+ACI-touch SENTINEL+ACI-)",
    "fmt: off",
    "# fmt: skip",
    "type: ignore",
    "%%",
    "# %% [markdown]",
    "{{ marker }}{% if true %}{# #}",
    '__import__("os").system("touch SENTINEL")',
    f'exec("{CANARY}()")',
    "</script><script>alert(1)</script>",
]
# Text a file name may hold beyond that: newlines, and names from the issue.
FILE_NAMES = [
    "m-coding:utf-7.nd",
    "x coding:utf-7.nd",
    "-*- coding: latin-1 -*-.nd",
    f'"""\n{CANARY}()\n""".nd',
    f"a\n{CANARY}()\n.nd",
    "%%.nd",
    "\u2028.nd",
    "\u202egnp.nd",
    "build_model.nd",
    "class.nd",
    "dir/x.nd",
]
# Names the generated code uses itself, Python's keywords and builtins, and their renamed forms.
COLLIDING = [
    "y", "y_2", "shortcut", "shortcut_2", "branch_1", "branch_2_1", "repeat_1", "x", "x_", "x__", "inputs",
    "input_shape", "layers", "keras", "tf", "np", "plt", "Path", "json", "argparse", "warnings", "build_model",
    "build_model_", "classifier", "main", "synthetic_data", "folder_data", "strategy_for", "INPUT_SHAPE",
    "NUM_CLASSES", "SYNCHRONIZED_BATCH_NORM", "model", "train", "validation", "history", "results", "os", "sys",
    "print", "range", "exec", "eval", "open", "lambda", "class", "match", "case", "_", "True", "None", "def",
    "import", "res", "cat", "input", "shortcut_", "lambda_", "__name__", "__import__", "_x",
]  # fmt: skip
# b(x, x_): the first is renamed to the second, which is renamed in turn.
RENAMED_PAIRS = ["x", "y", "lambda", "_", "shortcut", "branch_1", "build_model", "class", "print"]
NESTED_LOOPS = (17, 25)  # how deep repetitions nest in a block: Python refuses more than 20 nested blocks
# Layer names are letters, digits, _ . -, starting with a letter: these are valid, and look like code.
LAYER_NAMES = ["os.system", "exec", "eval", "x", "y", "build_model", "lambda", "class", "a-b", "A.b_c-d", "x" * 90]


def hostile_text(*, newlines: bool) -> st.SearchStrategy[str]:
    pieces = st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=6))
    text = st.lists(pieces, min_size=1, max_size=3).map("".join)
    return text if newlines else text.map(lambda t: t.replace("\n", " "))


comment_text = hostile_text(newlines=False)


@st.composite
def file_name(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(FILE_NAMES))
    return draw(hostile_text(newlines=True)) + draw(st.sampled_from([".nd", ""]))


# ---- specs, as tokens between which whitespace and comments may go -------------------------------

Tokens = list[str]


def layer(name: str, *args: str) -> Tokens:
    """``conv8(k=1)`` as ["conv8(", "k", "=", "1", ")"]: the name glued to "(", the rest separable."""
    if not args:
        return [name]
    tokens = [f"{name}("]
    for i, arg in enumerate(args):
        tokens += ([","] if i else []) + arg.split(" ")
    return [*tokens, ")"]


SHAPE_PRESERVING = [  # on (H, W, 8): the spec stays valid whatever the order
    layer("conv8", "k = 1"),
    layer("conv8", "pad = same"),
    layer("relu"),
    layer("gelu"),
    layer("bn"),
    layer("gn", "2"),
    layer("ln"),
    layer("in"),
    layer("dropout", "0.5"),
    layer("dwconv", "pad = same"),
    layer("sepconv8", "k = 1"),
    layer("relu", "max = 6"),
    ["res(", "relu", ")"],
    ["res(", "res(", "conv8(", "k", "=", "1", ")", ")", ",", "shortcut", "=", "res(", "relu", ")", ")"],
    ["res(", "cat(", "conv4(", "k", "=", "1", ")", ",", "conv4(", "k", "=", "1", ")", ")", ")"],
    ["cat(", "conv4(", "k", "=", "1", ")", ",", "relu", "conv4(", "k", "=", "1", ")", ")"],
    ["(", "relu", "bn", ")", "*", "2"],
]


@dataclass(frozen=True)
class Case:
    """A hostile spec: its text, its file name, and the --norm text (or None)."""

    text: str
    filename: str
    norm: str | None

    def __str__(self) -> str:
        return f"normdsl.parse({self.text!r}, filename={self.filename!r}), norm={self.norm!r}"


@st.composite
def separator(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return f" #{draw(comment_text)}\n"
    return "\n" if choice == 1 else " "


@st.composite
def joined(draw: st.DrawFn, tokens: Tokens) -> str:
    """The tokens with a space, a newline or a hostile comment between every two."""
    out = [tokens[0]]
    for token in tokens[1:]:
        out += [draw(separator()), token]
    return "".join(out)


def with_comment(tokens: Tokens, text: str) -> Tokens:
    """A comment inside the last argument list of ``tokens`` (or after it), ending with a newline."""
    comment = f"#{text}\n"
    if tokens[-1] == ")":
        return [*tokens[:-1], comment, ")"]
    return [*tokens, comment]


@st.composite
def blocks(draw: st.DrawFn) -> tuple[Tokens, list[Tokens]]:
    """Block definitions with colliding names, and uses of them (each keeping the shape (H, W, 8))."""
    names = draw(st.lists(st.sampled_from(COLLIDING), min_size=6, max_size=6, unique=True))
    a, b, g, f, d, z = names
    definitions: Tokens = []
    uses: list[Tokens] = []
    if draw(st.booleans()):  # no parameters, both spellings
        body = draw(st.sampled_from([["relu"], ["(", "conv8(", "k", "=", "1", ")", "relu", ")"], ["res(", "bn", ")"]]))
        definitions += (["let"] if draw(st.booleans()) else []) + [a, "=", *body]
        uses.append([a])
    if draw(st.booleans()):  # parameters with colliding names, used by position and by keyword
        p, q = draw(st.lists(st.sampled_from(COLLIDING), min_size=2, max_size=2, unique=True))
        definitions += ["let", f"{b}(", p, ",", q, "=", "1", ")", "=", "(", "conv{", p, "}(", "k", "=", q, ")"]
        definitions += ["relu", ")"]
        uses.append(draw(st.sampled_from([[f"{b}(", "8", ")"], [f"{b}(", "8", ",", q, "=", "1", ")"]])))
    if draw(st.booleans()):  # a parameter named like a block: let g = relu, let f(g) = (g conv{g}(k=1))
        definitions += ["let", g, "=", "relu", "let", f"{f}(", g, ")", "=", "(", g, "conv{", g, "}(", "k", "=", "1"]
        definitions += [")", ")"]
        uses.append([f"{f}(", "8", ")"])
    if draw(st.booleans()):  # a pair that collides once renamed: let b(x, x_)
        p = draw(st.sampled_from(RENAMED_PAIRS))
        definitions += ["let", f"{d}(", p, ",", f"{p}_", ")", "=", "conv{", p, "}(", "k", "=", f"{p}_", ")"]
        uses.append([f"{d}(", "8", ",", "1", ")"])
    if draw(st.booleans()):  # nested loops of one iteration, more than a function may nest
        depth = draw(st.integers(*NESTED_LOOPS))
        definitions += ["let", f"{z}(", "n", ")", "=", *["("] * depth, "relu", *[")", "*", "n"] * depth]
        uses.append([f"{z}(", "1", ")"])
    return definitions, uses


@st.composite
def norm_text(draw: st.DrawFn) -> str:
    tokens = draw(
        st.sampled_from(
            [layer("bn"), layer("gn", "2"), layer("ln"), layer("in"), layer("bn", "eps = 1e-3"), ["(", "bn", ")"]]
        )
    )
    if draw(st.booleans()):
        tokens = with_comment(tokens, draw(comment_text))
    text = draw(joined(tokens))
    return text + (f" #{draw(comment_text)}" if draw(st.booleans()) else "")


@st.composite
def hostile_spec(draw: st.DrawFn) -> Case:
    """A small valid spec (most of the time) with hostile text everywhere text can go."""
    tokens: Tokens = []
    has_norm = draw(st.booleans())
    if has_norm:
        tokens += ["norm", "=", "bn"]
    definitions, uses = draw(blocks())
    tokens += definitions
    image = draw(st.integers(0, 3)) > 0
    if image:
        tokens += ["input(", "8", ",", "8", ",", "4", ")", "conv8(", "k", "=", "1", ")"]
        items = draw(st.lists(st.sampled_from(SHAPE_PRESERVING), max_size=4)) + uses
        items += [["norm"]] if has_norm else []
        items = draw(st.permutations(items))
        heads = [[], ["gap", "dense10"], ["gap", "dense10(", ")"], ["gap", "dense10(", "act", "=", "softmax", ")"]]
        heads += [["flatten", "dense10", "softmax(", ")"]]
    else:
        tokens += ["input(", "10", ")", "dense16"]
        items = [["relu"], ["bn"], *([["norm"]] if has_norm else []), ["dense16(", "act", "=", "gelu", ")"]]
        heads = [["dense10(", ")"], ["softmax(", ")"], ["dense10", "softmax"], ["dense10(", "act", "=", "softmax", ")"]]
    for i, item in enumerate(items):
        if draw(st.integers(0, 3)) == 0 and item[0] in ("relu", "bn", "gelu", "ln") and len(item) == 1:
            item = [f"{item[0]}(", "name", "=", f'"{draw(st.sampled_from(LAYER_NAMES))}{i}"', ")"]
        tokens += item
    head = draw(st.sampled_from(heads))
    if head:  # a comment inside the last layer's arguments: input(10) softmax(# """...⏎)
        tokens += with_comment(head, draw(comment_text))
    text = draw(joined(tokens))
    if draw(st.booleans()):
        text = f"#{draw(comment_text)}\n{text}"
    if draw(st.booleans()):
        text += f"\n#{draw(comment_text)}"
    norm = draw(norm_text()) if draw(st.integers(0, 2)) > 0 else None
    return Case(text, draw(file_name()), norm)


# ---- rendering and running -----------------------------------------------------------------------


def render_all(case: Case) -> dict[str, str] | None:
    """Every template's output for the case, or None when the checker refuses the spec (SpecError).
    Any other exception fails, naming the case; a RenderError on a checked spec is a library bug."""
    try:
        network = normdsl.check(normdsl.parse(case.text, filename=case.filename), norm=case.norm)
    except normdsl.SpecError:
        return None
    except Exception as exc:
        raise AssertionError(f"check raised {type(exc).__name__} instead of SpecError: {case}") from exc
    out = {}
    for template in TEMPLATES:
        try:
            out[template] = normdsl.render(network, template)
        except RenderError as exc:
            raise AssertionError(f"render({template!r}) refused its own output for a checked spec: {case}") from exc
        except Exception as exc:
            raise AssertionError(f"render({template!r}) raised {type(exc).__name__}: {case}") from exc
    return out


def code_of(output: str, template: str) -> str:
    if TEMPLATES[template] == ".ipynb":
        cells = json.loads(output)["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return output


def names_in(code: str) -> set[str]:
    """The NAME tokens of Python code: what is code, as opposed to comments and strings."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return {t.string for t in tokens if t.type == tokenize.NAME}


def assert_inert(output: str, template: str, case: Case) -> None:
    """What can be seen without running: UTF-8 for Python, and no payload's names outside comments and strings."""
    if TEMPLATES[template] == ".py":
        encoding = tokenize.detect_encoding(io.BytesIO(output.encode("utf-8")).readline)[0]
        assert encoding == "utf-8", f"{template}: declares the encoding {encoding!r}: {case}"
    leaked = names_in(code_of(output, template)) & {CANARY, "system", "SENTINEL", "__import__", "exec", "eval"}
    assert not leaked, f"{template}: {sorted(leaked)} outside comments and strings: {case}"


def stub_environment() -> dict[str, str]:
    """The environment of a subprocess that runs generated code with the stand-ins for TensorFlow."""
    path = os.pathsep.join(p for p in (str(STUB), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: str
    reports: list[dict[str, Any]]


def run_generated(files: list[tuple[Path, str]], workdir: Path) -> Ran:
    """Runs the (path, template) files in one subprocess under the audit hook, with ``workdir`` as its
    current folder (which must stay empty)."""
    manifest = workdir.parent / f"{workdir.name}.manifest.json"
    manifest.write_text(json.dumps([{"path": str(p.resolve()), "template": t} for p, t in files]), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-B", str(RUNNER), str(manifest)],
        cwd=workdir,
        env=stub_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return Ran(result.returncode, result.stderr, reports)


def render_and_run(cases: list[Case], tmp: Path) -> int:
    """Renders every case with every template, checks what can be seen statically, then runs all the
    files in one subprocess under the audit hook; fails naming the case at fault. Returns how many
    files ran."""
    generated, workdir = tmp / "generated", tmp / "work"
    generated.mkdir()
    workdir.mkdir()
    files: list[tuple[Path, str]] = []
    owner: dict[str, Case] = {}
    for i, case in enumerate(cases):
        outputs = render_all(case)
        if currently_in_test_context():  # --hypothesis-show-statistics counts them
            event("refused by the checker" if outputs is None else "rendered and run")
        if outputs is None:
            continue
        for template, output in outputs.items():
            assert_inert(output, template, case)
            path = generated / f"spec{i}_{template}{TEMPLATES[template]}"
            path.write_text(output, encoding="utf-8")
            files.append((path, template))
            owner[str(path.resolve())] = case
    if not files:
        return 0
    ran = run_generated(files, workdir)
    cases_of = "\n".join(f"{Path(p).name}: {c}" for p, c in owner.items())
    assert ran.returncode != PAYLOAD_RAN, f"{ran.stderr}\nthe specs:\n{cases_of}"
    assert ran.returncode == 0, f"the runner failed:\n{ran.stderr}\nthe specs:\n{cases_of}"
    assert len(ran.reports) == len(files), ran.stderr
    for report in ran.reports:
        assert report["ok"], f"{report['template']} of {owner[report['path']]} failed:\n{report['error']}"
    assert list(workdir.iterdir()) == [], "the generated code wrote into its current folder"
    assert sorted(generated.iterdir()) == sorted(p for p, _ in files)
    return len(files)


# ---- the property --------------------------------------------------------------------------------

BATCH = 15  # specs per subprocess
BATCHES = max(2, settings().max_examples // 20)  # 15 (225 specs) in the "ci" profile, 500 in "long"


@settings(
    max_examples=BATCHES,
    deadline=None,
    # No shrinking: each try renders and runs a whole batch; a failure names its own spec.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(st.lists(hostile_spec(), min_size=BATCH, max_size=BATCH))
def test_generated_code_runs_without_running_a_payload(cases: list[Case]) -> None:
    with tempfile.TemporaryDirectory(prefix="normdsl-injection-") as tmp:
        render_and_run(cases, Path(tmp))


# ---- the sandbox itself: it sees a payload that runs -------------------------------------------------

SMALL_SPEC = "norm = bn\ninput(8, 8, 4) conv8(k=1) norm relu gap dense10 softmax\n"
SANDBOX_PAYLOADS = {
    "os.system": 'import os; os.system("touch SENTINEL")',
    "argparse._os": 'import argparse; argparse._os.system("touch SENTINEL")',
    "open-w": 'open("SENTINEL", "w").close()',
    "path-touch": '__import__("pathlib").Path("SENTINEL").touch()',
    "remove": '__import__("os").remove("SENTINEL")',
    "subprocess": '__import__("subprocess").run(["touch", "SENTINEL"])',
    "socket": '__import__("socket").socket()',
    "shutil": '__import__("shutil").rmtree("SENTINEL", ignore_errors=True)',
    "ctypes": '__import__("ctypes").CDLL(None)',
    "exec": 'exec("x = 1")',
    "eval": 'eval("1")',
    "canary": f"{CANARY}()",
}


@pytest.mark.parametrize("template", list(TEMPLATES))
@pytest.mark.parametrize("payload", list(SANDBOX_PAYLOADS.values()), ids=list(SANDBOX_PAYLOADS))
def test_the_sandbox_stops_a_payload_that_runs(tmp_path: Path, payload: str, template: str) -> None:
    """A payload placed in build_model's body by hand: the runner must stop at it, before it acts."""
    output = normdsl.render(normdsl.parse(SMALL_SPEC, filename="small.nd"), template)
    marker = "inputs = keras.Input(shape=input_shape)"
    assert marker in output
    if template == "notebook":
        notebook = json.loads(output)
        for cell in notebook["cells"]:
            source = "".join(cell["source"])
            cell["source"] = source.replace(marker, f"{payload}\n    {marker}")
        output = json.dumps(notebook)
    else:
        output = output.replace(marker, f"{payload}\n    {marker}")
    path = tmp_path / f"generated{TEMPLATES[template]}"
    path.write_text(output, encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir()
    ran = run_generated([(path, template)], workdir)
    assert ran.returncode == PAYLOAD_RAN, (ran.stderr, ran.reports)
    assert "PAYLOAD RAN" in ran.stderr
    assert not (workdir / "SENTINEL").exists()


def test_the_sandbox_stops_an_ipython_shell_escape_in_a_notebook(tmp_path: Path) -> None:
    notebook = json.loads(normdsl.render(normdsl.parse(SMALL_SPEC, filename="small.nd"), "notebook"))
    notebook["cells"].insert(2, {"cell_type": "code", "metadata": {}, "outputs": [], "source": "!touch SENTINEL"})
    path = tmp_path / "generated.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    (tmp_path / "work").mkdir()
    ran = run_generated([(path, "notebook")], tmp_path / "work")
    assert ran.returncode == PAYLOAD_RAN and "get_ipython().system" in ran.stderr, ran.stderr


def test_the_sandbox_runs_clean_generated_code(tmp_path: Path) -> None:
    files = []
    for template, suffix in TEMPLATES.items():
        path = tmp_path / f"generated_{template}{suffix}"
        path.write_text(normdsl.render(normdsl.parse(SMALL_SPEC, filename="small.nd"), template), encoding="utf-8")
        files.append((path, template))
    (tmp_path / "work").mkdir()
    ran = run_generated(files, tmp_path / "work")
    assert ran.returncode == 0, ran.stderr
    assert [r["ok"] for r in ran.reports] == [True] * 3, ran.reports
    assert "usage:" in ran.reports[1]["output"]


# ---- the issue's payloads, through the command line ------------------------------------------------

ISSUE_COMMENT = '# """; import argparse; argparse._os.system("touch SENTINEL"); """'
UTF7_COMMENT = (
    "# +AAo-import os+ADs-os.system(+ACI-touch SENTINEL+ACI-)"  # UTF-7 for: ⏎import os;os.system("touch SENTINEL")
)
UTF7_SPEC = f"{UTF7_COMMENT}\ninput(10) dense16 relu {UTF7_COMMENT}\ndense10 softmax\n"
ISSUE_CASES = {  # id: (file name, spec, --norm, template)
    "softmax-arguments": ("spec.nd", f"input(10) softmax({ISSUE_COMMENT}\n)\n", None, "train"),
    "dense-head-arguments": ("spec.nd", f"input(8, 8, 4) conv8 gap dense10({ISSUE_COMMENT}\n)\n", None, "train"),
    "norm-text": (
        "spec.nd",
        "norm = bn\ninput(10) dense16 norm relu dense10 softmax\n",
        f"bn({ISSUE_COMMENT}\n) {ISSUE_COMMENT}",
        "train",
    ),
    "utf-7-file-name-train": ("m-coding:utf-7.nd", UTF7_SPEC, None, "train"),
    "utf-7-file-name-model": ("m-coding:utf-7.nd", UTF7_SPEC, None, "model"),
    "utf-7-file-name-with-space-train": ("x coding:utf-7.nd", UTF7_SPEC, None, "train"),
    "utf-7-file-name-with-space-model": ("x coding:utf-7.nd", UTF7_SPEC, None, "model"),
}


def build_with_the_cli(tmp_path: Path, filename: str, spec: str, norm: str | None, template: str) -> Path:
    (tmp_path / filename).write_text(spec, encoding="utf-8")
    command = [sys.executable, "-m", "normdsl", "build", filename, "--template", template, "-o", "out.py"]
    command += ["--norm", norm] if norm is not None else []
    built = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return tmp_path / "out.py"


@pytest.mark.parametrize(("filename", "spec", "norm", "template"), list(ISSUE_CASES.values()), ids=list(ISSUE_CASES))
def test_the_issues_payloads_do_not_run(
    tmp_path: Path, filename: str, spec: str, norm: str | None, template: str
) -> None:
    out = build_with_the_cli(tmp_path, filename, spec, norm, template)
    with out.open("rb") as f:
        assert tokenize.detect_encoding(f.readline)[0] == "utf-8"
    command = [sys.executable, "out.py", *(["--help"] if template == "train" else [])]
    ran = subprocess.run(command, cwd=tmp_path, env=stub_environment(), capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage:") or template != "train", ran.stdout
    assert not (tmp_path / "SENTINEL").exists()
    (tmp_path / "work").mkdir()
    watched = run_generated([(out, template)], tmp_path / "work")  # again, under the audit hook
    assert watched.returncode == 0, watched.stderr
    assert watched.reports[0]["ok"], watched.reports[0]["error"]


def test_the_issues_payload_does_not_run_with_tensorflow(tmp_path: Path) -> None:
    """The issue's reproduction exactly: the training script's --help, with the real TensorFlow."""
    filename, spec, norm, template = ISSUE_CASES["softmax-arguments"]
    out = build_with_the_cli(tmp_path, filename, spec, norm, template)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ran = subprocess.run(
        [sys.executable, out.name, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage:")
    assert not (tmp_path / "SENTINEL").exists()


# ---- failures this property found, as their minimal inputs ----------------------------------------

FOUND = {
    # Before c88310e, identifiers starting with "_" were renamed to names the safety check refuses
    # (b(_) became b(x, __)): render raised RenderError, an internal error, for a checked spec.
    "block-named-underscore-x": "let _x = relu\ninput(8, 8, 4) _x",
    "parameter-named-underscore": "let b(_) = conv{_}(k=1)\ninput(8, 8, 4) b(2)",
    "block-named-dunder-import": "let __import__ = relu\ninput(8, 8, 4) __import__",
    "parameter-named-dunder-name": "let b(__name__) = conv{__name__}(k=1)\ninput(8, 8, 4) b(2)",
    # A `for` header longer than the line is handed to black alone, which cannot parse it: render
    # raises black's InvalidInput (17 loops nested in a block put the header past 88 columns; so does
    # a long count expression at any depth).
    "seventeen-nested-loops-in-a-block": "let b(n) = " + "(" * 17 + "relu" + ")*n" * 17 + "\ninput(8, 8, 4) b(1)",
    "long-repetition-count": "let b(n) = relu*{n" + "*1" * 17 + "}\ninput(10) b(1)",
}


@pytest.mark.parametrize("text", list(FOUND.values()), ids=list(FOUND))
def test_what_the_property_found_renders_and_runs(tmp_path: Path, text: str) -> None:
    assert render_and_run([Case(text, "spec.nd", None)], tmp_path) == len(TEMPLATES)

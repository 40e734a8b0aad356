"""The API for tools that embed normdsl: what the package shows, short reprs, notebook reprs, the
summary function, JSON in and out with its shipped schemas, and misuse that says what is wrong."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from conftest import EXAMPLES, ROOT
from markdown_it import MarkdownIt

import normdsl
from normdsl.network import Network

RESNET = ROOT / "examples" / "resnet50.nd"
HOSTILE = '<script>alert("x")</script>'


# ---- what the package shows ------------------------------------------------------------------


def test_dir_shows_the_public_api_and_not_the_modules_imports() -> None:
    shown = dir(normdsl)
    assert {"render", "build_model", "summary", "check", "parse", "expand", "json_schema"} <= set(shown)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(shown)
    assert set(shown) == set(normdsl.__all__)


def test_everything_in_all_exists() -> None:
    for name in normdsl.__all__:
        assert getattr(normdsl, name) is not None, name


def test_import_star_brings_render_and_summary() -> None:
    namespace: dict[str, object] = {}
    exec("from normdsl import *", namespace)
    assert callable(namespace["render"]) and callable(namespace["summary"])


# ---- short reprs -----------------------------------------------------------------------------


def test_a_checked_resnet50_has_a_short_repr() -> None:
    network = normdsl.check(RESNET.read_text(), norm=None)
    shown = repr(network)
    assert len(shown) < 200, shown
    assert "176 layers" in shown and "25,636,712 params" in shown and "(224, 224, 3) → (1000,)" in shown


def test_a_layer_repr_shows_its_resolved_call_class_place_and_figures() -> None:
    network = normdsl.check(RESNET.read_text())
    shortcut = network.layers[6]  # the first bottleneck's projection: conv{4*f}(k=1, s=s) with f=64, s=1
    assert repr(shortcut) == "<NetLayer conv256(k=1) (Conv2D) at 7:40: (56, 56, 256), 16,640 params>"


def test_a_spec_repr_is_short() -> None:
    spec = normdsl.parse(RESNET.read_text(), filename="resnet50.nd")
    assert repr(spec) == "<Spec 'resnet50.nd': input (224, 224, 3), 4 blocks, 12 items>"
    assert len(repr(normdsl.parse("relu " * 5000))) < 100


# ---- notebook reprs --------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Start tags and text of an HTML fragment, as Python's own parser reads it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(fragment: str) -> _Tags:
    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    return parser


def _hostile_network() -> Network:
    """A network a tool built by hand, with markup in every text it holds."""
    network = normdsl.check("let b = (conv4(pad=same) relu)\ninput(8, 8, 3) b res(conv4(pad=same)) gap")
    layers = list(network.layers)
    layers[0] = dataclasses.replace(
        layers[0], kwargs=(*layers[0].kwargs, ("name", HOSTILE)), text=HOSTILE, blocks=("<b>|x</b>",)
    )
    layers[-1] = dataclasses.replace(layers[-1], kind="<i>", text=f"{HOSTILE} | `*_[x](y)` $x$")
    return dataclasses.replace(network, name=HOSTILE, layers=tuple(layers))


SAFE_TAGS = {"div", "p", "b", "br", "table", "thead", "tbody", "tr", "th", "td"}


def test_network_html_repr_is_a_table_whose_text_stays_text() -> None:
    network = _hostile_network()
    parsed = _parsed(network._repr_html_())
    assert set(parsed.tags) <= SAFE_TAGS and parsed.tags.count("tr") == 1 + len(network.layers)
    text = "".join(parsed.text)
    assert HOSTILE in text and "<b>|x</b>" in text
    assert 'conv4(pad=same, name="<script>alert(\\"x\\")</script>") (Conv2D)' in text


def test_network_markdown_repr_renders_to_a_table_without_markup_from_the_spec() -> None:
    network = _hostile_network()
    rendered = MarkdownIt("commonmark").enable("table").render(network._repr_markdown_())
    parsed = _parsed(rendered)
    assert set(parsed.tags) <= {"p", "table", "thead", "tbody", "tr", "th", "td", "br"}, parsed.tags
    assert parsed.tags.count("tr") == 1 + len(network.layers)  # no cell boundary came from a |
    text = "".join(parsed.text)
    assert HOSTILE in text and "<b>|x</b>" in text and "`*_[x](y)` $x$" in text


def test_a_spec_errors_html_repr_is_escaped() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(f'conv8(name="{HOSTILE[:8]}") gn3 {HOSTILE}')
    shown = caught.value._repr_html_()
    parsed = _parsed(shown)
    assert parsed.tags == ["pre", "b", "mark"]  # the location in bold, the offending text marked
    assert "".join(parsed.text) == caught.value.render() and "<script>" in caught.value.render()
    assert '<mark class="error">&lt;</mark>' in shown


# ---- summary() -------------------------------------------------------------------------------


def test_summary_is_a_function_of_the_package_in_every_format() -> None:
    network = normdsl.check("input(8, 8, 3) conv4 bn")
    assert normdsl.summary(network) == normdsl.summary(network, "text")
    assert "conv4 (Conv2D)" in normdsl.summary(network, format="text")
    assert json.loads(normdsl.summary(network, format="json"))["params"] == 128
    assert "| conv4 (Conv2D) |" in normdsl.summary(network, format="markdown")
    assert "<td" in normdsl.summary(network, format="html")


def test_the_summary_modules_functions_stay_reachable_through_the_package() -> None:
    from normdsl import summary

    network = normdsl.check("input(8, 8, 3) conv4")
    assert summary.text(network) == normdsl.summary(network)
    assert summary.one_line(network).startswith("112 params")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda n: normdsl.summary(None), TypeError),
        (lambda n: normdsl.summary(n, format="yaml"), ValueError),
        (lambda n: normdsl.summary(n, depth=0), ValueError),
        (lambda n: normdsl.summary(n, depth="2"), TypeError),
        (lambda n: normdsl.summary(n, format="json", depth=2), ValueError),
    ],
)
def test_summary_misuse_names_the_argument(call: object, error: type[Exception]) -> None:
    network = normdsl.check("input(8, 8, 3) conv4")
    with pytest.raises(error, match=r"summary\("):
        call(network)  # type: ignore[operator]


# ---- JSON in and out -------------------------------------------------------------------------


def test_from_json_takes_a_dict_as_well_as_text() -> None:
    spec = normdsl.parse(RESNET.read_text(), filename="resnet50.nd")
    assert normdsl.Spec.from_json(json.loads(spec.to_json())) == spec
    assert normdsl.Spec.from_json(spec.to_json()) == spec


def test_from_json_of_a_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="from_json"):
        normdsl.Spec.from_json(None)  # type: ignore[arg-type]


def test_from_json_refuses_another_schema() -> None:
    data = json.loads(normdsl.parse("conv8").to_json())
    data["schema"] = "urn:normdsl:spec:2"
    with pytest.raises(normdsl.ast.InvalidJSON, match="schema"):
        normdsl.Spec.from_json(data)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_parse_and_summary_json_follow_their_shipped_schemas(example: Path) -> None:
    for name in ("spec", "summary"):
        jsonschema.Draft202012Validator.check_schema(normdsl.json_schema(name))
    spec = normdsl.parse(example.read_text(), filename=example.name)
    data = json.loads(spec.to_json())
    assert data["schema"] == normdsl.json_schema("spec")["$id"]
    jsonschema.validate(data, normdsl.json_schema("spec"))
    figures = json.loads(normdsl.summary(normdsl.check(spec), "json"))
    assert figures["schema"] == normdsl.json_schema("summary")["$id"]
    jsonschema.validate(figures, normdsl.json_schema("summary"))


def test_the_cli_prints_json_with_its_schema_field() -> None:
    for command in (["parse", str(RESNET), "--json"], ["summary", str(RESNET), "--json"]):
        out = subprocess.run(
            [sys.executable, "-m", "normdsl", *command], capture_output=True, text=True, check=True, timeout=120
        ).stdout
        data = json.loads(out)
        schema = normdsl.json_schema(command[0] if command[0] == "summary" else "spec")
        jsonschema.validate(data, schema)


def test_the_summary_schema_refuses_what_it_does_not_describe() -> None:
    figures = json.loads(normdsl.summary(normdsl.check("input(8, 8, 3) conv4"), "json"))
    figures["layers"][0]["inputs"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(figures, normdsl.json_schema("summary"))


def test_the_wheel_ships_the_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("normdsl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"normdsl/schemas/spec-1.json", "normdsl/schemas/summary-1.json"} <= names


# ---- misuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, 3, b"conv8", ["conv8"]])
def test_check_of_a_wrong_type_is_a_type_error(spec: object) -> None:
    with pytest.raises(TypeError, match=r"check\(spec=\.\.\.\)"):
        normdsl.check(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"norm": 5}, "norm"),
        ({"replace": {"norm": 5}}, "replace"),
        ({"replace": ["norm"]}, "replace"),
        ({"input_shape": (8, 8, 3.0)}, "input_shape"),
        ({"input_shape": "8,8,3"}, "input_shape"),
        ({"limits": {}}, "limits"),
    ],
)
def test_a_wrong_type_of_argument_is_a_type_error_naming_it(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(TypeError, match=rf"check\({named}=\.\.\.\)"):
        normdsl.check("input(8, 8, 3) conv8", **kwargs)  # type: ignore[arg-type]


def test_expand_of_a_spec_with_blocks_is_a_clear_error() -> None:
    spec = normdsl.parse(RESNET.read_text())
    with pytest.raises(ValueError, match=r"'norm' at 12:29 uses a block; blocks are expanded by check\(\)"):
        normdsl.expand(spec)
    with pytest.raises(ValueError, match=r"'norm' at 12:29 is no layer kind"):
        list(normdsl.expand(spec.body))


def test_expand_of_a_block_named_with_digits_is_a_clear_error() -> None:
    spec = normdsl.parse("let b60 = (conv8 relu)\nconv8 b60")
    with pytest.raises(ValueError, match="'b60' at 2:7 uses a block"):
        normdsl.expand(spec)


def test_expand_still_lists_a_spec_without_blocks() -> None:
    spec = normdsl.parse("conv8 (bn relu)*2 res(conv8(pad=same))")
    kinds = ["conv", "bn", "relu", "bn", "relu", "conv"]
    assert [layer.kind for layer in normdsl.expand(spec)] == kinds
    assert [layer.kind for layer in normdsl.expand(spec.body)] == kinds


def test_expand_of_a_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"expand\(\)"):
        normdsl.expand("conv8")  # type: ignore[arg-type]

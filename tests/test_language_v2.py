"""Language v2: blocks with parameters and arithmetic, residual and branch paths, the norm placeholder,
and the layers real backbones need. Equivalences are checked against flat v1 specs (whose figures
the oracle tests tie to Keras) and against Keras directly."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import built_rows, checker_rows, configs, keras_rows

import normdsl


def calls(network: normdsl.Network) -> list[tuple[str, tuple[object, ...], tuple[tuple[str, object], ...]]]:
    return [(layer.keras_class, layer.args, layer.kwargs) for layer in network.layers]


@pytest.mark.parametrize(
    ("with_blocks", "flat"),
    [
        ("let b(f, s=1) = (conv{f}(s=s) bn relu)\nb(8) b(16, s=2)", "conv8(s=1) bn relu conv16(s=2) bn relu"),
        ("let b(f) = conv{4*f}(k=1)\nb(2) b(f=3)", "conv8(k=1) conv12(k=1)"),
        ("let b(f) = (conv{(f + 1) * 2} conv{f // 2} conv{f - 1})\nb(5)", "conv12 conv2 conv4"),
        ("let b(n) = relu*n\nb(3)", "relu relu relu"),
        ("let b(n) = (conv8 relu*{n - 1})\nb(1) b(2)", "conv8 conv8 relu"),
        ("let inner(f) = conv{f}\nlet outer(f) = (inner(f) inner({2*f}))\nouter(4)", "conv4 conv8"),
        ("let b(a=relu) = dense4(act=a)\ninput(6) b b(a=tanh)", "input(6) dense4(act=relu) dense4(act=tanh)"),
        ("let b(k) = conv8(k=(1, k))\ninput(9, 9, 3) b(3)", "input(9, 9, 3) conv8(k=(1, 3))"),
        ("norm = bn(eps=1e-5)\nconv8 norm", "conv8 bn(eps=1e-5)"),
    ],
)
def test_blocks_expand_to_the_equivalent_flat_spec(with_blocks: str, flat: str) -> None:
    a, b = normdsl.check(with_blocks), normdsl.check(flat)
    assert calls(a) == calls(b)
    assert checker_rows(a) == checker_rows(b)


def test_res_adds_the_input_to_the_body(keras: Any) -> None:
    network = normdsl.check("input(8, 8, 4) res(conv4(pad=same) bn relu)")
    L = keras.layers
    x = inputs = keras.Input((8, 8, 4))
    y = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x)))
    reference = keras.Model(inputs, L.Add()([x, y]))
    assert sorted(checker_rows(network)) == sorted(keras_rows(reference))
    assert network.layers[-1].keras_class == "Add" and network.layers[-1].inputs == (-1, 2)
    assert checker_rows(network) == built_rows(network)


def test_res_with_a_shortcut_projects_the_input(keras: Any) -> None:
    network = normdsl.check("input(8, 8, 4) res(conv16(k=1, s=2), shortcut=conv16(k=1, s=2) bn)")
    L = keras.layers
    x = inputs = keras.Input((8, 8, 4))
    shortcut = L.BatchNormalization()(L.Conv2D(16, 1, strides=2)(x))
    body = L.Conv2D(16, 1, strides=2)(x)
    reference = keras.Model(inputs, L.Add()([shortcut, body]))
    assert sorted(checker_rows(network)) == sorted(keras_rows(reference))
    assert configs(normdsl.build_model(network)) == configs(reference)


def test_res_paths_of_different_shapes_are_an_error_naming_both() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("input(8, 8, 4) res(conv16(pad=same))")
    (error,) = caught.value.errors
    assert "body (8, 8, 16), shortcut (8, 8, 4)" in error.message
    assert (error.span.line, error.span.column) == (1, 16)


def test_cat_concatenates_branches_on_channels(keras: Any) -> None:
    network = normdsl.check("input(8, 8, 3) cat(conv4(pad=same), conv6(k=1), maxpool(3, s=1, pad=same))")
    assert network.output_shape == (8, 8, 13)
    L = keras.layers
    x = inputs = keras.Input((8, 8, 3))
    branches = [L.Conv2D(4, 3, padding="same")(x), L.Conv2D(6, 1)(x), L.MaxPooling2D(3, strides=1, padding="same")(x)]
    reference = keras.Model(inputs, L.Concatenate(axis=-1)(branches))
    assert sorted(checker_rows(network)) == sorted(keras_rows(reference))


def test_cat_of_different_spatial_sizes_is_an_error() -> None:
    with pytest.raises(normdsl.SpecError, match=r"\(8, 8, 4\), \(6, 6, 4\)"):
        normdsl.check("input(8, 8, 3) cat(conv4(pad=same), conv4)")


def test_new_layers_match_keras(keras: Any) -> None:
    text = "input(16, 16, 4) dwconv(mult=2, s=2, pad=same) sepconv8(k=(1, 3), mult=3) upsample(2) relu(max=6) upsample((2, 1), interp=bilinear)"
    network = normdsl.check(text)
    L = keras.layers
    x = inputs = keras.Input((16, 16, 4))
    for layer in (
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
        L.SeparableConv2D(8, (1, 3), depth_multiplier=3),
        L.UpSampling2D(2),
        L.ReLU(max_value=6.0),
        L.UpSampling2D((2, 1), interpolation="bilinear"),
    ):
        x = layer(x)
    reference = keras.Model(inputs, x)
    assert checker_rows(network) == keras_rows(reference)
    assert configs(normdsl.build_model(network)) == configs(reference)


def test_relu_without_arguments_stays_an_activation_layer() -> None:
    assert [layer.keras_class for layer in normdsl.check("input(4) relu relu(max=6)").layers] == ["Activation", "ReLU"]


def test_norm_is_replaced_everywhere_and_checked_at_every_site() -> None:
    spec = normdsl.parse("norm = bn\ninput(8, 8, 3) conv32 norm conv48 norm")
    assert [layer.keras_class for layer in normdsl.check(spec).layers[1::2]] == ["BatchNormalization"] * 2
    swapped = normdsl.check(spec, norm="gn(16)")
    assert [dict(layer.kwargs).get("groups") for layer in swapped.layers[1::2]] == [16, 16]
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(spec, norm="gn(32)")
    (error,) = caught.value.errors  # 32 divides 32 but not 48: only the second site fails
    assert "48 channels cannot be split into 32 groups" in error.message
    assert (error.span.line, error.span.column) == (2, 35)


def test_a_norm_used_in_a_block_lists_every_failing_channel_count() -> None:
    text = "norm = bn\nlet b(f) = (conv{f}(pad=same) norm)\ninput(8, 8, 3) b(16) b(24) b(32) b(40)"
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(text, norm="gn(16)")
    (error,) = caught.value.errors
    assert error.message == "gn(16) in block 'b': 24 and 40 channels cannot be split into 16 groups"
    assert error.hint == "valid group counts for all of them: 1, 2, 4, 8"


def test_a_problem_in_a_block_says_where_the_block_was_used() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("let b(f) = (conv{f} gn(32))\ninput(8, 8, 3)\nconv8 b(48)")
    (error,) = caught.value.errors
    assert error.message == "gn(32) in block 'b' used at 3:7: 48 channels cannot be split into 32 groups"
    assert (error.span.line, error.span.column) == (1, 21)
    assert [(label, span.line, span.column) for label, span in error.notes] == [("block 'b' is used here", 3, 7)]


def test_without_a_norm_placeholder_the_norm_flag_warns() -> None:
    network = normdsl.check("input(8, 8, 3) conv8 bn", norm="gn(4)")
    assert any("no norm placeholder" in w.message for w in network.warnings)


def test_norm_used_but_never_declared_says_how_to_declare_it() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("conv8 norm")
    assert caught.value.errors[0].hint is not None and "norm = bn" in caught.value.errors[0].hint


def test_a_bad_norm_flag_is_a_diagnostic_about_the_flag() -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check("norm = bn\nconv8 norm", norm="gn(")
    assert caught.value.filename == "--norm"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("let a = (conv8 b)\nlet b = (relu a)\na", "block 'a' uses itself (a → b → a)"),
        ("let a(n) = (relu a(n))\na(1)", "block 'a' uses itself (a → a)"),
        ("let b(f) = conv{g}\nb(8)", "'g' is not a parameter here"),
        ("conv{f}", "'f' is not a parameter here"),
        ("let b(f) = conv{f}\nb(8, 9)", "block 'b' takes 1 argument(s), got 2"),
        ("let b(f) = conv{f}\nb(g=8)", "block 'b' has no parameter 'g'"),
        ("let b(f) = conv{f}\nb", "block 'b' needs its parameter 'f'"),
        ("let b(f) = conv{f // 0}\nb(8)", "division by zero"),
        ("let b(f) = conv{f}\nb(same)", "the width of conv must be an integer, got 'same'"),
        ("let conv(f) = relu\nrelu", "'conv' is a layer of the language"),
        ("let b = relu\nlet b = gelu\nb", "block 'b' is defined twice"),
        ("let b(n) = relu*{n - 2}\nb(1)", "a repetition count must not be negative, got -1"),
    ],
)
def test_block_mistakes_are_diagnostics(text: str, needle: str) -> None:
    with pytest.raises(normdsl.SpecError) as caught:
        normdsl.check(text)
    assert any(needle in d.message for d in caught.value.errors), caught.value.render()


def test_a_block_that_doubles_itself_60_times_is_rejected_quickly() -> None:
    text = (
        "let b0 = conv8(pad=same)\n"
        + "".join(f"let b{i} = (b{i - 1} b{i - 1})\n" for i in range(1, 61))
        + "input(8, 8, 8) b60"
    )
    start = time.perf_counter()
    with pytest.raises(normdsl.SpecError, match="expands to 1,152,921,504,606,846,976 layers, more than the limit"):
        normdsl.check(text)
    assert time.perf_counter() - start < 2.0  # a guard against hanging, not a benchmark


def test_v2_specs_round_trip_through_json() -> None:
    from conftest import ROOT

    spec = normdsl.parse((ROOT / "examples" / "resnet50.nd").read_text())
    assert normdsl.Spec.from_json(spec.to_json()) == spec


def test_a_valid_call_is_not_reused_for_a_value_that_only_looks_equal() -> None:
    """Valid calls are cached by value: (1, 1) and (1, true) compare equal in Python but are not."""
    with pytest.raises(normdsl.SpecError, match="'k' must be"):
        normdsl.check("input(8, 8, 3) conv8(k=(1, 1)) conv8(k=(1, true))")


def test_direct_build_names_layers_without_clashing_with_the_specs_names() -> None:
    model = normdsl.build_model('input(8, 8, 3) conv4(name="conv_1") conv4 relu')
    # unnamed layers get the names Keras gives the generated module's (the checker refuses names of that form)
    assert [layer.name for layer in model.layers[1:]] == ["conv_1", "conv2d", "activation"]


def test_a_quoted_string_is_never_a_parameter_but_a_bare_word_is() -> None:
    network = normdsl.check('let b(f, s=1) = conv8(name="f", s=s, pad=same)\ninput(8, 8, 3) b(3, s=2)')
    [conv] = network.layers
    assert dict(conv.kwargs)["name"] == "f" and dict(conv.kwargs)["strides"] == 2
    code = normdsl.render(network)
    assert 'name="f"' in code and "strides=s" in code


def test_bare_words_and_quoted_strings_survive_the_json_round_trip() -> None:
    spec = normdsl.parse('let b(s) = conv8(s=s, pad=same, name="s")\ninput(8, 8, 3) b(2)')
    back = normdsl.Spec.from_json(spec.to_json())
    layer = back.blocks[0].body
    assert isinstance(layer, normdsl.ast.Layer)
    kinds = [type(a.value).__name__ for a in layer.args]
    assert kinds == ["Word", "Word", "str"]
    assert normdsl.check(back).layers[0].output_shape == (4, 4, 8)


SET_SPEC = (
    "stem = (conv8 relu)\nnorm = bn\nlet b(f) = (conv{f}(pad=same) norm relu)\ninput(16, 16, 3) stem b(16) b(16)\n"
)


def test_set_replaces_any_block_without_parameters_like_editing_its_definition() -> None:
    replaced = normdsl.check(SET_SPEC, replace={"stem": "conv32(k=5, pad=same) gelu"}, norm="gn(4)")
    edited = normdsl.check(
        SET_SPEC.replace("stem = (conv8 relu)", "stem = (conv32(k=5, pad=same) gelu)").replace(
            "norm = bn", "norm = gn(4)"
        )
    )
    assert checker_rows(replaced) == checker_rows(edited)
    assert replaced.replaced == (("stem", "conv32(k=5, pad=same) gelu"), ("norm", "gn(4)"))
    code = normdsl.render(replaced)
    assert "# --set stem conv32(k=5, pad=same) gelu" in code and "# --norm gn(4)" in code


def test_set_of_a_block_the_spec_does_not_use_is_a_warning_with_a_hint() -> None:
    [warning] = normdsl.check(SET_SPEC, replace={"stm": "relu"}).warnings
    assert "uses no block 'stm'" in warning.message and warning.hint == "did you mean 'stem'?"


def test_set_cannot_replace_a_block_with_parameters_nor_give_the_norm_twice() -> None:
    with pytest.raises(normdsl.SpecError, match="a block with parameters cannot be replaced by --set b"):
        normdsl.check(SET_SPEC, replace={"b": "relu"})
    with pytest.raises(ValueError, match="give the norm once"):
        normdsl.check(SET_SPEC, norm="ln", replace={"norm": "bn"})
    with pytest.raises(TypeError, match="replace"):
        normdsl.check(SET_SPEC, replace=["stem"])  # type: ignore[arg-type]

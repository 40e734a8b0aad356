"""Random models written twice: as spec text and as the Keras layers the language reference says
they mean, independently of normdsl's registry (the mapping below is the README's table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

ACTIVATION_LAYERS = ["relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "elu", "selu"]


@dataclass
class Twin:
    spec: str
    make: Any  # keras.layers module -> layer


def _pair(draw: Any, lo: int, hi: int) -> tuple[str, Any]:
    if draw(st.booleans()):
        n = draw(st.integers(lo, hi))
        return str(n), n
    a, b = draw(st.integers(lo, hi)), draw(st.integers(lo, hi))
    return f"({a}, {b})", (a, b)


def _args(spec_args: list[str]) -> str:
    return f"({', '.join(spec_args)})" if spec_args else ""


@st.composite
def conv(draw: Any) -> Twin:
    filters = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16]))
    spec_args: list[str] = []
    kw: dict[str, Any] = {}
    k_text, k = _pair(draw, 1, 5)
    if k != 3:
        spec_args.append(f"k={k_text}")
    if draw(st.booleans()):
        s_text, kw["strides"] = _pair(draw, 1, 3)
        spec_args.append(f"s={s_text}")
    if draw(st.booleans()):
        kw["padding"] = draw(st.sampled_from(["valid", "same"]))
        spec_args.append(f"pad={kw['padding']}")
    if draw(st.integers(0, 4)) == 0:
        d_text, kw["dilation_rate"] = _pair(draw, 1, 2)
        spec_args.append(f"dilation={d_text}")
    if draw(st.integers(0, 3)) == 0:
        kw["groups"] = draw(st.sampled_from([1, 2, 3, 4]))
        spec_args.append(f"groups={kw['groups']}")
    if draw(st.integers(0, 3)) == 0:
        kw["activation"] = draw(st.sampled_from(["relu", "gelu", "tanh"]))
        spec_args.append(f"act={kw['activation']}")
    if draw(st.integers(0, 3)) == 0:
        kw["use_bias"] = draw(st.booleans())
        spec_args.append(f"bias={'true' if kw['use_bias'] else 'false'}")
    return Twin(f"conv{filters}{_args(spec_args)}", lambda L: L.Conv2D(filters, k, **kw))


@st.composite
def norm(draw: Any) -> Twin:
    which = draw(st.sampled_from(["bn", "ln", "in", "gn"]))
    eps = draw(st.sampled_from([None, 1e-5, 0.01]))
    kw: dict[str, Any] = {} if eps is None else {"epsilon": eps}
    spec_args = [] if eps is None else [f"eps={eps!r}"]
    if which == "bn":
        if draw(st.booleans()):
            kw["momentum"] = draw(st.sampled_from([0.0, 0.9, 1.0]))
            spec_args.append(f"momentum={kw['momentum']}")
        if draw(st.integers(0, 3)) == 0:
            kw["synchronized"] = draw(st.booleans())
            spec_args.append(f"sync={'true' if kw['synchronized'] else 'false'}")
        return Twin("bn" + _args(spec_args), lambda L: L.BatchNormalization(**kw))
    if which == "ln":
        return Twin("ln" + _args(spec_args), lambda L: L.LayerNormalization(**kw))
    if which == "in":
        return Twin("in" + _args(spec_args), lambda L: L.GroupNormalization(groups=-1, **kw))
    groups = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    return Twin("gn" + _args([str(groups), *spec_args]), lambda L: L.GroupNormalization(groups=groups, **kw))


@st.composite
def pool(draw: Any) -> Twin:
    cls = draw(st.sampled_from(["maxpool", "avgpool"]))
    spec_args: list[str] = []
    kw: dict[str, Any] = {"pool_size": 2}  # the language's default
    if draw(st.booleans()):
        text, kw["pool_size"] = _pair(draw, 1, 3)
        spec_args.append(text)
    if draw(st.booleans()):
        text, kw["strides"] = _pair(draw, 1, 3)
        spec_args.append(f"s={text}")
    if draw(st.booleans()):
        kw["padding"] = draw(st.sampled_from(["valid", "same"]))
        spec_args.append(f"pad={kw['padding']}")
    keras_cls = "MaxPooling2D" if cls == "maxpool" else "AveragePooling2D"
    return Twin(cls + _args(spec_args), lambda L: getattr(L, keras_cls)(**kw))


@st.composite
def zeropad(draw: Any) -> Twin:
    form = draw(st.integers(0, 2))
    if form == 0:
        p: Any = draw(st.integers(0, 2))
        text = str(p)
    elif form == 1:
        p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        text = f"({p[0]}, {p[1]})"
    else:
        p = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
        text = f"(({p[0][0]}, {p[0][1]}), ({p[1][0]}, {p[1][1]}))"
    return Twin(f"zeropad({text})", lambda L: L.ZeroPadding2D(p))


@st.composite
def depthwise_or_separable(draw: Any) -> Twin:
    separable = draw(st.booleans())
    spec_args: list[str] = []
    kw: dict[str, Any] = {}
    k_text, k = _pair(draw, 1, 4)
    spec_args.append(f"k={k_text}")
    if draw(st.booleans()):
        s_text, kw["strides"] = _pair(draw, 1, 2)
        spec_args.append(f"s={s_text}")
    if draw(st.booleans()):
        kw["padding"] = draw(st.sampled_from(["valid", "same"]))
        spec_args.append(f"pad={kw['padding']}")
    if draw(st.integers(0, 3)) == 0:  # with strides too: Keras computes both for these two (not for Conv2D)
        d_text, kw["dilation_rate"] = _pair(draw, 1, 2)
        spec_args.append(f"dilation={d_text}")
    if draw(st.booleans()):
        kw["depth_multiplier"] = draw(st.integers(1, 3))
        spec_args.append(f"mult={kw['depth_multiplier']}")
    if draw(st.integers(0, 3)) == 0:
        kw["use_bias"] = False
        spec_args.append("bias=false")
    if separable:
        filters = draw(st.integers(1, 8))
        return Twin(f"sepconv{filters}{_args(spec_args)}", lambda L: L.SeparableConv2D(filters, k, **kw))
    return Twin(f"dwconv{_args(spec_args)}", lambda L: L.DepthwiseConv2D(k, **kw))


@st.composite
def upsample(draw: Any) -> Twin:
    text, size = _pair(draw, 1, 3)
    interp = draw(st.sampled_from(["nearest", "bilinear"]))
    return Twin(f"upsample({text}, interp={interp})", lambda L: L.UpSampling2D(size, interpolation=interp))


RELU_ARGS = st.sampled_from([6.0, 1.0]).map(lambda m: Twin(f"relu(max={m})", lambda L: L.ReLU(max_value=m)))


def simple(spec: str, make: Any) -> Twin:
    return Twin(spec, make)


ACT = st.sampled_from(ACTIVATION_LAYERS).map(lambda a: simple(a, lambda L: L.Activation(a)))
DROPOUT = st.sampled_from([0.0, 0.25, 0.5]).map(lambda p: simple(f"dropout({p})", lambda L: L.Dropout(p)))
HEAD = st.one_of(
    st.just(simple("flatten", lambda L: L.Flatten())),
    st.just(simple("gap", lambda L: L.GlobalAveragePooling2D())),
    st.just(simple("gmp", lambda L: L.GlobalMaxPooling2D())),
)
_LAYERS = st.one_of(
    conv(), conv(), norm(), pool(), zeropad(), ACT, DROPOUT, depthwise_or_separable(), upsample(), RELU_ARGS
)
KEEPDIMS = st.sampled_from([("gap", "GlobalAveragePooling2D"), ("gmp", "GlobalMaxPooling2D")]).map(
    lambda p: simple(f"{p[0]}(keepdims=true)", lambda L: getattr(L, p[1])(keepdims=True))
)


@st.composite
def pointwise(draw: Any) -> Twin:
    """conv<C>(k=1) with a gate's activation: the end of a squeeze-excitation."""
    filters = draw(st.sampled_from([1, 2, 3, 4, 8]))
    act = draw(st.sampled_from(["sigmoid", "relu"]))
    return Twin(f"conv{filters}(k=1, act={act})", lambda L: L.Conv2D(filters, 1, activation=act))


@st.composite
def gate(draw: Any) -> Twin:
    """gate(body): the input times the body's output, as keras.applications write it: Multiply()([x, body(x)])."""
    body = draw(st.lists(st.one_of(_LAYERS, KEEPDIMS, pointwise(), HEAD), min_size=1, max_size=3))

    def make(L: Any) -> Any:
        def apply(x: Any) -> Any:
            y = x
            for twin in body:
                y = twin.make(L)(y)
            return L.Multiply()([x, y])

        return apply

    return Twin(f"gate({' '.join(t.spec for t in body)})", make)


@st.composite
def squeeze_excitation(draw: Any) -> Twin:
    """se(r=...): Hu et al.'s squeeze-and-excitation as EfficientNet's Keras code writes it, with the
    reduced width computed here from the input's channels (``channels`` is the caller's to know)."""
    r = draw(st.sampled_from([1, 2, 4]))

    def make(L: Any) -> Any:
        def apply(x: Any) -> Any:
            c = x.shape[-1]
            y = L.GlobalAveragePooling2D(keepdims=True)(x)
            y = L.Conv2D(c // r, 1, activation="relu")(y)
            y = L.Conv2D(c, 1, activation="sigmoid")(y)
            return L.Multiply()([x, y])

        return apply

    return Twin(f"se(r={r})", make)


SPATIAL = st.one_of(_LAYERS, gate(), squeeze_excitation(), KEEPDIMS)


@st.composite
def dense(draw: Any) -> Twin:
    units = draw(st.integers(1, 12))
    act = draw(st.sampled_from([None, "relu", "softmax"]))
    kw = {} if act is None else {"activation": act}
    return Twin(f"dense{units}" + (f"(act={act})" if act else ""), lambda L: L.Dense(units, **kw))


FEATURES = st.one_of(dense(), norm().filter(lambda t: not t.spec.startswith("gn")), ACT, DROPOUT)


@st.composite
def random_model(draw: Any) -> tuple[tuple[int, ...], list[Twin]]:
    shape = (draw(st.integers(3, 20)), draw(st.integers(3, 20)), draw(st.sampled_from([1, 2, 3, 4, 8])))
    twins = draw(st.lists(SPATIAL, min_size=1, max_size=6))
    if draw(st.booleans()):
        twins += [draw(HEAD), *draw(st.lists(FEATURES, max_size=3))]
    return shape, twins


def spec_text(shape: tuple[int, ...], twins: list[Twin]) -> str:
    return f"input({', '.join(map(str, shape))})\n" + " ".join(t.spec for t in twins)


def keras_model(keras: Any, shape: tuple[int, ...], twins: list[Twin]) -> Any:
    inputs = keras.Input(shape=shape)
    x = inputs
    for twin in twins:
        x = twin.make(keras.layers)(x)
    return keras.Model(inputs, x)

"""THE registry of layer kinds: Keras class, parameters (types, ranges, defaults) and the shape/param rule.

Adding a layer kind is one ``LayerKind`` entry in ``KINDS``; the checker, the summary and both
emitters read everything from here.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from normdsl.diagnostics import did_you_mean

Shape = tuple[int, ...]  # without the batch dimension
Config = Mapping[str, object]  # resolved Keras keyword arguments, every parameter present


class Problem(Exception):
    """A layer cannot be applied: the message and hint become a diagnostic at the layer."""

    def __init__(self, message: str, hint: str | None = None, *, split: tuple[int, int] | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint
        self.split = split  # (channels, groups) of a divisibility problem: reported together per site


@dataclass(frozen=True, slots=True)
class Figures:
    """A layer's output shape, weights and multiply-accumulates."""

    shape: Shape
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0  # multiply-accumulates per sample (conv and dense only)
    problems: tuple[Problem, ...] = ()  # legal-shape but invalid (e.g. group divisibility)


# ---- parameter value types -------------------------------------------------------------------

ValueType = Literal[
    "int", "float", "bool", "pair", "padding2d", "choice", "activation", "name", "axis", "floats", "noise"
]

ACTIVATIONS = (
    "relu", "gelu", "silu", "swish", "sigmoid", "tanh", "softmax", "elu", "selu", "linear",
    "relu6", "leaky_relu", "softplus", "softsign", "exponential", "hard_sigmoid", "hard_silu", "hard_swish", "mish",
    "log_softmax",
)  # fmt: skip
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "orthogonal",
    "random_normal", "random_uniform", "truncated_normal", "variance_scaling", "zeros", "ones",
)  # fmt: skip
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,99}")


@dataclass(frozen=True, slots=True)
class Param:
    """A layer kind's parameter: its spelling in specs and in Keras, type, range and default."""

    key: str  # as written in the spec: k
    keras: str  # the Keras keyword: kernel_size
    type: ValueType
    default: object = None  # Keras's default; an argument equal to it is not written out
    lo: float | None = None  # inclusive lower bound for numbers (pairs: each element)
    hi: float | None = None
    lo_open: bool = False  # lo is exclusive
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    required: bool = False
    always: bool = False  # written even when equal to the default (padding, axis, groups: as the seed does)
    positional: bool = False  # written positionally in Keras calls (in signature order)

    def describe(self) -> str:
        """What values are allowed, in words, for error messages."""
        bounds = _bounds(self)
        return {
            "int": f"an integer{bounds}",
            "float": f"a number{bounds}",
            "bool": "true or false",
            "pair": f"an integer{bounds} or a pair of them, e.g. (1, 7)",
            "padding2d": "an integer ≥ 0, a pair (h, w), or ((top, bottom), (left, right))",
            "choice": " or ".join(self.choices) if len(self.choices) <= 3 else "one of " + ", ".join(self.choices),
            "activation": "an activation: " + ", ".join(ACTIVATIONS),
            "name": "a name of letters, digits, '_', '.' and '-', starting with a letter (at most 100 characters)",
            "axis": "an axis index such as -1",
            "floats": "a number or a tuple of numbers, one per channel",
            "noise": "a shape without the batch axis, 1 where the mask is shared, e.g. (1, 1, 1)",
        }[self.type]


def _bounds(p: Param) -> str:
    lo = "" if p.lo is None else (">" if p.lo_open else "≥") + f" {p.lo:g}"
    hi = "" if p.hi is None else ("<" if p.hi_open else "≤") + f" {p.hi:g}"
    return (
        f" {lo}"
        if lo and not hi
        else f" {hi}" if hi and not lo else f" in [{p.lo:g}, {p.hi:g}{')' if p.hi_open else ']'}" if lo else ""
    )


def _in_range(p: Param, x: float) -> bool:
    if p.lo is not None and (x <= p.lo if p.lo_open else x < p.lo):
        return False
    return p.hi is None or (x < p.hi if p.hi_open else x <= p.hi)


def coerce(p: Param, value: object) -> object:
    """The validated Keras value for a spec value, or ``Problem``."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if p.type == "int" or p.type == "axis":
        if not is_int or not _in_range(p, value):  # type: ignore[arg-type]
            raise _bad(p, value)
        return value
    if p.type == "float":
        if not (is_int or isinstance(value, float)) or not math.isfinite(value) or not _in_range(p, value):  # type: ignore[arg-type]
            raise _bad(p, value)
        return float(value)  # type: ignore[arg-type]
    if p.type == "bool":
        if not isinstance(value, bool):
            raise _bad(p, value)
        return value
    if p.type == "pair":
        items = value if isinstance(value, tuple) and len(value) == 2 else (value,)
        if not all(isinstance(v, int) and not isinstance(v, bool) and _in_range(p, v) for v in items):
            raise _bad(p, value)
        return value
    if p.type == "floats":
        items = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in items):
            raise _bad(p, value)
        return tuple(float(v) for v in items) if isinstance(value, tuple) else float(value)  # type: ignore[arg-type]
    if p.type == "noise":  # Keras's noise_shape has the batch axis first: None
        items = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items):
            raise _bad(p, value)
        return (None, *items)
    if p.type == "padding2d":
        if _pad_pairs(value) is None:
            raise _bad(p, value)
        return value
    if p.type in ("choice", "activation"):
        allowed = p.choices if p.type == "choice" else ACTIVATIONS
        if not isinstance(value, str) or value not in allowed:
            raise _bad(p, value, did_you_mean(value, allowed) if isinstance(value, str) else None)
        return value
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):  # name
        raise _bad(p, value)
    return value


def _bad(p: Param, value: object, hint: str | None = None) -> Problem:
    return Problem(f"'{p.key}' must be {p.describe()}, got {_show(value)}", hint)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    shown = repr(value)
    return shown if len(shown) <= 80 else f"{shown[:60]}… ({len(shown):,} characters)"


def _int(c: Config, key: str) -> int:
    """An integer Keras argument of a resolved call (validated by coerce before any rule reads it)."""
    value = c[key]
    assert isinstance(value, int), (key, value)
    return value


def pair(value: object) -> tuple[int, int]:
    """3 → (3, 3); (1, 7) → (1, 7)."""
    if isinstance(value, tuple):
        return (int(value[0]), int(value[1]))
    assert isinstance(value, int)
    return (value, value)


def _pad_pairs(value: object) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Keras ZeroPadding2D's three forms → ((top, bottom), (left, right)), or None if malformed."""

    def nat(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if nat(value):
        return ((value, value), (value, value))  # type: ignore[return-value]
    if isinstance(value, tuple) and len(value) == 2:
        if all(nat(v) for v in value):
            return ((value[0], value[0]), (value[1], value[1]))
        if all(isinstance(v, tuple) and len(v) == 2 and all(nat(x) for x in v) for v in value):
            return value
    return None


# ---- shape and parameter rules ---------------------------------------------------------------


def _need_rank(shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise Problem(
            f"needs a (height, width, channels) input, but receives {_fmt(shape)}",
            "put it before flatten/gap/dense, or give input(H, W, C)",
        )


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _window(size: int, k: int, s: int, d: int, padding: object) -> int:
    """Keras's output length of a sliding window (conv or pool) along one axis."""
    if padding == "same":
        return (size - 1) // s + 1
    return (size - d * (k - 1) - 1) // s + 1


def _slide(
    shape: Shape, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int], padding: object
) -> tuple[int, int]:
    h, w = (_window(shape[i], k[i], s[i], d[i], padding) for i in (0, 1))
    if h < 1 or w < 1:
        span = f"{d[0] * (k[0] - 1) + 1}×{d[1] * (k[1] - 1) + 1}"
        raise Problem(
            f"receives {_fmt(shape)}, but its {span} window with padding '{padding}' leaves no output ({h}×{w})",
            "use pad=same, a smaller kernel or stride, or downsample less before it",
        )
    return h, w


def _strides_dilation(
    c: Config, *, exclusive: bool = False
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Kernel, strides and dilation; ``exclusive``: Conv2D refuses strides and dilation both above 1
    (DepthwiseConv2D and SeparableConv2D compute them together)."""
    k, s, d = pair(c["kernel_size"]), pair(c["strides"]), pair(c["dilation_rate"])
    if exclusive and max(s) > 1 and max(d) > 1:
        raise Problem(
            f"strides {s} cannot be combined with dilation {d} (Keras allows only one of them above 1)",
            "use s=1 with dilation, or dilation=1 with strides",
        )
    return k, s, d


def conv(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    k, s, d = _strides_dilation(c, exclusive=True)
    g, f = _int(c, "groups"), _int(c, "filters")
    problems = []
    if shape[2] % g or f % g:
        which = " and ".join(f"{n} {what}" for n, what in ((shape[2], "input channels"), (f, "filters")) if n % g)
        common = math.gcd(shape[2], f)
        problems.append(Problem(f"{which} cannot be split into {g} groups", "valid group counts: " + _divisors(common)))
    h, w = _slide(shape, k, s, d, c["padding"])
    per_filter = k[0] * k[1] * (shape[2] // g)
    weights = per_filter * f + (f if c["use_bias"] else 0)
    return Figures((h, w, f), weights, 0, h * w * per_filter * f, tuple(problems))


def depthwise(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    k, s, d = _strides_dilation(c)
    out_channels = shape[2] * _int(c, "depth_multiplier")
    h, w = _slide(shape, k, s, d, c["padding"])
    weights = k[0] * k[1] * out_channels + (out_channels if c["use_bias"] else 0)
    return Figures((h, w, out_channels), weights, 0, h * w * k[0] * k[1] * out_channels)


def separable(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    k, s, d = _strides_dilation(c)
    mid, f = shape[2] * _int(c, "depth_multiplier"), _int(c, "filters")
    h, w = _slide(shape, k, s, d, c["padding"])
    weights = k[0] * k[1] * mid + mid * f + (f if c["use_bias"] else 0)
    return Figures((h, w, f), weights, 0, h * w * (k[0] * k[1] * mid + mid * f))


def upsample(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    sh, sw = pair(c["size"])
    return Figures((shape[0] * sh, shape[1] * sw, shape[2]))


def pool(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    k = pair(c["pool_size"])
    s = pair(c["strides"] if c["strides"] is not None else c["pool_size"])
    h, w = _slide(shape, k, s, (1, 1), c["padding"])
    return Figures((h, w, shape[2]))


def global_pool(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    return Figures((1, 1, shape[2]) if c["keepdims"] else (shape[2],))


def flatten(shape: Shape, c: Config) -> Figures:
    return Figures((math.prod(shape),))


def dense(shape: Shape, c: Config) -> Figures:
    units, fan_in = _int(c, "units"), shape[-1]
    weights = fan_in * units + (units if c["use_bias"] else 0)
    return Figures((*shape[:-1], units), weights, 0, math.prod(shape[:-1]) * fan_in * units)


def same(shape: Shape, c: Config) -> Figures:
    return Figures(shape)


def zeropad(shape: Shape, c: Config) -> Figures:
    _need_rank(shape, 3)
    (t, b), (left, r) = _pad_pairs(c["padding"]) or ((0, 0), (0, 0))
    return Figures((shape[0] + t + b, shape[1] + left + r, shape[2]))


def _axis_size(shape: Shape, axis: int) -> int:
    """The size of Keras axis ``axis`` (counted with the batch dimension) of a batch of ``shape``."""
    rank = len(shape)
    if not (-rank <= axis <= -1 or 1 <= axis <= rank):
        valid = ", ".join(str(a) for a in (*range(-rank, 0), *range(1, rank + 1)))
        raise Problem(
            f"axis {axis} does not exist in a {_fmt(shape)} input", f"valid axes: {valid} (0 is the batch axis)"
        )
    return shape[axis - 1] if axis > 0 else shape[axis]


def batch_norm(shape: Shape, c: Config) -> Figures:
    n = _axis_size(shape, _int(c, "axis"))
    return Figures(shape, (bool(c["center"]) + bool(c["scale"])) * n, 2 * n)  # beta, gamma; moving mean, variance


def normalization(shape: Shape, c: Config) -> Figures:
    """Keras's Normalization: fixed mean and variance (no weights), or weights to adapt (2·C + 1)."""
    n = _axis_size(shape, _int(c, "axis"))
    mean, variance = c["mean"], c["variance"]
    if (mean is None) != (variance is None):
        raise Problem("give both mean= and var=, or neither (then Keras adapts them: normalize.adapt(data))")
    if mean is None:
        return Figures(shape, 0, 2 * n + 1)  # mean, variance, count
    for key, value in (("mean", mean), ("var", variance)):
        if isinstance(value, tuple) and len(value) not in (1, n):
            raise Problem(f"{key}= has {len(value)} values for {n} channels", f"give one value or {n}")
    return Figures(shape)


def layer_scale(shape: Shape, c: Config) -> Figures:
    n = _int(c, "projection_dim")
    if shape[-1] != n:
        raise Problem(f"it scales {n} channels but receives {shape[-1]}", f"write layerscale{shape[-1]}")
    return Figures(shape, n)


def layer_norm(shape: Shape, c: Config) -> Figures:
    n = _axis_size(shape, _int(c, "axis"))
    return Figures(shape, 2 * n)


def group_norm(shape: Shape, c: Config) -> Figures:
    channels, groups = shape[-1], _int(c, "groups")
    problems = []
    if groups != -1 and (groups > channels or channels % groups):
        problems.append(
            Problem(
                f"{channels} channels cannot be split into {groups} groups",
                "valid group counts: " + _divisors(channels),
                split=(channels, groups),
            )
        )
    return Figures(shape, 2 * channels, 0, 0, tuple(problems))


def add(shapes: tuple[Shape, ...], c: Config) -> Figures:
    shortcut, body = shapes
    if shortcut != body:
        raise Problem(
            f"the residual's paths end in different shapes: body {_fmt(body)}, shortcut {_fmt(shortcut)}",
            f"make the body end in {_fmt(shortcut)}, or project the input: res(..., shortcut=conv{body[-1]}(k=1) bn)",
        )
    return Figures(body)


def multiply(shapes: tuple[Shape, ...], c: Config) -> Figures:
    """Keras's Multiply: shapes broadcast as NumPy's do (aligned on the last axis; a 1 stretches)."""
    x, gate = shapes
    n = max(len(x), len(gate))
    padded = [(1,) * (n - len(s)) + s for s in (x, gate)]
    if any(a != b and 1 not in (a, b) for a, b in zip(*padded, strict=True)):
        raise Problem(
            f"the gate's output {_fmt(gate)} cannot scale its input {_fmt(x)}",
            f"end the gate in {_fmt(x)}, or in ({x[-1]},) or (1, 1, {x[-1]}): gap(keepdims=true) conv{x[-1]}(k=1)",
        )
    return Figures(tuple(max(a, b) for a, b in zip(*padded, strict=True)))


def concat(shapes: tuple[Shape, ...], c: Config) -> Figures:
    if len({len(s) for s in shapes}) > 1 or len({s[:-1] for s in shapes}) > 1:
        listed = ", ".join(_fmt(s) for s in shapes)
        raise Problem(
            f"branches can only be concatenated on channels when all else agrees, got {listed}",
            "make every branch keep the same height and width (pad=same, equal strides)",
        )
    return Figures((*shapes[0][:-1], sum(s[-1] for s in shapes)))


def split_problem(channels: list[int], groups: int) -> Problem:
    """One problem for a group norm that fails at several channel counts (a norm used in many places)."""
    counts = sorted(set(channels))
    listed = str(counts[0]) if len(counts) == 1 else ", ".join(map(str, counts[:-1])) + f" and {counts[-1]}"
    hint = "valid group counts" + ("" if len(counts) == 1 else " for all of them") + ": " + _divisors(math.gcd(*counts))
    return Problem(f"{listed} channels cannot be split into {groups} groups", hint)


_DIVISOR_SEARCH = 1024  # divisors are sought up to this (and their cofactors): a hint costs microseconds


@functools.lru_cache(maxsize=1024)  # a failing group norm's hint is wanted again for its error message
def _divisors(n: int, shown: int = 24) -> str:
    """n's divisors in order (beyond ``shown`` of them, the smallest and largest); for n above
    _DIVISOR_SEARCH², only those up to _DIVISOR_SEARCH and their cofactors, and the hint says so."""
    small = [d for d in range(1, min(math.isqrt(n), _DIVISOR_SEARCH) + 1) if n % d == 0]
    found = small + [n // d for d in reversed(small) if d * d != n]
    partial = n >= (_DIVISOR_SEARCH + 1) ** 2  # stopped early: divisors between the two lists were not sought
    if len(found) <= shown and not partial:
        return ", ".join(map(str, found))
    half = min(shown // 2, len(small))
    rest = "possibly others" if partial else f"{len(found) - 2 * half} more"
    return f"{', '.join(map(str, found[:half]))}, … ({rest}), {', '.join(map(str, found[-half:]))}"


# ---- the registry ----------------------------------------------------------------------------

Rule = Callable[[tuple[Shape, ...], Config], Figures]  # input shapes (one for most layers) → figures


def _one(rule: Callable[[Shape, Config], Figures]) -> Rule:
    """A rule for a single-input layer."""
    return lambda shapes, c: rule(shapes[0], c)


@dataclass(frozen=True, slots=True)
class LayerKind:
    """One entry of the registry: a layer kind, its Keras class, parameters and rules."""

    name: str
    keras_class: str
    rule: Rule
    doc: str
    width: str | None = None  # the Keras keyword that conv<N>'s N fills (filters, units); None: no width
    params: tuple[Param, ...] = ()
    fixed: tuple[tuple[str | None, object], ...] = ()  # Keras arguments the kind implies; key None: positional
    positional: str | None = None  # spec key a positional argument fills: gn(16) → groups
    width_keyword: bool = False  # the width is passed by keyword: LayerScale(init_values=..., projection_dim=N)
    is_norm: bool = False
    with_args: LayerKind | None = None  # the kind used instead when arguments are given: relu(max=6) → ReLU
    module: str | None = None  # where keras_class lives when it is not keras.layers (a plugin's own layer)
    operator: str | None = None  # + or *: tensor arithmetic (a Keras operation named keras_class, not a layer)
    params_by_key: dict[str, Param] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params_by_key", {p.key: p for p in self.params})


def _name() -> Param:
    return Param("name", "name", "name")


def _eps() -> Param:
    return Param("eps", "epsilon", "float", 1e-3, lo=0, lo_open=True)


def _padding(always: bool) -> Param:
    return Param("pad", "padding", "choice", "valid", choices=("valid", "same"), always=always)


def _activation(name: str, with_args: LayerKind | None = None, keras: str | None = None) -> LayerKind:
    """``name`` as a layer: Activation(keras or name)."""
    keras = keras or name
    doc = f"Activation({keras!r})" + (f"; with arguments {with_args.doc}" if with_args else "")
    return LayerKind(
        name, "Activation", _one(same), doc, fixed=((None, keras),), params=(_name(),), with_args=with_args
    )


def _conv_params(*extra: Param) -> tuple[Param, ...]:
    """The parameters of the convolutions: kernel, strides, padding, dilation, ``extra``, activation, bias, name."""
    return (
        Param("k", "kernel_size", "pair", 3, lo=1, always=True, positional=True),
        Param("s", "strides", "pair", (1, 1), lo=1),
        _padding(always=True),
        Param("dilation", "dilation_rate", "pair", (1, 1), lo=1),
        *extra,
        Param("act", "activation", "activation", None),
        Param("bias", "use_bias", "bool", True),
        _name(),
    )


_INIT = Param("init", "kernel_initializer", "choice", "glorot_uniform", choices=INITIALIZERS)
_CONVNEXT = "keras.src.applications.convnext"  # keras.applications' own LayerScale and StochasticDepth


_MULTIPLIER = Param("mult", "depth_multiplier", "int", 1, lo=1)


_KEEPDIMS = Param("keepdims", "keepdims", "bool", False)

_RELU = LayerKind(
    "relu",
    "ReLU",
    _one(same),
    "ReLU(max_value=..., negative_slope=..., threshold=...)",
    params=(
        Param("max", "max_value", "float", None, lo=0),
        Param("slope", "negative_slope", "float", 0.0, lo=0),
        Param("threshold", "threshold", "float", 0.0),
        _name(),
    ),
)


def _pool(name: str, cls: str) -> LayerKind:
    return LayerKind(
        name,
        cls,
        _one(pool),
        f"{cls}: pool 2 by default, strides = pool size unless s= is given",
        params=(
            Param("pool", "pool_size", "pair", 2, lo=1, always=True, positional=True),  # Keras 3 requires it
            Param("s", "strides", "pair", None, lo=1),
            _padding(always=True),
            _name(),
        ),
        positional="pool",
    )


_KIND_LIST: tuple[LayerKind, ...] = (
    LayerKind(
        "conv",
        "Conv2D",
        _one(conv),
        "Conv2D(N, 3, padding='valid'): a 3×3 valid convolution with N filters",
        width="filters",
        params=_conv_params(Param("groups", "groups", "int", 1, lo=1), _INIT),
        positional="k",
    ),
    LayerKind(
        "bn",
        "BatchNormalization",
        _one(batch_norm),
        "BatchNormalization(axis=-1): 4·C weights, 2·C of them non-trainable",
        params=(
            Param("axis", "axis", "axis", -1, always=True),
            Param("momentum", "momentum", "float", 0.99, lo=0, hi=1),
            _eps(),
            Param("sync", "synchronized", "bool", False),
            Param("center", "center", "bool", True),
            Param("scale", "scale", "bool", True),
            _name(),
        ),
        is_norm=True,
    ),
    LayerKind(
        "ln",
        "LayerNormalization",
        _one(layer_norm),
        "LayerNormalization(axis=-1)",
        params=(Param("axis", "axis", "axis", -1, always=True), _eps(), _name()),
        is_norm=True,
    ),
    LayerKind(
        "in",
        "GroupNormalization",
        _one(group_norm),
        "instance norm: GroupNormalization(groups=-1, axis=-1)",
        params=(_eps(), _name()),
        fixed=(("groups", -1), ("axis", -1)),
        is_norm=True,
    ),
    LayerKind(
        "gn",
        "GroupNormalization",
        _one(group_norm),
        "GroupNormalization(groups=G, axis=-1): the channels must split evenly into G groups",
        params=(Param("groups", "groups", "int", None, lo=1, required=True, always=True), _eps(), _name()),
        fixed=(("axis", -1),),
        positional="groups",
        is_norm=True,
    ),
    LayerKind(
        "dwconv",
        "DepthwiseConv2D",
        _one(depthwise),
        "DepthwiseConv2D(3, padding='valid'): one 3×3 filter per channel (× mult)",
        params=_conv_params(_MULTIPLIER),
        positional="k",
    ),
    LayerKind(
        "sepconv",
        "SeparableConv2D",
        _one(separable),
        "SeparableConv2D(N, 3, padding='valid'): depthwise then 1×1 pointwise to N filters",
        width="filters",
        params=_conv_params(_MULTIPLIER),
        positional="k",
    ),
    _activation("relu", with_args=_RELU),
    *(_activation(a) for a in ("gelu", "silu", "swish", "sigmoid", "tanh", "softmax", "elu", "selu")),
    _activation("linear"),
    _activation("hardswish", keras="hard_swish"),
    _activation("hardsigmoid", keras="hard_sigmoid"),
    _pool("maxpool", "MaxPooling2D"),
    _pool("avgpool", "AveragePooling2D"),
    LayerKind(
        "gap",
        "GlobalAveragePooling2D",
        _one(global_pool),
        "GlobalAveragePooling2D: (H, W, C) → (C,), or (1, 1, C) with keepdims=true",
        params=(_KEEPDIMS, _name()),
    ),
    LayerKind(
        "gmp",
        "GlobalMaxPooling2D",
        _one(global_pool),
        "GlobalMaxPooling2D: (H, W, C) → (C,), or (1, 1, C) with keepdims=true",
        params=(_KEEPDIMS, _name()),
    ),
    LayerKind("flatten", "Flatten", _one(flatten), "Flatten", params=(_name(),)),
    LayerKind(
        "dense",
        "Dense",
        _one(dense),
        "Dense(N) on the last axis",
        width="units",
        params=(
            Param("act", "activation", "activation", None),
            Param("bias", "use_bias", "bool", True),
            _INIT,
            _name(),
        ),
    ),
    LayerKind(
        "dropout",
        "Dropout",
        _one(same),
        "Dropout(p), p in [0, 1); noise=(1, 1, 1) drops whole samples (drop-connect)",
        params=(
            Param("p", "rate", "float", None, lo=0, hi=1, hi_open=True, required=True, positional=True),
            Param("noise", "noise_shape", "noise", None),
            _name(),
        ),
        positional="p",
    ),
    *(
        LayerKind(
            name,
            cls,
            _one(same),
            f"x {op} c: Keras's tensor arithmetic (an operation, not a layer), as MobileNetV3's hard_sigmoid writes it",
            params=(Param("c", "c", "float", None, required=True, positional=True),),
            positional="c",
            operator=op,
        )
        for name, cls, op in (("plus", "Add", "+"), ("times", "Multiply", "*"))
    ),
    LayerKind(
        "rescale",
        "Rescaling",
        _one(same),
        "Rescaling(scale, offset): x · scale + offset (1/255 is rescale(0.00392156862745098))",
        params=(
            Param("scale", "scale", "float", None, required=True, positional=True),
            Param("offset", "offset", "float", 0.0),
            _name(),
        ),
        positional="scale",
    ),
    LayerKind(
        "normalize",
        "Normalization",
        _one(normalization),
        "Normalization(axis=-1): (x - mean) / √var per channel; without mean= and var=, weights to adapt",
        params=(
            Param("axis", "axis", "axis", -1, always=True),
            Param("mean", "mean", "floats", None),
            Param("var", "variance", "floats", None),
            _name(),
        ),
    ),
    LayerKind(
        "layerscale",
        "LayerScale",
        _one(layer_scale),
        "keras.applications' LayerScale (ConvNeXt): x · γ, γ learned per channel (N channels), from init",
        width="projection_dim",
        width_keyword=True,
        params=(Param("init", "init_values", "float", None, required=True, positional=True), _name()),
        positional="init",
        module=_CONVNEXT,
    ),
    LayerKind(
        "droppath",
        "StochasticDepth",
        _one(same),
        "keras.applications' StochasticDepth (ConvNeXt): drops the residual branch per sample, rate p",
        params=(
            Param("p", "drop_path_rate", "float", None, lo=0, hi=1, hi_open=True, required=True, positional=True),
            _name(),
        ),
        positional="p",
        module=_CONVNEXT,
    ),
    LayerKind(
        "zeropad",
        "ZeroPadding2D",
        _one(zeropad),
        "ZeroPadding2D(p): p, (h, w) or ((top, bottom), (left, right))",
        params=(Param("p", "padding", "padding2d", (1, 1), positional=True), _name()),
        positional="p",
    ),
    LayerKind(
        "upsample",
        "UpSampling2D",
        _one(upsample),
        "UpSampling2D(size): repeat rows and columns, 2 by default",
        params=(
            Param("size", "size", "pair", (2, 2), lo=1, positional=True),
            Param(
                "interp",
                "interpolation",
                "choice",
                "nearest",
                choices=("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area"),
            ),
            _name(),
        ),
        positional="size",
    ),
)


class Merge(enum.Enum):
    """How paths are joined: res(...) adds, gate(...) multiplies, cat(...) concatenates. Not written as layers."""

    RES = "res"
    CAT = "cat"
    GATE = "gate"
    RES_BODY_FIRST = "res, body first"  # res(..., first=body): Add()([body, shortcut])
    GATE_BODY_FIRST = "gate, body first"


MERGES: dict[Merge, LayerKind] = {
    Merge.RES: LayerKind("res", "Add", add, "Add()([shortcut, body])"),
    Merge.GATE: LayerKind("gate", "Multiply", multiply, "Multiply()([x, gate])"),
    Merge.RES_BODY_FIRST: LayerKind("res", "Add", lambda shapes, c: add(shapes[::-1], c), "Add()([body, shortcut])"),
    Merge.GATE_BODY_FIRST: LayerKind("gate", "Multiply", lambda s, c: multiply(s[::-1], c), "Multiply()([gate, x])"),
    Merge.CAT: LayerKind("cat", "Concatenate", concat, "Concatenate(axis=-1)(branches)", fixed=(("axis", -1),)),
}

KINDS: dict[str, LayerKind] = {k.name: k for k in _KIND_LIST}
IDENTITY = "id"  # not a layer: the input itself, as a branch of cat(...) or res(...)


@dataclass(frozen=True, slots=True)
class Composite:
    """A kind that expands, once its input's shape is known, into several layers: a block written in
    the language whose first parameter is bound to the input's channels (the caller passes the rest).
    The summary and the generated code show it as one unit (a function of its own)."""

    name: str
    definition: str  # let se(c, r=4) = ...: c is the input's channels
    doc: str


COMPOSITES: dict[str, Composite] = {
    c.name: c
    for c in (
        Composite(
            "se",
            "let se(c, r=4, act=relu, gating=sigmoid) = "
            "gate(gap(keepdims=true) conv{c // r}(k=1, act=act) conv{c}(k=1, act=gating))",
            "squeeze-and-excitation: the input times a per-channel gate computed from its average,"
            " through a bottleneck of C // r channels",
        ),
    )
}


# ---- how a layer is called in Keras ----------------------------------------------------------


class Code(str):
    """Python expression text standing for a value in generated code (a block parameter: 4 * f).

    Its repr is the text itself, and it never equals a default, so it is always written out.
    """

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class KerasCall:
    """A layer kind's Keras call for given argument values."""

    kind: LayerKind
    config: dict[str, object]  # every Keras argument, defaults filled in: what the rules read
    args: tuple[object, ...]  # positional arguments
    kwargs: tuple[tuple[str, object], ...]  # keyword arguments, in order


def keras_call(kind: LayerKind, values: Mapping[str, object], width: object) -> KerasCall:
    """The call: width and positional parameters first, then the arguments always written (padding,
    axis, groups, as the seed notebook does), then the kind's fixed ones, then any other argument
    that differs from Keras's default."""
    config: dict[str, object] = {p.keras: values.get(p.keras, p.default) for p in kind.params}
    args: list[object] = []
    always: list[tuple[str, object]] = []
    optional: list[tuple[str, object]] = []
    if kind.width is not None:
        config[kind.width] = width
        if kind.width_keyword:
            always.append((kind.width, width))
        else:
            args.append(width)
    for key, value in kind.fixed:
        if key is None:
            args.append(value)
        else:
            config[key] = value
    for p in kind.params:
        value = config[p.keras]
        if p.always or (p.keras in values and not _same(p.type, value, p.default)):
            if p.positional:
                args.append(value)
            else:
                (always if p.always else optional).append((p.keras, value))
    fixed = [(k, v) for k, v in kind.fixed if k is not None]
    return KerasCall(kind, config, tuple(args), tuple(always + fixed + optional))


def _same(value_type: str, value: object, default: object) -> bool:
    if isinstance(value, Code):
        return False
    if value_type == "pair" and default is not None:
        return pair(value) == pair(default)
    return type(value) is type(default) and value == default

"""The PyTorch target: each layer of a checked network as the ``torch.nn`` module its ``__init__``
makes (a :class:`Ctor`) and the steps its ``forward`` applies (:data:`Step`), computing what Keras
computes. The generated module (:func:`render`, through ``templates/_torch_model.py.j2``) and the
direct build (``emit_torch.build_module``) read the same :class:`TorchLayer` values: source is
written from them here (:func:`ctor_source`, :func:`step_source`), modules are made and steps
applied from them by :func:`make` and :func:`apply`, which are handed ``torch`` (this module never
imports it), as the Keras target is handed ``keras``.

PyTorch is NCHW: the spec's ``input(H, W, C)`` is ``(N, C, H, W)``. Where the frameworks quietly
differ, the step says what Keras does: "same" padding with strides pads bottom/right more
(explicit ``F.pad``), batch norm's momentum is ``1 - momentum``, layer norm normalizes each position
over channels (channels last around it), flatten is in Keras's HWC order (channels last before it),
a dense layer on a feature map acts on channels, softmax is over channels.

What PyTorch cannot compute the same way is a diagnostic at the layer (:func:`problems`), before any
code is written. The target renders the checked :class:`~normdsl.network.Network`, not the IR of
program.py: torch modules are made with their input's size, which the network knows for each layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normdsl._version import __version__
from normdsl.diagnostics import Diagnostic, SpecError, one_line
from normdsl.layers import KINDS, LayerKind
from normdsl.network import NetLayer, Network
from normdsl.pysource import LINE_LENGTH, PyCode, SafeText, comment, formatted, literal, safe_text, width

_CONVNEXT = "keras.src.applications.convnext"

Args = tuple[object, ...]
Kwargs = tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class Ctor:
    """A call made in ``__init__``: ``nn.Conv2d(3, 32, 3, padding=1)``; arguments may be Ctors."""

    path: str  # nn.Conv2d, nn.Sequential, nn.Parameter, torch.full
    args: Args = ()
    kwargs: Kwargs = ()


class _Training:
    """``self.training`` as an argument of a step."""

    def __repr__(self) -> str:
        return "self.training"


TRAINING = _Training()


@dataclass(frozen=True, slots=True)
class Dtype:
    """``torch.int64`` as an argument of a Ctor."""

    name: str


@dataclass(frozen=True, slots=True)
class Fn:
    """``path(x, *args, **kwargs)``: F.relu(x), torch.flatten(x, 1)."""

    path: str
    args: Args = ()
    kwargs: Kwargs = ()


@dataclass(frozen=True, slots=True)
class Method:
    """``x.name(*args)``: x.permute(0, 2, 3, 1)."""

    name: str
    args: Args = ()
    kwargs: Kwargs = ()


@dataclass(frozen=True, slots=True)
class Own:
    """``self.<layer>(x)``: the layer's module."""


@dataclass(frozen=True, slots=True)
class Arith:
    """``x + c`` or ``x * c``: c a number, or one per channel (a tuple), or the layer's own parameter (None)."""

    op: str
    value: float | tuple[float, ...] | None
    rank: int = 1  # the tensor's rank without the batch axis (a per-channel value is shaped to it)


@dataclass(frozen=True, slots=True)
class Drop:
    """``x * F.dropout(x.new_ones(x.shape[0], *shape), p, self.training)``: dropout with a mask shared
    along the axes of Keras's noise_shape (1, 1, 1: whole samples, keras.applications' StochasticDepth)."""

    p: float
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Relu:
    """Keras's ReLU(max_value, negative_slope, threshold) where no single torch function is it."""

    max_value: float | None
    slope: float
    threshold: float


@dataclass(frozen=True, slots=True)
class AvgSame:
    """Keras's "same" average pooling with uneven padding: the mean of the window's real elements."""

    pool: tuple[int, int]
    strides: tuple[int, int]
    pad: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Standardize:
    """Keras's adapted Normalization: ``(x - mean) / max(sqrt(variance), 1e-7)`` from the layer's buffers."""

    rank: int


Step = Fn | Method | Own | Arith | Drop | Relu | AvgSame | Standardize


@dataclass(frozen=True, slots=True)
class TorchLayer:
    """One layer of the network in PyTorch: its module (None: it holds no state) and forward steps."""

    index: int  # in Network.layers
    name: str | None  # the module's attribute (the Keras layer's name: conv2d_3), None without a module
    module: Ctor | None
    steps: tuple[Step, ...]
    join: str | None = None  # +, * or cat: a merge of the inputs, before the steps
    expand: tuple[int | None, ...] = ()  # per input of a merge: channels of a rank-1 operand broadcast as (C, 1, 1)
    buffers: tuple[tuple[str, Ctor], ...] = ()  # registered on the module: ("mean", torch.zeros(3))


@dataclass(frozen=True, slots=True)
class Figures:
    """What PyTorch counts: parameters, floating-point buffers (running statistics) and counters
    (num_batches_tracked, one per batch norm)."""

    parameters: int = 0
    buffers: int = 0
    counters: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.parameters + other.parameters, self.buffers + other.buffers, self.counters + other.counters)


# ---- what cannot be matched --------------------------------------------------------------------


class Unsupported(Exception):
    """A layer PyTorch cannot compute as Keras does: becomes a diagnostic at the layer."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def problems(network: Network) -> list[Diagnostic]:
    """The layers the PyTorch target cannot write as Keras computes them, as errors at their spans."""
    found = []
    if len(network.input_shape) not in (1, 3):
        span = network.spec.input.span if network.spec is not None and network.spec.input is not None else None
        message = f"the torch target takes inputs (C,) or (H, W, C), not {network.input_shape}"
        if span is not None:
            found.append(Diagnostic("error", message, span, "give input(H, W, C) or input(N)"))
    names = module_names(network)
    for index, layer in enumerate(network.layers):
        try:
            torch_layer(index, network, names)
        except Unsupported as exc:
            found.append(Diagnostic("error", f"{layer.text}: {exc.message} (--target torch)", layer.span, exc.hint))
    return found


def check_torch(network: Network) -> Network:
    """The network, or a SpecError listing what the torch target cannot write."""
    found = problems(network)
    if found:
        raise SpecError(found, network.source, network.filename)
    return network


# ---- layers ------------------------------------------------------------------------------------


def module_names(network: Network) -> list[str]:
    """Each layer's name as the Keras direct build and a fresh session name it (conv2d, conv2d_1, ...:
    per class, in order; a spec's name= as given), made a Python identifier (``-``, ``.`` → ``_``)."""
    taken = {str(v) for layer in network.layers for k, v in layer.kwargs if k == "name"}
    counts: dict[str, int] = {}
    names: list[str] = []
    used: set[str] = set()
    for layer in network.layers:
        given = dict(layer.kwargs).get("name")
        if isinstance(given, str):
            name = python_name(given)
        else:
            base = _snake(layer.keras_class)
            n = counts.get(base, 0)
            counts[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
            while name in taken:
                name += "_"
        while name in used or name in _RESERVED:
            name += "_"
        used.add(name)
        names.append(name)
    return names


def python_name(name: str) -> str:
    """A Keras layer name as a Python attribute: ``stem-conv.1`` → ``stem_conv_1``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


_RESERVED = frozenset({"training", "forward", "inputs", "x", "self", "torch", "nn", "F"})


def _snake(keras_class: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", keras_class).lower()
    return s.replace("conv2_d", "conv2d").replace("2_d", "2d")


def config(layer: NetLayer) -> dict[str, object]:
    """Every Keras argument of the layer's call by keyword, defaults filled in."""
    kind = _kind(layer)
    values: dict[str, object] = {p.keras: p.default for p in kind.params}
    args = list(layer.args)
    if kind.width is not None and not kind.width_keyword and args:
        values[kind.width] = args.pop(0)
    for key, value in kind.fixed:
        if key is None:
            values["fixed"] = args.pop(0)
        else:
            values[key] = value
    positional = [p for p in kind.params if p.positional]
    if len(args) != len(positional):
        positional = [p for p in positional if p.always]
    values.update((p.keras, value) for p, value in zip(positional, args, strict=True))
    values.update(layer.kwargs)
    return values


def _int(value: object) -> int:
    """An integer of a validated call (the checker made it one)."""
    assert isinstance(value, int), value
    return value


def _float(value: object) -> float:
    """A number of a validated call."""
    assert isinstance(value, int | float), value
    return float(value)


def _kind(layer: NetLayer) -> LayerKind:
    kind = KINDS[layer.kind]
    if kind.with_args is not None and layer.keras_class == kind.with_args.keras_class:
        return kind.with_args
    return kind


def torch_layer(index: int, network: Network, names: list[str]) -> TorchLayer:
    """Layer ``index`` in PyTorch, or Unsupported."""
    layer = network.layers[index]
    rank_in, rank_out = len(layer.input_shape), len(layer.output_shape)
    if rank_in not in (1, 3) or rank_out not in (1, 3):
        raise Unsupported(
            f"the torch target writes tensors of shape (C,) or (H, W, C), not {layer.input_shape} → {layer.output_shape}"
        )
    if layer.kind in ("res", "gate", "cat"):
        shapes = [network.layers[i].output_shape if i >= 0 else network.input_shape for i in layer.inputs]
        expand = tuple(s[-1] if len(s) == 1 and rank_out == 3 else None for s in shapes)
        join = {"Add": "+", "Multiply": "*", "Concatenate": "cat"}[layer.keras_class]
        return TorchLayer(index, None, None, (), join, expand)
    if (layer.module is not None and layer.module != _CONVNEXT) or layer.kind not in KINDS:
        raise Unsupported(f"{layer.keras_class} from {layer.module} has no PyTorch equivalent in normdsl")
    rule = _RULES.get(layer.keras_class)
    if rule is None:
        raise Unsupported(f"Keras's {layer.keras_class} has no PyTorch equivalent in normdsl")
    module, steps = rule(layer, config(layer))
    buffers: tuple[tuple[str, Ctor], ...] = ()
    if layer.keras_class == "Normalization" and module is not None:  # adapted: its statistics as buffers
        channels = layer.input_shape[-1]
        buffers = (
            ("mean", Ctor("torch.zeros", (channels,))),
            ("variance", Ctor("torch.ones", (channels,))),
            ("count", Ctor("torch.zeros", ((),), (("dtype", Dtype("int64")),))),
        )
    return TorchLayer(index, names[index] if module is not None else None, module, tuple(steps), buffers=buffers)


def layers(network: Network) -> list[TorchLayer]:
    """Every layer in PyTorch (the network passed check_torch)."""
    names = module_names(network)
    return [torch_layer(index, network, names) for index in range(len(network.layers))]


Rule = Callable[[NetLayer, dict[str, object]], tuple[Ctor | None, list[Step]]]


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, tuple):
        return (int(value[0]), int(value[1]))
    assert isinstance(value, int), value
    return (value, value)


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis: (before, after), the extra one after."""
    out = (size + s - 1) // s
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _padding(
    layer: NetLayer, c: dict[str, object], k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """(symmetric padding the torch layer does itself, uneven padding F.pad does before it: left, right, top, bottom)."""
    if c["padding"] != "same":
        return (0, 0), None
    top, bottom = _same_pad(layer.input_shape[0], k[0], s[0], d[0])
    left, right = _same_pad(layer.input_shape[1], k[1], s[1], d[1])
    if top == bottom and left == right:
        return (top, left), None
    return (0, 0), (left, right, top, bottom)


def _conv_kwargs(s: tuple[int, int], padding: tuple[int, int], d: tuple[int, int], groups: int, bias: bool) -> Kwargs:
    out: list[tuple[str, object]] = []
    if s != (1, 1):
        out.append(("stride", _short(s)))
    if padding != (0, 0):
        out.append(("padding", _short(padding)))
    if d != (1, 1):
        out.append(("dilation", _short(d)))
    if groups != 1:
        out.append(("groups", groups))
    if not bias:
        out.append(("bias", False))
    return tuple(out)


def _short(p: tuple[int, int]) -> int | tuple[int, int]:
    return p[0] if p[0] == p[1] else p


def _pre(pad: tuple[int, int, int, int] | None, value: float | None = None) -> list[Step]:
    if pad is None:
        return []
    return [Fn("F.pad", (pad,), () if value is None else (("value", value),))]


def _conv(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    k, s, d = _pair(c["kernel_size"]), _pair(c["strides"]), _pair(c["dilation_rate"])
    padding, pad = _padding(layer, c, k, s, d)
    cin = layer.input_shape[-1]
    bias = bool(c["use_bias"])
    if layer.keras_class == "Conv2D":
        args: Args = (cin, c["filters"], _short(k))
        module = Ctor("nn.Conv2d", args, _conv_kwargs(s, padding, d, _int(c["groups"]), bias))
    else:
        mid = cin * _int(c["depth_multiplier"])
        depthwise = Ctor("nn.Conv2d", (cin, mid, _short(k)), _conv_kwargs(s, padding, d, cin, bias))
        if layer.keras_class == "DepthwiseConv2D":
            module = depthwise
        else:
            depthwise = Ctor("nn.Conv2d", (cin, mid, _short(k)), _conv_kwargs(s, padding, d, cin, False))
            pointwise = Ctor("nn.Conv2d", (mid, c["filters"], 1), _conv_kwargs((1, 1), (0, 0), (1, 1), 1, bias))
            module = Ctor("nn.Sequential", (depthwise, pointwise))
    return module, [*_pre(pad), Own(), *_activation(c["activation"])]


def _dense(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    kwargs: Kwargs = () if c["use_bias"] else (("bias", False),)
    module = Ctor("nn.Linear", (layer.input_shape[-1], c["units"]), kwargs)
    if len(layer.input_shape) == 3:  # on each position's channels
        return module, [_CHANNELS_LAST, Own(), _CHANNELS_FIRST, *_activation(c["activation"])]
    return module, [Own(), *_activation(c["activation"])]


_CHANNELS_LAST = Method("permute", (0, 2, 3, 1))
_CHANNELS_FIRST = Method("permute", (0, 3, 1, 2))


def _momentum(keras: float) -> float:
    return round(1.0 - keras, 12)


def _axis(layer: NetLayer, c: dict[str, object]) -> None:
    axis = c["axis"]
    if axis not in (-1, len(layer.input_shape)):
        raise Unsupported(
            f"normalizing along axis {axis} (the torch target normalizes channels: axis=-1)", "remove axis="
        )


def _batch_norm(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    _axis(layer, c)
    if c["center"] != c["scale"]:
        raise Unsupported(
            "PyTorch's batch norm has both a scale and an offset or neither (affine=)",
            "give center= and scale= the same value",
        )
    kwargs: list[tuple[str, object]] = [("eps", c["epsilon"]), ("momentum", _momentum(_float(c["momentum"])))]
    if not c["center"]:
        kwargs.append(("affine", False))
    cls = "nn.BatchNorm2d" if len(layer.input_shape) == 3 else "nn.BatchNorm1d"
    return Ctor(cls, (layer.input_shape[-1],), tuple(kwargs)), [Own()]


def _layer_norm(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    _axis(layer, c)
    module = Ctor("nn.LayerNorm", (layer.input_shape[-1],), (("eps", c["epsilon"]),))
    if len(layer.input_shape) == 3:  # each position over its channels
        return module, [_CHANNELS_LAST, Own(), _CHANNELS_FIRST]
    return module, [Own()]


def _group_norm(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    channels = layer.input_shape[-1]
    groups = channels if c["groups"] == -1 else c["groups"]
    return Ctor("nn.GroupNorm", (groups, channels), (("eps", c["epsilon"]),)), [Own()]


_ACTIVATIONS: dict[str, list[Step]] = {
    "relu": [Fn("F.relu")],
    "gelu": [Fn("F.gelu")],
    "silu": [Fn("F.silu")],
    "swish": [Fn("F.silu")],
    "sigmoid": [Fn("torch.sigmoid")],
    "tanh": [Fn("torch.tanh")],
    "softmax": [Fn("F.softmax", (), (("dim", 1),))],
    "log_softmax": [Fn("F.log_softmax", (), (("dim", 1),))],
    "elu": [Fn("F.elu")],
    "selu": [Fn("F.selu")],
    "linear": [],
    "relu6": [Fn("F.relu6")],
    "leaky_relu": [Fn("F.leaky_relu", (0.2,))],  # Keras's default slope (PyTorch's is 0.01)
    "softplus": [Fn("F.softplus")],
    "softsign": [Fn("F.softsign")],
    "exponential": [Fn("torch.exp")],
    "hard_sigmoid": [Fn("F.hardsigmoid")],
    "hard_silu": [Fn("F.hardswish")],
    "hard_swish": [Fn("F.hardswish")],
    "mish": [Fn("F.mish")],
}


def _activation(name: object) -> list[Step]:
    if name is None:
        return []
    assert isinstance(name, str), name
    return list(_ACTIVATIONS[name])


def _activation_layer(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    return None, _activation(c["fixed"])


def _relu(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    top = None if c["max_value"] is None else _float(c["max_value"])
    slope, threshold = _float(c["negative_slope"]), _float(c["threshold"])
    if threshold == 0 and slope == 0:
        if top is None:
            return None, [Fn("F.relu")]
        if top == 6:
            return None, [Fn("F.relu6")]
        return None, [Method("clamp", (0.0, top))]
    if threshold == 0 and top is None:
        return None, [Fn("F.leaky_relu", (slope,))]
    return None, [Relu(top, slope, threshold)]


def _pool(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    k = _pair(c["pool_size"])
    s = _pair(c["strides"] if c["strides"] is not None else c["pool_size"])
    padding, pad = _padding(layer, c, k, s, (1, 1))
    kwargs: list[tuple[str, object]] = [] if s == k else [("stride", _short(s))]
    if padding != (0, 0):
        kwargs.append(("padding", _short(padding)))
    if layer.keras_class == "MaxPooling2D":
        return None, [*_pre(pad, -math.inf), Fn("F.max_pool2d", (_short(k),), tuple(kwargs))]
    if pad is not None:
        return None, [AvgSame(k, s, pad)]
    if padding != (0, 0):  # TensorFlow's mean leaves the padding out
        kwargs.append(("count_include_pad", False))
    return None, [Fn("F.avg_pool2d", (_short(k),), tuple(kwargs))]


def _global_pool(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    kwargs: Kwargs = (("keepdim", True),) if c["keepdims"] else ()
    name = "mean" if layer.keras_class == "GlobalAveragePooling2D" else "amax"
    return None, [Method(name, ((2, 3),), kwargs)]


def _flatten(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    if len(layer.input_shape) == 1:
        return None, []
    return None, [_CHANNELS_LAST, Fn("torch.flatten", (1,))]  # Keras's order: height, width, channels


def _dropout(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    rate = _float(c["rate"] if "rate" in c else c["drop_path_rate"])
    noise = c.get("noise_shape")
    if layer.keras_class == "StochasticDepth":
        return None, [Drop(rate, (1,) * len(layer.input_shape))]
    if noise is None:
        return None, [Fn("F.dropout", (rate,), (("training", TRAINING),))]
    assert isinstance(noise, tuple)
    shape = tuple(int(n) for n in noise[1:])
    if len(shape) != len(layer.input_shape):
        raise Unsupported(f"noise shape {shape} for a {layer.input_shape} input")
    if len(shape) == 3:
        shape = (shape[2], shape[0], shape[1])
    return None, [Drop(rate, shape)]


def _arith(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    kind = KINDS[layer.kind]
    assert kind.operator is not None
    return None, [Arith(kind.operator, _float(c["c"]))]


def _rescale(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    steps: list[Step] = [Arith("*", _float(c["scale"]))]
    if c["offset"]:
        steps.append(Arith("+", _float(c["offset"])))
    return None, steps


def _normalize(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    _axis(layer, c)
    mean, variance = c["mean"], c["variance"]
    rank = len(layer.input_shape)
    if mean is None or variance is None:  # adapted to data: mean, variance and count are the module's buffers
        return Ctor("nn.Module"), [Standardize(rank)]

    def per_channel(values: object, f: Callable[[float], float]) -> float | tuple[float, ...]:
        if isinstance(values, tuple):
            return f(values[0]) if len(values) == 1 else tuple(f(v) for v in values)
        assert isinstance(values, float)
        return f(values)

    # Keras: (x - mean) / max(sqrt(var), 1e-7)
    negated = per_channel(mean, lambda m: -m)
    divisor = per_channel(variance, lambda v: 1.0 / max(math.sqrt(v), 1e-7))
    return None, [Arith("+", negated, rank), Arith("*", divisor, rank)]


def _layer_scale(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    channels = _int(c["projection_dim"])
    module = Ctor("nn.Parameter", (Ctor("torch.full", ((channels,), _float(c["init_values"]))),))
    return module, [Arith("*", None, len(layer.input_shape))]


def _zeropad(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    p = c["padding"]  # p, (h, w) or ((top, bottom), (left, right)), validated by the checker
    if isinstance(p, int):
        (t, b), (left, r) = (p, p), (p, p)
    else:
        assert isinstance(p, tuple)
        rows, columns = p
        t, b = (rows, rows) if isinstance(rows, int) else rows
        left, r = (columns, columns) if isinstance(columns, int) else columns
    return None, [Fn("F.pad", ((left, r, t, b),))]


def _upsample(layer: NetLayer, c: dict[str, object]) -> tuple[Ctor | None, list[Step]]:
    size, mode = _pair(c["size"]), c["interpolation"]
    if mode == "nearest":
        return None, [Fn("F.interpolate", (), (("scale_factor", size), ("mode", "nearest")))]
    if mode == "bilinear":  # TensorFlow's resize: half-pixel centres, as align_corners=False
        return None, [Fn("F.interpolate", (), (("scale_factor", size), ("mode", "bilinear")))]
    raise Unsupported(
        f"interpolation {mode!r}: PyTorch computes it differently from TensorFlow",
        "use interp=nearest or interp=bilinear",
    )


_RULES: dict[str, Rule] = {
    "Conv2D": _conv,
    "DepthwiseConv2D": _conv,
    "SeparableConv2D": _conv,
    "Dense": _dense,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm,
    "Activation": _activation_layer,
    "ReLU": _relu,
    "MaxPooling2D": _pool,
    "AveragePooling2D": _pool,
    "GlobalAveragePooling2D": _global_pool,
    "GlobalMaxPooling2D": _global_pool,
    "Flatten": _flatten,
    "Dropout": _dropout,
    "StochasticDepth": _dropout,
    "Add": _arith,
    "Multiply": _arith,
    "Rescaling": _rescale,
    "Normalization": _normalize,
    "LayerScale": _layer_scale,
    "ZeroPadding2D": _zeropad,
    "UpSampling2D": _upsample,
}


# ---- figures -----------------------------------------------------------------------------------


def figures(ctor: Ctor | None) -> Figures:
    """What PyTorch counts for a module, from its constructor's arguments."""
    if ctor is None:
        return Figures()
    a, kw = ctor.args, dict(ctor.kwargs)
    match ctor.path:
        case "nn.Conv2d":
            cin, cout, k = _int(a[0]), _int(a[1]), _pair(a[2])
            groups = _int(kw.get("groups", 1))
            return Figures(cout * (cin // groups) * k[0] * k[1] + (cout if kw.get("bias", True) else 0))
        case "nn.Linear":
            cin, cout = _int(a[0]), _int(a[1])
            return Figures(cin * cout + (cout if kw.get("bias", True) else 0))
        case "nn.BatchNorm1d" | "nn.BatchNorm2d":
            channels = _int(a[0])
            return Figures(2 * channels if kw.get("affine", True) else 0, 2 * channels, 1)
        case "nn.LayerNorm":
            return Figures(2 * _int(a[0]))
        case "nn.GroupNorm":
            return Figures(2 * _int(a[1]))
        case "nn.Sequential":
            total = Figures()
            for part in a:
                assert isinstance(part, Ctor)
                total = total + figures(part)
            return total
        case "nn.Module":  # (its buffers are counted by buffer_figures)
            return Figures()
        case "nn.Parameter":
            inner = a[0]
            assert isinstance(inner, Ctor) and inner.path == "torch.full"
            shape = inner.args[0]
            assert isinstance(shape, tuple)
            return Figures(math.prod(_int(n) for n in shape))
    raise ValueError(f"no figures for {ctor.path}")


def buffer_figures(buffers: tuple[tuple[str, Ctor], ...]) -> Figures:
    """Registered buffers: their values (a Normalization's count too, which Keras counts as a weight)."""
    total = 0
    for _, ctor in buffers:
        shape = ctor.args[0]
        total += math.prod(_int(n) for n in shape) if isinstance(shape, tuple) else _int(shape)
    return Figures(0, total)


def totals(network: Network, torch_layers: list[TorchLayer] | None = None) -> Figures:
    """The module's parameters, buffers and counters, as PyTorch counts them (no torch imported)."""
    total = Figures()
    for layer in layers(check_torch(network)) if torch_layers is None else torch_layers:
        total = total + figures(layer.module) + buffer_figures(layer.buffers)
    return total


def figures_line(network: Network, torch_layers: list[TorchLayer] | None = None) -> str:
    f = totals(network, torch_layers)
    counters = f" and {f.counters:,} batch counter{'s' * (f.counters != 1)} (num_batches_tracked)" if f.counters else ""
    return f"PyTorch: {f.parameters:,} parameters, {f.buffers:,} buffer values{counters}"


# ---- source ------------------------------------------------------------------------------------


def ctor_source(ctor: Ctor) -> str:
    written = [_arg(a) for a in ctor.args] + [f"{key}={_arg(value)}" for key, value in ctor.kwargs]
    return f"{ctor.path}({', '.join(written)})"


def _arg(value: object) -> str:
    if isinstance(value, Ctor):
        return ctor_source(value)
    if isinstance(value, _Training):
        return "self.training"
    if isinstance(value, Dtype):
        return f"torch.{value.name}"
    if isinstance(value, float) and math.isinf(value):
        return "-math.inf" if value < 0 else "math.inf"
    return literal(value)


def _call(path: str, x: str, args: Args, kwargs: Kwargs) -> str:
    written = [x] + [_arg(a) for a in args] + [f"{key}={_arg(value)}" for key, value in kwargs]
    return f"{path}({', '.join(written)})"


def _shaped(rank: int) -> tuple[int, ...]:
    return (1, -1, 1, 1) if rank == 3 else (1, -1)


def step_source(step: Step, x: str, name: str | None) -> str:
    """The step applied to the expression ``x`` (``name``: the layer's attribute)."""
    match step:
        case Fn(path=path, args=args, kwargs=kwargs):
            return _call(path, x, args, kwargs)
        case Method(name=method, args=args, kwargs=kwargs):
            written = [_arg(a) for a in args] + [f"{key}={_arg(value)}" for key, value in kwargs]
            return f"{_operand(x)}.{method}({', '.join(written)})"
        case Own():
            return f"self.{name}({x})"
        case Arith(op=op, value=value, rank=rank):
            if value is None:
                operand = f"self.{name}" + (f".view{literal(_shaped(rank))}" if rank == 3 else "")
            elif isinstance(value, tuple):
                operand = f"x.new_tensor({literal(value)}).view{literal(_shaped(rank))}"
            elif op == "+" and value < 0:  # x - 0.5
                return f"{_operand(x)} - {literal(-value)}"
            else:
                operand = literal(value)
            return f"{_operand(x)} {op} {operand}"
        case Drop(p=p, shape=shape):
            ones = f"x.new_ones(x.shape[0], {', '.join(map(str, shape))})"
            return f"{_operand(x)} * F.dropout({ones}, {literal(p)}, self.training)"
        case Relu(max_value=top, slope=slope, threshold=threshold):
            y = f"F.relu({x})" if threshold == 0 else f"{x} * ({x} > {literal(threshold)})"
            if top is not None:
                y = f"({y}).clamp(0.0, {literal(top)})"
            if slope:
                negative = f"F.relu(-{x})" if threshold == 0 else f"F.relu({literal(threshold)} - {x})"
                y = f"{y} - {literal(slope)} * {negative}"
            return y
        case Standardize(rank=rank):
            view = f".view{literal(_shaped(rank))}" if rank == 3 else ""
            mean, deviation = f"self.{name}.mean{view}", f"self.{name}.variance.sqrt().clamp(min=1e-07){view}"
            return f"({_operand(x)} - {mean}) / {deviation}"
        case AvgSame(pool=pool, strides=strides, pad=pad):
            k, s = literal(_short(pool)), literal(_short(strides))
            ones = f"F.pad(torch.ones_like({x}[:, :1]), {literal(pad)})"
            return f"F.avg_pool2d(F.pad({x}, {literal(pad)}), {k}, {s}) / F.avg_pool2d({ones}, {k}, {s})"
    raise AssertionError(step)


def _operand(x: str) -> str:
    """An expression as the operand of a method call or operator: parenthesized unless a name or a call."""
    return x if re.fullmatch(r"[\w.]+(\(.*\))?", x) and not _top_level_operator(x) else f"({x})"


def _top_level_operator(x: str) -> bool:
    depth = 0
    for ch in x:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch in "+-*/<>":
            return True
    return False


@dataclass(frozen=True, slots=True)
class Line:
    """A statement of __init__ or forward (its origin as a comment above, or at the end when it fits)."""

    code: PyCode
    comment: SafeText = field(default_factory=SafeText)
    trailing: bool = False


def _line(code: str, note: str, indent: int = 2) -> Line:
    text = formatted(code, indent)
    trailing = "\n" not in text and 4 * indent + width(code) + 4 + width(note) <= LINE_LENGTH
    text = PyCode(text.replace("\n", "\n" + "    " * indent))  # (the template indents the first line)
    return Line(text, SafeText(note), trailing and bool(note))


@dataclass(frozen=True, slots=True)
class TorchSource:
    """What templates/_torch_model.py.j2 receives."""

    marker: PyCode
    spec_file: SafeText
    title: SafeText
    spec_lines: tuple[SafeText, ...]
    totals: SafeText
    figures: SafeText
    shapes: SafeText
    class_name: PyCode
    init: tuple[Line, ...]
    forward: tuple[Line, ...]
    parameter: PyCode  # forward's parameter
    output: PyCode
    uses_math: bool


def class_name(network: Network) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", network.name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    if not name[0].isalpha() or name in {"F", "nn", "torch", "math"}:
        name = "Model" + name
    return name


def source_model(network: Network) -> TorchSource:
    from normdsl.emit_source import input_note, totals_line  # (templates' shared wording)
    from normdsl.summary import batch_shape
    from normdsl.writer import MARKER

    torch_layers = layers(check_torch(network))
    spec_file = Path(network.filename).name
    init: list[Line] = []
    for tl in torch_layers:
        if tl.module is not None:
            note = _note(network, tl.index)
            init.append(_line(f"self.{tl.name} = {ctor_source(tl.module)}", note))
            for buffer, ctor in tl.buffers:
                init.append(_line(f'self.{tl.name}.register_buffer("{buffer}", {ctor_source(ctor)})', ""))
    forward, parameter, output = _forward(network, torch_layers)
    shapes = f"Input {_nchw(network.input_shape)}, output {_nchw(network.output_shape)}: NCHW, as PyTorch's layers take them."
    note = input_note(network)
    return TorchSource(
        marker=PyCode(MARKER),
        spec_file=safe_text(spec_file),
        title=safe_text(f"PyTorch module {network.name!r}, generated by normdsl {__version__} from {spec_file}."),
        spec_lines=tuple(safe_text(line) for line in network.source.strip("\n").split("\n")),
        totals=safe_text(f"Keras: {totals_line(network)}" + (f" {note}" if note else "")),
        figures=safe_text(figures_line(network, torch_layers)),
        shapes=safe_text(shapes.replace("(None", "(N") if "None" in batch_shape(network.input_shape) else shapes),
        class_name=PyCode(class_name(network)),
        init=tuple(init),
        forward=tuple(forward),
        parameter=PyCode(parameter),
        output=PyCode(output),
        uses_math=any(
            isinstance(step, Fn) and any(isinstance(v, float) and math.isinf(v) for _, v in step.kwargs)
            for tl in torch_layers
            for step in tl.steps
        ),
    )


def _nchw(shape: tuple[int, ...]) -> str:
    dims = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    return "(N, " + ", ".join(map(str, dims)) + ")"


def _note(network: Network, index: int) -> str:
    layer = network.layers[index]
    place = f"{one_line(Path(network.filename).name)}:{layer.span.line}:{layer.span.column}"
    return str(comment(place, layer.text))


def _forward(network: Network, torch_layers: list[TorchLayer]) -> tuple[list[Line], str, str]:
    """forward's statements, its parameter and the variable returned. One statement per layer that
    computes something; a value lives in ``x`` when the next statement alone reads it, else in a
    variable of its own (x1, x2, ...)."""
    # a layer with no steps is its input (flatten of a flat tensor, a linear activation)
    source: list[int] = []
    for tl in torch_layers:
        layer = network.layers[tl.index]
        empty = tl.join is None and not tl.steps
        source.append((source[layer.inputs[0]] if layer.inputs[0] >= 0 else -1) if empty else tl.index)
    emitting = [tl.index for tl in torch_layers if source[tl.index] == tl.index]
    following = {a: b for a, b in zip([-1, *emitting], [*emitting, None], strict=True)}
    readers: dict[int, list[int]] = {}
    for i in emitting:
        for j in network.layers[i].inputs:
            readers.setdefault(source[j] if j >= 0 else -1, []).append(i)
    result = source[network.output] if network.output >= 0 else -1
    names: dict[int, str] = {}
    count = 0
    for value in [-1, *emitting]:
        read = readers.get(value, [])
        alone = (len(read) == 1 and read[0] == following[value] and value != result) or (
            not read and value == result and following[value] is None
        )
        if alone:
            names[value] = "x"
        elif value == -1:
            names[value] = "inputs"
        else:
            count += 1
            names[value] = f"x{count}"
    parameter = "x" if names[-1] == "x" else "inputs"
    lines: list[Line] = []
    sizes: dict[tuple[object, ...], int] = {}  # layers per block use (a use of one layer is not announced)
    for layer in network.layers:
        for d in range(len(layer.blocks)):
            key = (layer.blocks[: d + 1], layer.uses[: d + 1])
            sizes[key] = sizes.get(key, 0) + 1
    announced: set[tuple[object, ...]] = set()
    for tl in torch_layers:
        layer = network.layers[tl.index]
        for d in range(len(layer.blocks)):
            key = (layer.blocks[: d + 1], layer.uses[: d + 1])
            if key not in announced and sizes[key] > 1:
                announced.add(key)
                use = layer.uses[d] if d < len(layer.uses) else None
                where = f", used at {use.line}:{use.column}" if use is not None else ""
                lines.append(Line(PyCode(""), safe_text(f"{'  ' * d}block {layer.blocks[d]}{where}")))
        if source[tl.index] != tl.index:
            continue
        ins = [names[source[j] if j >= 0 else -1] for j in layer.inputs]
        if tl.join is not None:
            operands = [f"{v}.view(-1, {c}, 1, 1)" if c else v for v, c in zip(ins, tl.expand, strict=True)]
            expr = f"torch.cat([{', '.join(operands)}], dim=1)" if tl.join == "cat" else f" {tl.join} ".join(operands)
        else:
            expr = ins[0]
        for step in tl.steps:
            expr = step_source(step, expr, tl.name)
        lines.append(_line(f"{names[tl.index]} = {expr}", _note(network, tl.index)))
    return lines, parameter, names[result]


def render(network: Network) -> str:
    """The generated PyTorch module (black's layout, checked by the safety allow-list)."""
    from normdsl._paths import data_dir
    from normdsl.diagnostics import RenderError
    from normdsl.emit_source import _environment
    from normdsl.safety import unexpected_code

    model = source_model(network)
    template = _environment(data_dir("templates")).get_template("_torch_model.py.j2")
    code = template.render(**{f: getattr(model, f) for f in model.__dataclass_fields__})
    found = unexpected_code(code, module=True, target="torch")
    if found:
        raise RenderError(f"the torch target rendered unexpected code: {'; '.join(found)}")
    return code


# ---- building (handed torch) ---------------------------------------------------------------------


def make(torch: Any, ctor: Ctor) -> Any:
    """The module (or parameter) a Ctor describes, made with ``torch``."""
    args = [make(torch, a) if isinstance(a, Ctor) else a for a in ctor.args]
    kwargs = {
        k: make(torch, v) if isinstance(v, Ctor) else getattr(torch, v.name) if isinstance(v, Dtype) else v
        for k, v in ctor.kwargs
    }
    home, name = ctor.path.split(".")
    return getattr(torch.nn if home == "nn" else torch, name)(*args, **kwargs)


def apply(torch: Any, step: Step, x: Any, owner: Any, name: str | None) -> Any:
    """The step applied to tensor ``x`` in module ``owner`` (its layer's attribute ``name``)."""
    F = torch.nn.functional
    match step:
        case Fn(path=path, args=args, kwargs=kwargs):
            home, fn = path.split(".")
            values = {k: owner.training if isinstance(v, _Training) else v for k, v in kwargs}
            return getattr(F if home == "F" else torch, fn)(x, *args, **values)
        case Method(name=method, args=args, kwargs=kwargs):
            return getattr(x, method)(*args, **dict(kwargs))
        case Own():
            return getattr(owner, str(name))(x)
        case Arith(op=op, value=value, rank=rank):
            if value is None:
                operand = getattr(owner, str(name))
                operand = operand.view(_shaped(rank)) if rank == 3 else operand
            elif isinstance(value, tuple):
                operand = x.new_tensor(value).view(_shaped(rank))
            else:
                operand = value
            return x + operand if op == "+" else x * operand
        case Drop(p=p, shape=shape):
            return x * F.dropout(x.new_ones(x.shape[0], *shape), p, owner.training)
        case Relu(max_value=top, slope=slope, threshold=threshold):
            y = F.relu(x) if threshold == 0 else x * (x > threshold)
            if top is not None:
                y = y.clamp(0.0, top)
            if slope:
                y = y - slope * (F.relu(-x) if threshold == 0 else F.relu(threshold - x))
            return y
        case Standardize(rank=rank):
            own = getattr(owner, str(name))
            mean, deviation = own.mean, own.variance.sqrt().clamp(min=1e-07)
            if rank == 3:
                mean, deviation = mean.view(_shaped(rank)), deviation.view(_shaped(rank))
            return (x - mean) / deviation
        case AvgSame(pool=pool, strides=strides, pad=pad):
            ones = F.pad(torch.ones_like(x[:, :1]), pad)
            return F.avg_pool2d(F.pad(x, pad), pool, strides) / F.avg_pool2d(ones, pool, strides)
    raise AssertionError(step)


__all__ = ["Ctor", "Figures", "TorchLayer", "apply", "check_torch", "make", "problems", "render"]

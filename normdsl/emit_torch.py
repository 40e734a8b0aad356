"""Network → torch.nn.Module, and weights between Keras and PyTorch. The only module that imports
PyTorch, and only when called.

:func:`build_module` makes the same modules as the generated file's ``__init__`` (same attribute
names, so the same ``state_dict`` keys) and applies the same steps in ``forward``, all read from
target_torch's :class:`~normdsl.target_torch.TorchLayer` values.

:func:`copy_weights` moves weights between a Keras model and a PyTorch module built from the same
spec, matching layers by their place in the spec: a layer's name (``conv2d_3``: the third Conv2D
the spec makes, or its ``name=``), which the Keras direct build, a fresh session's generated Keras
module and the PyTorch module all give it. Kernels are transposed (Keras HWIO, PyTorch OIHW).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Unpack

from normdsl.ast import Spec
from normdsl.check import Options, check
from normdsl.network import Network
from normdsl.target_torch import TorchLayer, apply, check_torch, layers, make, python_name

if TYPE_CHECKING:
    import torch


class TorchMissing(ImportError):
    pass


def torch_module() -> Any:
    """``torch``, imported on first use, or a clear TorchMissing."""
    try:
        import torch
    except ImportError as exc:
        raise TorchMissing(
            f'building PyTorch modules needs PyTorch ({exc}); install it with: pip install "normdsl[torch]"'
        ) from None
    return torch


def build_module(spec: Spec | Network | str, **options: Unpack[Options]) -> torch.nn.Module:
    """The checked network as a ``torch.nn.Module`` computing what the Keras model computes, on NCHW
    tensors (``input(H, W, C)`` is ``(N, C, H, W)``); for a spec or its text, ``options`` are check()'s."""
    network = spec if isinstance(spec, Network) else check(spec, **options)
    plan = layers(check_torch(network))
    module: torch.nn.Module = _module_class(torch_module())(network, plan)
    return module


_CLASSES: dict[int, type] = {}


def _module_class(torch: Any) -> Any:
    """The nn.Module subclass the direct build makes (defined once torch is imported)."""
    if id(torch) in _CLASSES:
        return _CLASSES[id(torch)]

    class SpecModule(torch.nn.Module):  # type: ignore[misc]
        """A PyTorch module built by normdsl from a spec: the layers as attributes named as in the
        generated module (conv2d, batch_normalization_1, ...), the spec's data flow in forward."""

        def __init__(self, network: Network, plan: list[TorchLayer]):
            super().__init__()
            for layer in plan:
                if layer.module is not None:
                    setattr(self, str(layer.name), make(torch, layer.module))
                for buffer, ctor in layer.buffers:
                    getattr(self, str(layer.name)).register_buffer(buffer, make(torch, ctor))
            self.network = network  # (not a module: not in the state_dict)
            self.plan = plan
            inputs = [network.layers[layer.index].inputs for layer in plan]
            last: dict[int, int] = {}
            for i, ins in enumerate(inputs):
                for j in ins:
                    last[j] = i
            self.inputs = inputs
            # the values a layer is the last to read are dropped after it (memory as the generated forward's)
            self.done = [[j for j in set(ins) if last[j] == i and j != network.output] for i, ins in enumerate(inputs)]

        def forward(self, x: Any) -> Any:
            values: dict[int, Any] = {-1: x}
            for layer, ins, done in zip(self.plan, self.inputs, self.done, strict=True):
                operands = [values[j] for j in ins]
                if layer.join is not None:
                    shaped = [v.view(-1, c, 1, 1) if c else v for v, c in zip(operands, layer.expand, strict=True)]
                    if layer.join == "cat":
                        y = torch.cat(shaped, dim=1)
                    else:
                        y = shaped[0]
                        for other in shaped[1:]:
                            y = y + other if layer.join == "+" else y * other
                else:
                    y = operands[0]
                for step in layer.steps:
                    y = apply(torch, step, y, self, layer.name)
                values[layer.index] = y
                for j in done:
                    del values[j]
            return values[self.network.output]

        def extra_repr(self) -> str:
            return f"spec={self.network.name!r}"

    _CLASSES[id(torch)] = SpecModule
    return SpecModule


# ---- weights -----------------------------------------------------------------------------------

# How each Keras layer's weights (in Keras's order) map to the PyTorch module's tensors: the tensor's
# path under the module, and how the array is rearranged (conv: HWIO → OIHW, dense: transposed).
_MAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "Conv2D": (("weight", "conv"), ("bias", "same")),
    "DepthwiseConv2D": (("weight", "depthwise"), ("bias", "same")),
    "SeparableConv2D": (("0.weight", "depthwise"), ("1.weight", "conv"), ("1.bias", "same")),
    "Dense": (("weight", "dense"), ("bias", "same")),
    "BatchNormalization": (("weight", "same"), ("bias", "same"), ("running_mean", "same"), ("running_var", "same")),
    "LayerNormalization": (("weight", "same"), ("bias", "same")),
    "GroupNormalization": (("weight", "same"), ("bias", "same")),
    "LayerScale": (("", "same"),),
    "Normalization": (("mean", "same"), ("variance", "same"), ("count", "same")),
}


class WeightsMismatch(ValueError):
    """The two models do not come from the same spec: names the first layer that differs."""


def _to_torch(array: Any, how: str) -> Any:
    import numpy as np

    if how == "conv":  # (kh, kw, in, out) → (out, in, kh, kw)
        return np.transpose(array, (3, 2, 0, 1))
    if how == "depthwise":  # (kh, kw, in, mult) → (in·mult, 1, kh, kw), output channel c·mult + m
        kh, kw, cin, mult = array.shape
        return np.transpose(array.reshape(kh, kw, cin * mult), (2, 0, 1))[:, None]
    if how == "dense":
        return np.transpose(array)
    return array


def _to_keras(array: Any, how: str, shape: tuple[int, ...]) -> Any:
    import numpy as np

    if how == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if how == "depthwise":
        return np.transpose(array[:, 0], (1, 2, 0)).reshape(shape)
    if how == "dense":
        return np.transpose(array)
    return array


def _is_torch(model: Any) -> bool:
    return isinstance(model, torch_module().nn.Module)


def copy_weights(src: Any, dst: Any) -> None:
    """Copy the weights of a Keras model into a PyTorch module built from the same spec (the generated
    module or build_module's), or back: every layer holding weights, matched by its place in the spec
    (its name), kernels transposed. Models from different specs: WeightsMismatch naming the first
    layer that differs (in the spec's order); nothing is copied then."""
    if _is_torch(src) == _is_torch(dst):
        raise TypeError("copy_weights copies between a Keras model and a PyTorch module (one of each)")
    import numpy as np

    torch = torch_module()
    module, keras_model = (src, dst) if _is_torch(src) else (dst, src)
    pairs = _pairs(module, keras_model)
    with torch.no_grad():
        if _is_torch(dst):  # Keras → PyTorch
            for holder, keras_layer, maps in pairs:
                for (path, how), array in zip(maps, keras_layer.get_weights(), strict=True):
                    tensor = _tensor(module, holder, path)
                    array = np.array(_to_torch(np.asarray(array), how))  # (a copy: a count is a NumPy scalar)
                    tensor.copy_(torch.from_numpy(array).to(tensor.dtype))
        else:
            for holder, keras_layer, maps in pairs:
                shapes = [tuple(w.shape) for w in keras_layer.weights]
                arrays = [
                    _to_keras(_tensor(module, holder, path).detach().cpu().numpy(), how, shape)
                    for (path, how), shape in zip(maps, shapes, strict=True)
                ]
                keras_layer.set_weights(arrays)


def _tensor(module: Any, holder: str, path: str) -> Any:
    """The parameter or buffer at ``holder.path`` (``separable_conv2d.0.weight``; a bare parameter: path "")."""
    found = getattr(module, holder)
    for part in path.split(".") if path else ():
        found = getattr(found, part)
    return found


def _maps(kind: str, count: int) -> tuple[tuple[str, str], ...] | None:
    """The weight map of a Keras layer with ``count`` weights (a layer without bias has fewer)."""
    maps = _MAPS.get(kind)
    if maps is None:
        return None
    if kind == "BatchNormalization" and count == 2:  # center=false, scale=false: the moving statistics only
        return maps[2:]
    return maps[:count]


def _holders(module: Any) -> list[str]:
    """The module's attributes that hold weights, in the order they were made (the spec's)."""
    found = [name for name, child in module.named_children() if any(True for _ in child.state_dict())]
    found += [name for name, _ in module.named_parameters(recurse=False)]
    order = {name: i for i, name in enumerate(module.state_dict().keys())}
    return sorted(found, key=lambda n: min(i for key, i in order.items() if key == n or key.startswith(n + ".")))


def _pairs(module: Any, keras_model: Any) -> list[tuple[str, Any, tuple[tuple[str, str], ...]]]:
    """(PyTorch attribute, Keras layer, weight map) for every layer holding weights, checked: same
    layers, same kinds, same shapes once rearranged; else WeightsMismatch at the first that differs."""
    import numpy as np

    keras_layers = {python_name(layer.name): layer for layer in keras_model.layers if layer.weights}
    pairs = []
    for holder in _holders(module):
        keras_layer = keras_layers.pop(holder, None)
        if keras_layer is None:
            raise WeightsMismatch(
                f"layer {holder!r} of the PyTorch module has no counterpart with weights in the Keras model "
                "(the first layer that differs: are they built from the same spec, the Keras one in a fresh session?)"
            )
        kind = type(keras_layer).__name__
        maps = _maps(kind, len(keras_layer.weights))
        if maps is None:
            raise WeightsMismatch(
                f"layer {holder!r}: Keras's {kind} with {len(keras_layer.weights)} weights has no PyTorch counterpart here"
            )
        for (path, how), weight in zip(maps, keras_layer.weights, strict=True):
            try:
                tensor = _tensor(module, holder, path)
                assert tensor is not None
            except (AttributeError, AssertionError):
                raise WeightsMismatch(
                    f"layer {holder!r}: the PyTorch module has no {path or 'parameter'} for Keras's {kind}"
                ) from None
            wanted = _to_torch(np.zeros(tuple(weight.shape), dtype=np.float32), how).shape
            if tuple(tensor.shape) != tuple(wanted):
                raise WeightsMismatch(
                    f"layer {holder!r} differs: Keras's {kind} {weight.name} {tuple(weight.shape)} is {tuple(wanted)} "
                    f"in PyTorch, the module's {path or holder} is {tuple(tensor.shape)}"
                )
        pairs.append((holder, keras_layer, maps))
    if keras_layers:
        name = next(iter(keras_layers))
        raise WeightsMismatch(
            f"layer {name!r} of the Keras model has no counterpart with weights in the PyTorch module (the first layer that differs)"
        )
    return pairs


__all__ = ["TorchMissing", "WeightsMismatch", "build_module", "copy_weights"]

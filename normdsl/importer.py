"""Keras model → spec text: ``normdsl import`` and ``normdsl.from_keras`` (issue 19).

The model is read as data, from its functional config (``model.get_config()``, or the config.json
of a ``.keras`` archive, read without running any of its code): layers, and the tensors each reads.
Each layer becomes a kind of the registry, the inverse of ``keras_call``: the kind whose Keras class
it is, its arguments those of the config that differ from the kind's defaults; the layer that call
makes is then built with Keras and its config compared with the original's (name aside), so a
layer the language cannot say exactly is an error, never an approximation. The few rewrites that
give the same function through another layer (``Activation("hard_silu")`` as ``hardswish``, Keras's
alias; ``GlobalAveragePooling2D`` then ``Reshape((1, 1, C))`` as ``gap(keepdims=true)``; a tensor sum
``x + y`` as ``res``) are listed in the spec's head as comments. The graph is then read back as
nested sequences, sums (``res``), products (``gate``) and concatenations (``cat``) by walking back
from the output through each merge's immediate dominator, its fork. ``compact`` (importer_blocks)
then finds the repetitions, blocks and the shared normalization, and ``normdsl.fmt`` lays it out.

This is the one module besides ``emit_keras`` that imports Keras, and only when it is called.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normdsl.layers import INITIALIZERS, KINDS, NAME_RE, LayerKind, Param, Problem, coerce, keras_call

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a .keras archive's config.json, uncompressed
MAX_LAYERS = 20_000  # layers of one model (nested ones counted)
MAX_DEPTH = 200  # merges nested in merges, and models in models


class ImportProblem(ValueError):
    """The model cannot be written as a spec: every reason, one a line."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# ---- the spec as a tree of items ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layer:
    kind: str
    width: object = None  # int, or block-parameter Expr text once factored
    args: tuple[tuple[str | None, object], ...] = ()  # (key, value); key None: the kind's positional argument


@dataclass(frozen=True, slots=True)
class Join:
    merge: str  # res, gate, cat
    branches: tuple[tuple[Any, ...], ...]  # res/gate: (body,) or (body, shortcut); cat: each branch (() is id)
    first: bool = False  # res/gate: the body is the merge's first operand


@dataclass(frozen=True, slots=True)
class Repeat:
    items: tuple[Any, ...]
    count: object  # an int, or a block parameter's Expr


@dataclass(frozen=True, slots=True)
class Use:
    """A block used: name(args)."""

    block: str
    args: tuple[tuple[str | None, object], ...] = ()  # (None, value) positional, (parameter, value) by name


@dataclass(frozen=True, slots=True)
class Expr:
    """A value computed from block parameters, as written: 4*f."""

    text: str


Item = Layer | Join | Repeat | Use


@dataclass
class Imported:
    """What from_config found: the input's shape, the item tree, notes (the rewrites) for the spec's head."""

    input_shape: tuple[int, ...]
    items: tuple[Item, ...]
    notes: list[str] = field(default_factory=list)
    name: str = "model"


# ---- reading the model as a graph --------------------------------------------------------------


@dataclass
class _Node:
    index: int  # position among the model's layers (nested models' layers counted where they sit)
    name: str
    cls: str
    module: str
    config: dict[str, Any]
    inputs: list[int]  # node ids; -1 the model's input
    shape: tuple[int | None, ...]  # the input tensor's shape, batch axis first
    out_rank: int = 0
    scalar: float | None = None  # an operation x + c / x * c: c


_LAYER_MODULES = ("keras.layers", "keras", "keras.src.layers", None, "")
_MERGES = {"Add": "res", "Multiply": "gate", "Concatenate": "cat"}
_EQUIVALENT_ACTIVATIONS = {"hard_silu": "hard_swish"}  # keras.activations aliases: one function, two names


class _Reader:
    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.position = 0
        self._shape: tuple[int | None, ...] = ()  # the input tensor's shape of the layer being read

    def model(self, config: Mapping[str, Any], entry: int | None, depth: int = 0) -> tuple[int, tuple[int, ...]]:
        """Read a Functional or Sequential config; ``entry`` the node feeding its input (None: the outer
        model, whose input shape is returned). The node id of its output."""
        if depth > MAX_DEPTH:
            raise ImportProblem([f"models nested more than {MAX_DEPTH} deep"])
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise ImportProblem(["the model's config has no list of layers"])
        if len(layers) + len(self.nodes) > MAX_LAYERS:
            raise ImportProblem([f"the model has more than {MAX_LAYERS:,} layers"])
        if "input_layers" not in config:  # Sequential: a chain
            return self._sequential(layers, entry, depth)
        inputs, outputs = _tensor_list(config.get("input_layers")), _tensor_list(config.get("output_layers"))
        if len(inputs) != 1 or len(outputs) != 1:
            raise ImportProblem(
                [
                    f"the model has {len(inputs)} input(s) and {len(outputs)} output(s); a spec describes a model"
                    " with one input and one output (import each path as its own model)"
                ]
            )
        ids: dict[str, int] = {}
        shape: tuple[int, ...] = ()
        for layer in layers:
            if not isinstance(layer, dict):
                raise ImportProblem(["a layer of the config is not an object"])
            name, cls = str(layer.get("name", "?"))[:100], str(layer.get("class_name", "?"))[:100]
            lconfig: dict[str, Any] = layer["config"] if isinstance(layer.get("config"), dict) else {}
            if cls == "InputLayer":
                shape = self._input(lconfig, entry is None)
                ids[name] = -1 if entry is None else entry
                continue
            self.position += 1
            calls = layer.get("inbound_nodes")
            if not isinstance(calls, list) or len(calls) != 1:
                n = len(calls) if isinstance(calls, list) else 0
                self.problems.append(
                    f"layer {self.position} {name!r} ({cls}): used {n} times (a shared layer); a spec's layers are used once"
                )
                ids[name] = -2
                continue
            sources, scalar = self._sources(calls[0], ids, name, cls)
            if cls in ("Sequential", "Functional", "Model"):
                if len(sources) != 1:
                    raise ImportProblem([f"layer {self.position} {name!r} ({cls}): a nested model with several inputs"])
                ids[name] = self.model(lconfig, sources[0], depth + 1)[0]
                continue
            ids[name] = self._add(name, cls, str(layer.get("module") or ""), lconfig, sources, layer, scalar)
        out = ids.get(str(outputs[0][0]))
        if out is None:
            raise ImportProblem(["the model's output is not one of its layers"])
        return out, shape

    def _sequential(self, layers: list[Any], entry: int | None, depth: int) -> tuple[int, tuple[int, ...]]:
        current, shape = (-1 if entry is None else entry), tuple[int, ...]()
        for layer in layers:
            if not isinstance(layer, dict):
                raise ImportProblem(["a layer of the config is not an object"])
            cls = str(layer.get("class_name", "?"))[:100]
            lconfig: dict[str, Any] = layer["config"] if isinstance(layer.get("config"), dict) else {}
            name = str(lconfig.get("name", "?"))[:100]
            if cls == "InputLayer":
                shape = self._input(lconfig, entry is None)
                continue
            if entry is None and not shape and not self.nodes:
                shape = self._input(
                    {"batch_shape": lconfig.get("batch_shape") or lconfig.get("batch_input_shape")}, True
                )
            self.position += 1
            if cls in ("Sequential", "Functional", "Model"):
                current = self.model(lconfig, current, depth + 1)[0]
                continue
            current = self._add(name, cls, str(layer.get("module") or ""), lconfig, [current], layer, None)
        return current, shape

    def _input(self, config: Mapping[str, Any], outer: bool) -> tuple[int, ...]:
        batch_shape = config.get("batch_shape")
        if not outer:
            return ()
        if not isinstance(batch_shape, list) or len(batch_shape) < 2:
            raise ImportProblem(["the model's input has no shape"])
        dims = batch_shape[1:]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
            shown = ", ".join("None" if d is None else str(d) for d in dims)
            message = f"the model's input shape ({shown}) has unknown sizes; a spec's input has fixed sizes"
            raise ImportProblem([message + ": build the model with a fixed input_shape"])
        return tuple(dims)

    def _sources(self, call: Any, ids: Mapping[str, int], name: str, cls: str) -> tuple[list[int], float | None]:
        """The nodes a call reads (in order) and a number operand (x + 3.0), from its args."""
        if not isinstance(call, dict):
            raise ImportProblem([f"layer {self.position} {name!r} ({cls}): malformed inbound node"])
        args = call.get("args", [])
        flat = list(_flatten(args))
        tensors = [a for a in flat if isinstance(a, dict) and a.get("class_name") == "__keras_tensor__"]
        numbers = [a for a in flat if isinstance(a, int | float) and not isinstance(a, bool)]
        others = [a for a in flat if a not in tensors and a not in numbers]
        kwargs = call.get("kwargs", {})
        if others or (isinstance(kwargs, dict) and any(v not in (None, False) for k, v in kwargs.items())):
            self.problems.append(f"layer {self.position} {name!r} ({cls}): called with arguments a spec cannot give")
        sources = []
        for tensor in tensors:
            history = tensor.get("config", {}).get("keras_history") if isinstance(tensor.get("config"), dict) else None
            if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)):
                raise ImportProblem([f"layer {self.position} {name!r} ({cls}): malformed input tensor"])
            if history[1:] != [0, 0]:
                self.problems.append(
                    f"layer {self.position} {name!r} ({cls}): reads output {history[2]} of {history[0]!r}'s"
                    f" call {history[1]} (a shared or multi-output layer)"
                )
            source = ids.get(history[0])
            if source is None:
                raise ImportProblem(
                    [f"layer {self.position} {name!r} ({cls}): reads {history[0]!r}, not defined before it"]
                )
            sources.append(source)
        shape: tuple[int | None, ...] = ()
        if tensors and isinstance(tensors[0].get("config"), dict):
            raw = tensors[0]["config"].get("shape")
            shape = tuple(raw) if isinstance(raw, list) else ()
        self._shape = shape
        return sources, (float(numbers[0]) if len(numbers) == 1 else None)

    def _add(
        self,
        name: str,
        cls: str,
        module: str,
        config: dict[str, Any],
        sources: list[int],
        layer: Mapping[str, Any],
        scalar: float | None,
    ) -> int:
        build = layer.get("build_config")
        built = build.get("input_shape") if isinstance(build, dict) else None
        shape = tuple(built) if isinstance(built, list) and not isinstance(built[0], list) else self._shape
        self._shape = ()
        node = _Node(self.position, name, cls, module, config, sources, shape, scalar=scalar)
        self.nodes.append(node)
        return len(self.nodes) - 1


def _tensor_list(value: Any) -> list[list[Any]]:
    """Keras writes one input as [name, 0, 0] and several as [[name, 0, 0], ...]."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, list) and v and isinstance(v[0], str) for v in value):
        return value
    if isinstance(value, dict):
        return [list(v) for v in value.values() if isinstance(v, list)]
    return []


def _flatten(value: Any, depth: int = 0) -> Iterator[Any]:
    if depth > 4:
        return
    if isinstance(value, list | tuple):
        for v in value:
            yield from _flatten(v, depth + 1)
    else:
        yield value


# ---- one layer: the kind, width and arguments that make it ------------------------------------


def _plain(value: Any) -> Any:
    """JSON lists as tuples, as the spec's values are."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


def _axis(value: Any, rank: int) -> Any:
    """[3] and 3 on a rank-4 tensor (batch axis counted) are the last axis: -1."""
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and rank and value == rank - 1:
        return -1
    return value


def _initializer(value: Any) -> str | None:
    """An initializer config's name among the language's (glorot_uniform), or None."""
    if isinstance(value, str):
        return value if value in INITIALIZERS else None
    if not isinstance(value, dict):
        return None
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", str(value.get("class_name", ""))).lower()
    inner = value.get("config") or {}
    if name in INITIALIZERS and isinstance(inner, dict) and all(v is None for k, v in inner.items() if k == "seed"):
        defaults = {"glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform"}
        if name in defaults or name in ("zeros", "ones"):
            return name
    return None


def _candidates(node: _Node) -> list[LayerKind]:
    """The kinds whose Keras class the node is (loading the installed plugins' kinds when no built-in is)."""
    found = _matching(node)
    if not found and node.cls not in ("InputLayer", "Lambda"):
        from normdsl import plugins

        plugins.load()
        found = _matching(node)
    return found


def _matching(node: _Node) -> list[LayerKind]:
    found = []
    for kind in [*KINDS.values(), *(k.with_args for k in KINDS.values() if k.with_args is not None)]:
        if kind.keras_class != node.cls or kind.operator is not None:
            continue
        if kind.module is None and node.module not in _LAYER_MODULES and not node.module.startswith("keras.src.layers"):
            continue
        if kind.module is not None and node.module != kind.module:
            continue
        found.append(kind)
    return found


def _spec_value(p: Param, raw: Any, rank: int) -> Any:
    """The config's value for ``p`` as the spec writes it, or raises Problem."""
    value = _plain(raw)
    if p.type == "axis":
        value = _axis(value, rank)
    elif p.type == "noise" and isinstance(value, tuple):
        if not value or value[0] is not None:
            raise Problem("noise_shape without the batch axis")
        value = value[1:]
    elif p.type == "pair" and isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    elif p.type == "activation" and value == "linear":
        value = None
    elif p.type == "padding2d" and isinstance(value, tuple) and len(value) == 2:
        if all(isinstance(v, tuple) and len(v) == 2 and v[0] == v[1] for v in value):
            value = (value[0][0], value[1][0])  # ((1, 1), (2, 2)) → (1, 2)
        if isinstance(value[0], int) and value[0] == value[1]:
            value = value[0]
    elif p.type == "floats" and isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    elif p.keras.endswith("_initializer"):
        value = _initializer(raw)
    if value is None:
        return None
    if p.type == "activation":
        value = _EQUIVALENT_ACTIVATIONS.get(value, value)
    coerce(p, value)
    return value


def _is_default(p: Param, value: Any) -> bool:
    if value is None or p.default is None:
        return value is None
    if p.type in ("pair", "padding2d"):
        return bool(_pairs(value) == _pairs(p.default))
    if p.type == "float":
        return isinstance(value, int | float) and float(value) == float(p.default)  # type: ignore[arg-type]
    return bool(type(value) is type(p.default) and value == p.default)


def _pairs(value: Any) -> Any:
    return value if isinstance(value, tuple) else (value, value)


def _fixed_match(kind: LayerKind, node: _Node, rank: int) -> bool:
    channels = node.shape[-1] if node.shape else None
    for key, value in kind.fixed:
        if key == "groups" and value == -1 and node.config.get("groups") in (-1, channels):
            continue  # instance norm: Keras writes the channel count once built
        if key is None:
            written = node.config.get("activation")
            if _EQUIVALENT_ACTIVATIONS.get(written, written) != value:  # type: ignore[arg-type]
                return False
        elif (_axis(node.config.get(key), rank) if key == "axis" else node.config.get(key)) != value:
            return False
    return True


class _Verifier:
    """Builds the layer a call makes and compares its config with the original's, names aside."""

    def __init__(self, keras: Any) -> None:
        self.keras = keras
        self.cache: dict[str, dict[str, Any] | None] = {}

    def config(self, kind: LayerKind, values: Mapping[str, object], width: object) -> dict[str, Any] | None:
        call = keras_call(kind, values, width)
        key = json.dumps([kind.name, kind.keras_class, repr(call.args), repr(call.kwargs)])
        if key not in self.cache:
            from normdsl.target_keras import make_layer

            try:
                made = make_layer(self.keras, kind.keras_class, kind.module, call.args, call.kwargs, "x")
                self.cache[key] = json.loads(json.dumps(made.get_config(), default=_jsonable))
            except Exception:
                self.cache[key] = None
        return self.cache[key]


def _unshared(value: dict[str, Any]) -> dict[str, Any]:
    value.pop("shared_object_id", None)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return repr(value)


def comparable(config: Mapping[str, Any], rank: int, channels: object = None) -> dict[str, Any]:
    """A layer config as compared: name aside, tuples as lists, the last axis as -1, initializers apart,
    and a group norm of one group per channel (Keras writes the count once built) as groups=-1."""
    out = {k: _plain(v) for k, v in json.loads(json.dumps(config, default=_jsonable)).items() if k != "name"}
    if "axis" in out:
        out["axis"] = _axis(out["axis"], rank)
    if "groups" in out and "epsilon" in out and channels is not None and out["groups"] == channels:
        out["groups"] = -1
    if out.get("activation") in _EQUIVALENT_ACTIVATIONS:
        out["activation"] = _EQUIVALENT_ACTIVATIONS[out["activation"]]
    return {k: v for k, v in out.items() if not k.endswith("_initializer")}


def _differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(ours) | set(theirs))
    return [f"{k}={_short(theirs.get(k, '(none)'))}" for k in keys if ours.get(k) != theirs.get(k)]


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _layer(node: _Node, verifier: _Verifier, keep_names: bool, notes: set[str]) -> Layer | str:
    """The spec layer for ``node``, or why there is none."""
    rank = len(node.shape) if node.shape else 4
    channels = node.shape[-1] if node.shape else None
    theirs = comparable(node.config, rank, channels)
    candidates = _candidates(node)
    if not candidates:
        return "no kind of normdsl makes this class" + (
            "" if node.module in _LAYER_MODULES else f" (from {node.module})"
        )
    why = "its configuration"
    for kind in candidates:
        if not _fixed_match(kind, node, rank):
            continue
        values: dict[str, object] = {}
        args: list[tuple[str | None, object]] = []
        try:
            width = None if kind.width is None else node.config.get(kind.width)
            if kind.width is not None and not (isinstance(width, int) and not isinstance(width, bool) and width >= 1):
                continue
            for p in kind.params:
                if p.key == "name":
                    continue
                if p.keras not in node.config:
                    if p.required:
                        raise Problem(f"no {p.keras}")
                    continue
                value = _spec_value(p, node.config[p.keras], rank)
                if _is_default(p, value):
                    continue
                values[p.keras] = coerce(p, value)
                args.append((None if kind.positional == p.key and p.key != "k" else p.key, value))
        except Problem as problem:
            why = problem.message
            continue
        if kind.with_args is None and any(k.with_args is kind for k in KINDS.values()) and not args:
            args.append(("slope", 0.0))  # ReLU() itself (plain relu is Activation("relu"))
        ours = verifier.config(kind, values, width)
        if ours is None:
            why = "Keras refuses the arguments read from it"
            continue
        ours_c = comparable(ours, rank, channels)
        if ours_c != theirs:
            why = "it differs in " + ", ".join(_differences(ours_c, theirs))
            continue
        dropped = [
            k for k, v in node.config.items() if k.endswith("_initializer") and _plain(v) != _plain(ours.get(k, v))
        ]
        for k in dropped:
            shown = node.config[k].get("class_name", "?") if isinstance(node.config[k], dict) else node.config[k]
            notes.add(f"{node.cls} {k}={shown} is not kept (the language has no such initializer)")
        written = node.config.get("activation")
        if written in _EQUIVALENT_ACTIVATIONS and kind.fixed:
            notes.add(f"Activation({written!r}) is written {kind.name}, Keras's alias of the same function")
        if keep_names:
            if not NAME_RE.fullmatch(node.name):
                return f"its name {node.name!r} is not a name the language can write"
            args.append(("name", node.name))
        positional = [a for a in args if a[0] is None]
        return Layer(kind.name, width, tuple(positional + [a for a in args if a[0] is not None]))
    return f"no kind of normdsl makes it exactly: {why}"


# ---- the graph as nested sequences -------------------------------------------------------------


def from_config(config: Mapping[str, Any], keras: Any, *, keep_names: bool = False) -> Imported:
    """The item tree of a model's functional config (``model.get_config()``)."""
    if not isinstance(config, Mapping):
        raise ImportProblem(["the model's config is not an object"])
    # tuples as lists, as in a .keras archive; without the archive's shared_object_id bookkeeping
    config = json.loads(json.dumps(config, default=_jsonable), object_hook=_unshared)
    inner: Mapping[str, Any] = config["config"] if isinstance(config.get("config"), dict) else config
    try:
        return _from_config(inner, keras, keep_names)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, RecursionError) as exc:
        if isinstance(exc, ImportProblem):
            raise
        raise ImportProblem([f"a malformed model config ({type(exc).__name__}: {str(exc)[:100]})"]) from None


def _from_config(inner: Mapping[str, Any], keras: Any, keep_names: bool) -> Imported:
    reader = _Reader()
    output, shape = reader.model(inner, None)
    if reader.problems:
        raise ImportProblem(reader.problems)
    nodes = reader.nodes
    notes: set[str] = set()
    _fold_reshapes(nodes, notes)
    problems: list[str] = []
    items: dict[int, Any] = {}  # node → Layer, or the merge it is
    verifier = _Verifier(keras)
    for i, node in enumerate(nodes):
        if node.cls == "__folded__":
            continue
        merge = _merge(node)
        if merge is not None:
            if merge == "?":
                problems.append(f"layer {node.index} {node.name!r} ({node.cls}): {_merge_problem(node)}")
            items[i] = merge
            if keep_names:
                notes.add("merges (res, gate, cat) have no names in the language: Keras names them")
            if node.module.startswith("keras.src.ops") and merge == "res":
                notes.add("a sum of tensors (x + y, a Keras operation) is written res(...), an Add layer")
            continue
        if node.module.startswith("keras.src.ops") and node.scalar is not None and node.cls in ("Add", "Multiply"):
            items[i] = Layer("plus" if node.cls == "Add" else "times", None, ((None, node.scalar),))
            continue
        if len(node.inputs) != 1:
            problems.append(f"layer {node.index} {node.name!r} ({node.cls}): reads {len(node.inputs)} tensors")
            continue
        found = _layer(node, verifier, keep_names, notes)
        if isinstance(found, str):
            problems.append(f"layer {node.index} {node.name!r} ({node.cls}): {found}")
        else:
            items[i] = found
    if problems:
        raise ImportProblem(problems)
    tree = _Tree(nodes, items)
    body = tree.sequence(output, -1, 0)
    missing = [nodes[i] for i in range(len(nodes)) if i not in tree.placed and nodes[i].cls != "__folded__"]
    if missing:
        names = ", ".join(f"{n.name!r} ({n.cls})" for n in missing[:10])
        raise ImportProblem([f"{len(missing)} layer(s) do not lead to the model's output: {names}"])
    name = str(inner.get("name") or "model")
    return Imported(shape, tuple(body), sorted(notes), name)


def _merge(node: _Node) -> str | None:
    """res/gate/cat for a merge layer (or a tensor sum), '?' for one the language cannot write, None otherwise."""
    merge = _MERGES.get(node.cls)
    if merge is None:
        return None
    if node.module.startswith("keras.src.ops"):
        if node.scalar is not None or node.cls != "Add" or len(node.inputs) != 2:
            return None if node.scalar is not None else "?"
        return merge
    if merge == "cat":
        rank = len(node.shape) if node.shape else 4
        if _axis(node.config.get("axis", -1), rank) != -1:
            return "?"
        return merge if len(node.inputs) >= 2 else "?"
    return merge if len(node.inputs) == 2 else "?"


def _merge_problem(node: _Node) -> str:
    if node.cls == "Concatenate":
        return "a concatenation along another axis than the channels, or of one tensor"
    return (
        f"{'res' if node.cls == 'Add' else 'gate'}(...) joins exactly two tensors, this merge joins {len(node.inputs)}"
    )


def _fold_reshapes(nodes: list[_Node], notes: set[str]) -> None:
    """GlobalAveragePooling2D then Reshape((1, 1, C)), the pooled value read by nothing else, is
    gap(keepdims=true): EfficientNet's squeeze."""
    readers: dict[int, int] = {}
    for node in nodes:
        for s in node.inputs:
            readers[s] = readers.get(s, 0) + 1
    for node in nodes:
        if node.cls != "Reshape" or len(node.inputs) != 1 or node.inputs[0] < 0:
            continue
        source = nodes[node.inputs[0]]
        target = node.config.get("target_shape")
        if (
            source.cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D")
            and not source.config.get("keepdims")
            and readers.get(node.inputs[0]) == 1
            and isinstance(target, list)
            and len(target) == 3
            and target[:2] == [1, 1]
            and len(source.shape) == 4
            and target[2] == source.shape[3]
        ):
            source.config = {**source.config, "keepdims": True}
            node.cls = "__folded__"
            for other in nodes:
                other.inputs = [node.inputs[0] if s == nodes.index(node) else s for s in other.inputs]
            notes.add(
                f"{source.cls} then Reshape((1, 1, C)) is written {'gap' if 'Average' in source.cls else 'gmp'}(keepdims=true)"
            )


class _Tree:
    """The graph read back from the output: each merge's branches end at its immediate dominator."""

    def __init__(self, nodes: list[_Node], items: Mapping[int, Any]) -> None:
        self.nodes, self.items = nodes, items
        self.placed: set[int] = set()
        self.idom = self._dominators()

    def _dominators(self) -> dict[int, int]:
        """Immediate dominators from the input (-1), nodes being in topological order (Cooper et al.)."""
        order = {-1: -1}
        for i, _ in enumerate(self.nodes):
            order[i] = i
        idom: dict[int, int] = {-1: -1}
        for i, node in enumerate(self.nodes):
            if node.cls == "__folded__":
                continue
            preds = [p for p in node.inputs if p in idom]
            if len(preds) != len(node.inputs):
                raise ImportProblem([f"layer {node.index} {node.name!r}: its inputs come after it"])
            new = preds[0]
            for p in preds[1:]:
                a, b = new, p
                while a != b:
                    while a > b:
                        a = idom[a]
                    while b > a:
                        b = idom[b]
                new = a
            idom[i] = new
        return idom

    def sequence(self, end: int, stop: int, depth: int) -> list[Any]:
        """The items from ``stop``'s output to ``end``'s, in order."""
        if depth > MAX_DEPTH:
            raise ImportProblem([f"merges nested more than {MAX_DEPTH} deep"])
        out: list[Any] = []
        current = end
        while current != stop:
            if current < 0:
                raise ImportProblem(["the model's connections are not nested sequences, sums and concatenations"])
            if current in self.placed:
                node = self.nodes[current]
                raise ImportProblem(
                    [
                        f"layer {node.index} {node.name!r} ({node.cls}) is read by several paths that do not meet"
                        " in one merge: not nested sequences, sums and concatenations"
                    ]
                )
            self.placed.add(current)
            node, item = self.nodes[current], self.items[current]
            if isinstance(item, str):  # a merge
                fork = self.idom[current]
                branches = [tuple(self.sequence(s, fork, depth + 1)) for s in node.inputs]
                out.append(_join(item, branches))
                current = fork
            else:
                out.append(item)
                current = node.inputs[0]
        return out[::-1]


def _join(merge: str, branches: list[tuple[Any, ...]]) -> Join:
    if merge == "cat":
        return Join("cat", tuple(branches))
    a, b = branches
    if not a and not b:
        raise ImportProblem([f"{merge}: a tensor {'added to' if merge == 'res' else 'multiplied by'} itself"])
    if not a:  # Add()([x, body]): the shortcut (the fork's output) first
        return Join(merge, (b,))
    if not b:
        return Join(merge, (a,), first=True)
    return Join(merge, (b, a))  # Add()([shortcut, body])


# ---- sources -----------------------------------------------------------------------------------


def read_archive(path: Path) -> dict[str, Any]:
    """The config.json of a .keras archive, read as data (no code of it runs), within MAX_CONFIG_BYTES."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise ImportProblem([f"{path}: not a Keras archive (no config.json in it)"]) from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise ImportProblem([f"{path}: config.json is {info.file_size:,} bytes, over {MAX_CONFIG_BYTES:,}"])
            with archive.open(info) as stream:
                raw = stream.read(MAX_CONFIG_BYTES + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ImportProblem([f"{path}: not a readable .keras archive ({exc})"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ImportProblem([f"{path}: config.json is over {MAX_CONFIG_BYTES:,} bytes"])
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ImportProblem([f"{path}: config.json is not JSON ({str(exc)[:100]})"]) from None
    if not isinstance(config, dict):
        raise ImportProblem([f"{path}: config.json is not an object"])
    if config.get("class_name") not in ("Functional", "Sequential", "Model"):
        raise ImportProblem([f"{path}: the archive holds a {str(config.get('class_name'))[:60]!r}, not a model"])
    return config


_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def load_source(source: str, keras: Any) -> tuple[dict[str, Any], Any]:
    """(config, model or None) for SOURCE: a .keras file, keras.applications.NAME or module:function."""
    if source.startswith("keras.applications."):
        name = source.removeprefix("keras.applications.")
        builder = getattr(keras.applications, name, None) if name.isidentifier() and not name.startswith("_") else None
        if builder is None or not callable(builder) or not name[:1].isupper():
            known = sorted(n for n in dir(keras.applications) if n[:1].isupper())
            from normdsl.diagnostics import did_you_mean

            hint = did_you_mean(name, known) or "e.g. keras.applications.ResNet50"
            raise ImportProblem([f"keras.applications has no model {name!r:.60}; {hint}"])
        try:
            model = builder(weights=None)
        except ValueError:  # MobileNetV3 wants a fixed input to build at 224
            model = builder(weights=None, input_shape=(224, 224, 3))
        return _model_config(model, source), model
    if source.endswith(".keras") or Path(source).suffix == ".keras":
        return read_archive(Path(source)), None
    module, colon, function = source.partition(":")
    if not colon or not _MODULE_RE.fullmatch(module) or not function.isidentifier():
        raise ImportProblem(
            [
                f"{source!r:.80} is not a .keras file, keras.applications.NAME nor module:function (e.g. mypkg.models:build)"
            ]
        )
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise ImportProblem([f"cannot import {module}: {exc}"]) from None
    except (Exception, SystemExit) as exc:  # its code ran and failed
        raise ImportProblem([f"importing {module} failed: {type(exc).__name__}: {str(exc)[:200]}"]) from None
    found = getattr(loaded, function, None)
    if found is None:
        raise ImportProblem([f"module {module} has no {function}"])
    try:
        model = found() if callable(found) and not hasattr(found, "get_config") else found
    except (Exception, SystemExit) as exc:
        raise ImportProblem([f"{source} failed: {type(exc).__name__}: {str(exc)[:200]}"]) from None
    return _model_config(model, source), model


def _model_config(model: Any, source: str) -> dict[str, Any]:
    if not hasattr(model, "get_config") or not hasattr(model, "layers"):
        raise ImportProblem([f"{source} gives a {type(model).__name__}, not a Keras model"])
    try:
        config = model.get_config()
    except Exception as exc:
        raise ImportProblem([f"{source}: Keras cannot describe this model ({str(exc)[:200]})"]) from None
    if not isinstance(config, dict) or "layers" not in config:
        raise ImportProblem([f"{source}: a subclassed model (its call() is code, not a graph of layers)"])
    return {"class_name": type(model).__name__, "config": json.loads(json.dumps(config, default=_jsonable))}


def _number(value: float) -> str:
    return repr(value) if math.isfinite(value) else "nan"


# ---- the API -----------------------------------------------------------------------------------


def from_keras(model: Any, *, keep_names: bool = False, source: str | None = None) -> str:
    """A Keras functional or Sequential model as compact spec text that rebuilds it: the same layers
    and configurations (names aside unless ``keep_names``), connections and parameter counts.
    Raises :class:`ImportProblem` listing every layer the language cannot write (by name, class and
    position), or why the model is not one it can describe (several inputs or outputs, shared layers)."""
    from normdsl.emit_keras import keras_module
    from normdsl.factor import spec_text

    keras = keras_module()
    config = _model_config(model, source or "the model")
    imported = from_config(config, keras, keep_names=keep_names)
    return spec_text(imported, source=source or f"a Keras model ({type(model).__name__})", factor=not keep_names)


def import_source(source: str, *, keep_names: bool = False) -> str:
    """``normdsl import SOURCE``: the spec of a .keras file (read as data), keras.applications.NAME
    (built with weights=None) or module:function (imported and called: that runs its code)."""
    from normdsl.emit_keras import keras_module
    from normdsl.factor import spec_text

    keras = keras_module()
    config, _ = load_source(source, keras)
    imported = from_config(config, keras, keep_names=keep_names)
    return spec_text(imported, source=source, factor=not keep_names)

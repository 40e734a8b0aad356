"""An imported model's item tree → compact spec text (issue 19); no framework here.

Four passes, each kept only where it makes the text shorter:

- the normalization: when every normalization layer is the same call, ``norm = <it>`` and ``norm``
  in its place, so that ``--norm`` swaps it at once;
- repetitions: runs of identical items (or groups of items) become ``item*n``;
- blocks: a run of items that occurs several times with the same structure (kinds, keys, merges),
  differing only in numbers, becomes ``let block(params) = ...``; each number that varies is a
  parameter, or, when it follows one (equal, a multiple, ``p // m + c``), an expression of it
  (``conv{4*f}``); greedily, the run saving the most characters first;
- repetitions again (``identity(64)*2``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from normdsl.diagnostics import SpecError
from normdsl.importer import Expr, Imported, ImportProblem, Item, Join, Layer, Repeat, Use
from normdsl.layers import ACTIVATIONS, KINDS

MAX_PATTERN = 40  # items in one block
MAX_FACTORED = 6_000  # items searched for blocks (a larger model gets repetitions and norm only)
MAX_PARAMS = 8  # parameters of one block
MAX_CANDIDATES = 300  # runs whose blocks are tried per step, the most promising first
_RESERVED = {*KINDS, "norm", "id", "res", "cat", "gate", "input", "let", "use", "scaling", "shortcut", "first"}


# ---- text -------------------------------------------------------------------------------------


def value_text(value: object, top: bool = True) -> str:
    if isinstance(value, Expr):
        return value.text if top and value.text.isidentifier() else "{" + value.text + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(value_text(v, False) for v in value) + ")"
    if isinstance(value, str):
        return value
    raise TypeError(f"no spec text for {value!r}")


def _arg_text(key: str | None, value: object) -> str:
    if key == "name":
        return f'name="{value}"'
    return value_text(value) if key is None else f"{key}={value_text(value)}"


def item_text(item: Item) -> str:
    if isinstance(item, Layer):
        width = "" if item.width is None else value_text(item.width, top=False)
        args = ", ".join(_arg_text(k, v) for k, v in item.args)
        return f"{item.kind}{width}" + (f"({args})" if args else "")
    if isinstance(item, Use):
        return item.block + (f"({', '.join(_arg_text(k, v) for k, v in item.args)})" if item.args else "")
    if isinstance(item, Repeat):
        inner = seq_text(item.items)
        one = len(item.items) == 1 and not (isinstance(item.items[0], Repeat))
        return (inner if one else f"({inner})") + f"*{value_text(item.count)}"
    if item.merge == "cat":
        return "cat(" + ", ".join(seq_text(b) if b else "id" for b in item.branches) + ")"
    text = f"{item.merge}({seq_text(item.branches[0])}"
    if len(item.branches) > 1:
        text += f", shortcut={seq_text(item.branches[1])}"
    return text + (", first=body)" if item.first else ")")


def seq_text(items: Sequence[Item]) -> str:
    return " ".join(item_text(i) for i in items)


def _group(items: Sequence[Item]) -> str:
    text = seq_text(items)
    return text if len(items) == 1 else f"({text})"


@dataclass
class Block:
    name: str
    params: tuple[str, ...]
    body: tuple[Item, ...]
    defaults: tuple[tuple[str, object], ...] = ()  # the last parameters' defaults

    def text(self) -> str:
        if not self.params:
            return f"{self.name} = {_group(self.body)}"
        given = dict(self.defaults)
        params = [p if p not in given else f"{p}={value_text(given[p])}" for p in self.params]
        return f"let {self.name}({', '.join(params)}) = {_group(self.body)}"


def spec_text(imported: Imported, *, source: str, factor: bool = True) -> str:
    """The spec: a head naming the source and the rewrites, norm, blocks, input, body; laid out by fmt."""
    from normdsl.fmt import format_spec

    items, norm = (imported.items, None)
    blocks: list[Block] = []
    if factor:
        items, norm = shared_norm(items)
        items = repetitions(items)
        if _count(items) <= MAX_FACTORED:
            explicit = _Defaults(items)
            items, blocks = factor_blocks(explicit.written(items))
            items = repetitions(explicit.omitted(items))
            blocks = [replace(b, body=explicit.omitted(b.body)) for b in blocks]
    lines = [f"# {imported.name}, imported from {source} by normdsl import."]
    lines += [f"# {note}." for note in imported.notes]
    if norm is not None:
        lines.append(f"norm = {item_text(norm)}")
    lines += [b.text() for b in blocks]
    if blocks or norm is not None:
        lines.append("")
    lines.append(f"input({', '.join(map(str, imported.input_shape))})")
    lines.append(seq_text(items))
    try:
        return format_spec("\n".join(lines) + "\n")
    except SpecError as error:  # nested or large past the language's limits
        raise ImportProblem([f"the model's spec is beyond normdsl's limits: {error.errors[0].message}"]) from None


# ---- walking the tree -------------------------------------------------------------------------


def _children(item: Item) -> Iterator[tuple[Item, ...]]:
    if isinstance(item, Join):
        yield from item.branches
    elif isinstance(item, Repeat):
        yield item.items


def _map_seqs(items: tuple[Item, ...], f: Any) -> tuple[Item, ...]:
    """f applied to every sequence of the tree, innermost first."""
    out: list[Item] = []
    for item in items:
        if isinstance(item, Join):
            item = replace(item, branches=tuple(_map_seqs(b, f) for b in item.branches))
        elif isinstance(item, Repeat):
            item = replace(item, items=_map_seqs(item.items, f))
        out.append(item)
    result: tuple[Item, ...] = f(tuple(out))
    return result


def _count(items: Sequence[Item]) -> int:
    return sum(1 + sum(_count(c) for c in _children(i)) for i in items)


def _layers(items: Sequence[Item]) -> Iterator[Layer]:
    for item in items:
        if isinstance(item, Layer):
            yield item
        for child in _children(item):
            yield from _layers(child)


# ---- norm ---------------------------------------------------------------------------------------


def shared_norm(items: tuple[Item, ...]) -> tuple[tuple[Item, ...], Layer | None]:
    """``norm`` for the normalization, when every normalization layer is the same call."""
    norms = {layer for layer in _layers(items) if layer.kind in KINDS and KINDS[layer.kind].is_norm}
    if len(norms) != 1:
        return items, None
    (norm,) = norms
    return _map_seqs(items, lambda seq: tuple(Use("norm") if i == norm else i for i in seq)), norm


# ---- repetitions --------------------------------------------------------------------------------


def repetitions(items: tuple[Item, ...]) -> tuple[Item, ...]:
    return _map_seqs(items, _runs)


def _runs(seq: tuple[Item, ...]) -> tuple[Item, ...]:
    """Runs of a repeated item or group, greedily from the left, the longest coverage first."""
    out: list[Item] = []
    i, n = 0, len(seq)
    while i < n:
        best = (1, 1)  # (period, count)
        for period in range(1, min(MAX_PATTERN, (n - i) // 2) + 1):
            count = 1
            while (
                i + (count + 1) * period <= n
                and seq[i + count * period : i + (count + 1) * period] == seq[i : i + period]
            ):
                count += 1
            if count > 1 and count * period > best[0] * best[1]:
                best = (period, count)
        period, count = best
        if count > 1:
            unit = seq[i : i + period]
            if not isinstance(unit[0], Join) and i + 1 < n and isinstance(seq[i + 1], Join):
                later = 1
                while seq[i + 1 + later * period : i + 1 + (later + 1) * period] == seq[i + 1 : i + 1 + period]:
                    later += 1
                if later >= count:  # (relu res)*2 relu → relu (res relu)*2: a unit starting at its merge
                    out.append(seq[i])
                    i += 1
                    continue
            if len(unit) == 1 and isinstance(unit[0], Repeat) and isinstance(unit[0].count, int):  # (x*2)*3 → x*6
                out.append(Repeat(unit[0].items, unit[0].count * count))
            else:
                out.append(Repeat(unit, count))
            i += period * count
        else:
            out.append(seq[i])
            i += 1
    return tuple(out)


# ---- blocks -------------------------------------------------------------------------------------


def _numeric(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_numeric(v) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Defaults:
    """Numeric arguments written out at their defaults while blocks are found, so that conv{f}(k=1) and
    conv{f}(k=1, s=2) line up (s a parameter); left out again afterwards."""

    def __init__(self, items: tuple[Item, ...]) -> None:
        self.keys: dict[str, list[str]] = {}
        found: dict[str, set[str]] = {}
        for layer in _layers(items):
            kind = self._kind(layer)
            if kind is None:
                continue
            for key, value in layer.args:
                param = kind.params_by_key.get(key or kind.positional or "")
                if param is not None and param.default is not None and _numeric(value) and _numeric(param.default):
                    found.setdefault(layer.kind, set()).add(param.key)
        for name, keys in found.items():
            kind = KINDS[name]
            self.keys[name] = [p.key for p in kind.params if p.key in keys]

    @staticmethod
    def _kind(layer: Layer) -> Any:
        kind = KINDS.get(layer.kind)
        if kind is not None and kind.with_args is not None and layer.args:
            return kind.with_args
        return kind

    @staticmethod
    def _default(value: object) -> object:
        if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
            return value[0]
        return value

    def _order(self, layer: Layer, args: dict[str, object]) -> Layer:
        kind = self._kind(layer)
        ordered: list[tuple[str | None, object]] = []
        for p in kind.params:
            if p.key in args:
                ordered.append((None if kind.positional == p.key and p.key != "k" else p.key, args[p.key]))
        return replace(layer, args=tuple(sorted(ordered, key=lambda a: a[0] is not None)))

    def _keyed(self, layer: Layer) -> dict[str, object]:
        kind = self._kind(layer)
        return {(k or kind.positional): v for k, v in layer.args}

    def written(self, items: tuple[Item, ...]) -> tuple[Item, ...]:
        def one(layer: Layer) -> Layer:
            if layer.kind not in self.keys:
                return layer
            args = self._keyed(layer)
            kind = self._kind(layer)
            for key in self.keys[layer.kind]:
                args.setdefault(key, self._default(kind.params_by_key[key].default))
            return self._order(layer, args)

        return _map_layers(items, one)

    def omitted(self, items: tuple[Item, ...]) -> tuple[Item, ...]:
        def one(layer: Layer) -> Layer:
            if layer.kind not in self.keys:
                return layer
            kind = self._kind(layer)
            args = self._keyed(layer)
            for key in self.keys[layer.kind]:
                default = self._default(kind.params_by_key[key].default)
                if key in args and not isinstance(args[key], Expr) and self._default(args[key]) == default:
                    del args[key]
            return self._order(layer, args)

        return _map_layers(items, one)


def _map_layers(items: tuple[Item, ...], f: Any) -> tuple[Item, ...]:
    return _map_seqs(items, lambda seq: tuple(f(i) if isinstance(i, Layer) else i for i in seq))


def _shape(item: Item) -> tuple[Any, list[object]]:
    """An item's structure with its numbers taken out (holes), and the numbers, in order."""
    holes: list[object] = []

    def value(v: object) -> object:
        if isinstance(v, bool | str) or v is None:
            return v
        if isinstance(v, int | float):
            holes.append(v)
            return type(v).__name__
        if isinstance(v, tuple):
            return tuple(value(x) for x in v)
        return ("expr", str(v))

    def walk(it: Item) -> Any:
        if isinstance(it, Layer):
            return ("L", it.kind, value(it.width), tuple((k, value(v)) for k, v in it.args))
        if isinstance(it, Use):
            return ("U", it.block, tuple((k, value(a)) for k, a in it.args))
        if isinstance(it, Repeat):
            return ("R", value(it.count), tuple(walk(x) for x in it.items))
        return ("J", it.merge, it.first, tuple(tuple(walk(x) for x in b) for b in it.branches))

    return walk(item), holes


def _fill(item: Item, values: Iterator[object]) -> Item:
    """The item with its numbers replaced, in the order _shape took them out."""

    def value(v: object) -> object:
        if isinstance(v, bool | str) or v is None:
            return v
        if isinstance(v, int | float):
            return next(values)
        if isinstance(v, tuple):
            return tuple(value(x) for x in v)
        return v

    if isinstance(item, Layer):
        return Layer(item.kind, value(item.width), tuple((k, value(v)) for k, v in item.args))
    if isinstance(item, Use):
        return Use(item.block, tuple((k, value(a)) for k, a in item.args))
    if isinstance(item, Repeat):
        count = value(item.count)
        return Repeat(tuple(_fill(x, values) for x in item.items), count)
    return Join(item.merge, tuple(tuple(_fill(x, values) for x in b) for b in item.branches), item.first)


@dataclass
class _Candidate:
    key: tuple[Any, ...]
    places: list[tuple[int, int]]  # (sequence id, start)
    length: int


def factor_blocks(items: tuple[Item, ...]) -> tuple[tuple[Item, ...], list[Block]]:
    blocks: list[Block] = []
    for _ in range(50):
        found = _best(items, blocks)
        if found is None:
            break
        block, apply = found
        items = apply(items)
        blocks.append(block)
    return items, blocks


def _sequences(items: tuple[Item, ...]) -> list[tuple[Item, ...]]:
    out: list[tuple[Item, ...]] = []

    def collect(seq: tuple[Item, ...]) -> tuple[Item, ...]:
        out.append(seq)
        return seq

    _map_seqs(items, collect)
    return out


def _best(items: tuple[Item, ...], blocks: list[Block]) -> tuple[Block, Any] | None:
    seqs = _sequences(items)
    shapes = [[_shape(i) for i in seq] for seq in seqs]
    ids: dict[Any, int] = {}
    total = sum(len(seq) for seq in seqs)
    longest = max(4, min(MAX_PATTERN, 30_000 // max(total, 1)))  # bounded work on huge models
    occurrences: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for s, seq in enumerate(seqs):
        keys = [ids.setdefault(k, len(ids)) for k, _ in shapes[s]]
        for start in range(len(seq)):
            for length in range(1, min(longest, len(seq) - start) + 1):
                occurrences.setdefault(tuple(keys[start : start + length]), []).append((s, start))
    candidates: list[tuple[int, int, list[tuple[int, int]]]] = []
    for key, places in occurrences.items():
        if len(places) < 2:
            continue
        length = len(key)
        chosen: list[tuple[int, int]] = []
        ends: dict[int, int] = {}
        for s, start in places:  # non-overlapping, left to right
            if start >= ends.get(s, 0):
                chosen.append((s, start))
                ends[s] = start + length
        if len(chosen) >= 2:
            candidates.append(((len(chosen) - 1) * length, length, chosen))
    candidates.sort(key=lambda c: -c[0])
    best: tuple[tuple[int, bool, bool], Block, dict[tuple[int, int], Use], int] | None = None
    taken = {b.name for b in blocks}
    for _, length, chosen in candidates[:MAX_CANDIDATES]:
        values = [[v for _, hs in shapes[s][start : start + length] for v in hs] for s, start in chosen]
        template = seqs[chosen[0][0]][chosen[0][1] : chosen[0][1] + length]
        found = _parameterize(template, values, {b.name: b.params for b in blocks})
        if found is None:
            continue
        params, body, calls, defaults = _with_defaults(*found)
        block = Block(_name(template, taken), params, body, defaults)
        structural = (isinstance(template[0], Join), not isinstance(template[-1], Join))
        sample = chosen[:50]  # the text saved, measured on at most 50 uses
        before = sum(len(seq_text(seqs[s][start : start + length])) + 1 for s, start in sample)
        after = sum(len(item_text(Use(block.name, c))) + 1 for c in calls[:50])
        before, after = before * len(chosen) // len(sample), after * len(chosen) // len(sample) + len(block.text()) + 1
        score = (before - after, *structural)
        if score[0] > 0 and (best is None or score > best[0]):
            uses = {place: Use(block.name, c) for place, c in zip(chosen, calls, strict=True)}
            best = (score, block, uses, length)
    if best is None:
        return None
    _, block, uses, length = best
    taken.add(block.name)
    targets = {id(seqs[s]): s for s in {s for s, _ in uses}}

    def apply(tree: tuple[Item, ...]) -> tuple[Item, ...]:
        counter = iter(range(len(seqs)))

        def rewrite(seq: tuple[Item, ...]) -> tuple[Item, ...]:
            s = next(counter)
            starts = {start: use for (t, start), use in uses.items() if t == s}
            if not starts:
                return seq
            out: list[Item] = []
            i = 0
            while i < len(seq):
                if i in starts:
                    out.append(starts[i])
                    i += length
                else:
                    out.append(seq[i])
                    i += 1
            return tuple(out)

        return _map_seqs(tree, rewrite)

    del targets
    return block, apply


def _name(template: Sequence[Item], taken: set[str]) -> str:
    """block, residual, projection (a res with a shortcut), gated, dense; a layer's kind for one layer."""
    joins = [i for i in template if isinstance(i, Join)]
    base = "stage" if any(isinstance(i, Repeat) for i in template) else "block"
    if joins and base == "block":
        base = {"res": "residual", "gate": "gated", "cat": "dense"}[joins[0].merge]
        base = "projection" if joins[0].merge == "res" and len(joins[0].branches) > 1 else base
    if len(template) == 1 and isinstance(template[0], Layer):
        layer = template[0]
        numbers = [v for _, v in layer.args if isinstance(v, int | float) and not isinstance(v, bool)]
        base = layer.kind + (str(int(numbers[0])) if numbers and float(numbers[0]).is_integer() else "_")
    name, n = base, 2
    while name in taken or name in _RESERVED or name in ACTIVATIONS:
        name, n = f"{base}{n}", n + 1
    return name


_PARAM_NAMES = {"width": "fghe", "k": "k", "s": "s", "p": "p", "pad": "q", "n": "n"}


def _parameterize(
    template: Sequence[Item], values: list[list[object]], block_params: dict[str, tuple[str, ...]]
) -> tuple[tuple[str, ...], tuple[Item, ...], list[tuple[tuple[str | None, object], ...]]] | None:
    """The block's parameters, its body (numbers replaced by parameters and expressions) and each use's
    arguments; None if the occurrences' numbers do not line up."""
    if any(len(v) != len(values[0]) for v in values):
        return None
    roles = _roles(template, block_params)
    columns = list(zip(*values, strict=True)) if values[0] else []
    params: list[str] = []
    param_columns: list[tuple[object, ...]] = []
    param_roles: list[str] = []
    replaced: list[object] = []
    used: set[str] = set()
    for h, column in enumerate(columns):
        if len(set(column)) == 1 and type(column[0]) is type(column[-1]):
            replaced.append(column[0])
            continue
        role = roles[h] if h < len(roles) else ""
        alike = [i for i, r in enumerate(param_roles) if r == role]  # widths follow widths, strides strides
        expr = _relation(column, [params[i] for i in alike], [param_columns[i] for i in alike])
        if expr is not None:
            replaced.append(Expr(expr))
            continue
        if len(params) == MAX_PARAMS:
            return None  # not a readable block
        name = _param_name(role, used)
        params.append(name)
        param_columns.append(column)
        param_roles.append(role)
        replaced.append(Expr(name))
    values_iter = iter(replaced)
    body = tuple(_fill(item, values_iter) for item in template)
    calls: list[tuple[tuple[str | None, object], ...]] = [
        tuple((None, column[i]) for column in param_columns) for i in range(len(values))
    ]
    return tuple(params), body, calls


def _with_defaults(
    params: tuple[str, ...], body: tuple[Item, ...], calls: list[tuple[tuple[str | None, object], ...]]
) -> tuple[
    tuple[str, ...], tuple[Item, ...], list[tuple[tuple[str | None, object], ...]], tuple[tuple[str, object], ...]
]:
    """A parameter whose value is the same in most uses (at least two) gets it as its default, and moves
    last; uses give it by name where they differ: bottleneck(128) and bottleneck(64, s=1)."""
    n = len(calls)
    defaults: dict[str, object] = {}
    for i, name in enumerate(params):
        column = [call[i][1] for call in calls]
        common = max(column, key=column.count)
        if column.count(common) >= 2 and 2 * column.count(common) > n and _role(name) != "width":
            defaults[name] = common
    order = [p for p in params if p not in defaults] + [p for p in params if p in defaults]
    uses = []
    for call in calls:
        given = {p: v for p, (_, v) in zip(params, call, strict=True)}
        args: list[tuple[str | None, object]] = [(None, given[p]) for p in order if p not in defaults]
        args += [(p, given[p]) for p in order if p in defaults and given[p] != defaults[p]]
        uses.append(tuple(args))
    return tuple(order), body, uses, tuple((p, defaults[p]) for p in order if p in defaults)


def _role(key: str) -> str:
    """A parameter's role from its key or name: widths (f, g, h, e, and filters/units), k, s, p, ..."""
    key = key.rstrip("0123456789")
    return "width" if key in ("width", "f", "g", "h", "e", "a", "b", "c", "d", "groups") else key


def _roles(template: Sequence[Item], block_params: dict[str, tuple[str, ...]]) -> list[str]:
    """Each hole's role (width, k, s, p, ...), in _shape's order; a block's argument has its parameter's."""
    roles: list[str] = []

    def value(v: object, role: str) -> None:
        if isinstance(v, bool | str) or v is None:
            return
        if isinstance(v, int | float):
            roles.append(role)
        elif isinstance(v, tuple):
            for x in v:
                value(x, role)

    def walk(it: Item) -> None:
        if isinstance(it, Layer):
            value(it.width, "width")
            for k, v in it.args:
                value(v, _role(k or "p"))
        elif isinstance(it, Use):
            names = block_params.get(it.block, ())
            for i, (key, a) in enumerate(it.args):
                value(a, _role(key) if key else _role(names[i]) if i < len(names) else "width")
        elif isinstance(it, Repeat):
            value(it.count, "n")
            for x in it.items:
                walk(x)
        else:
            for b in it.branches:
                for x in b:
                    walk(x)

    for item in template:
        walk(item)
    return roles


def _param_name(role: str, used: set[str]) -> str:
    for name in [
        *_PARAM_NAMES.get(role, ""),
        *(f"{role}{i}" for i in range(2, 5) if role.isidentifier()),
        *"mnrtuvwxyz",
    ]:
        if name not in used:
            used.add(name)
            return str(name)
    n = len(used)
    used.add(f"a{n}")
    return f"a{n}"


def _relation(column: tuple[object, ...], params: list[str], columns: list[tuple[object, ...]]) -> str | None:
    """An expression of an earlier parameter giving ``column`` in every occurrence: f, 4*f, f // 2 - 1."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in column):
        for name, other in zip(params, columns, strict=True):
            if other == column:
                return str(name)
        return None
    for name, other in zip(params, columns, strict=True):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in other):
            continue
        ints: list[int] = [int(v) for v in other]  # type: ignore[call-overload]
        got: list[int] = [int(v) for v in column]  # type: ignore[call-overload]
        if got == ints:
            return str(name)
        for m in range(2, 9):
            if got == [m * x for x in ints]:
                return f"{m}*{name}"
            if all(x % m == 0 for x in ints) and got == [x // m for x in ints]:
                return f"{name} // {m}"
        for m in (1, 2):
            offsets = {g - (x // m) for g, x in zip(got, ints, strict=True)}
            if len(offsets) == 1:
                (c,) = offsets
                base = name if m == 1 else f"{name} // {m}"
                if c != 0 and abs(c) <= 4:
                    return f"{base} {'+' if c > 0 else '-'} {abs(c)}"
    return None

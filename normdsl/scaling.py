"""Width and depth scaling: a spec's ``scaling(...)`` defaults and named scales (``scaling b1(...)``),
and the functions its expressions call: ``w(32)`` (a scaled width), ``d(3)`` (a scaled count),
``max``/``min``. Each rounding rule matches its anchor exactly:

- ``make_divisible`` (the default): Keras applications' ``_make_divisible``, timm's ``make_divisible``
  and EfficientNet's ``round_filters``: the nearest multiple of the divisor, at least the divisor,
  and never more than 10% below the target;
- ``ceil``: the multiple of the divisor at or above the target (Ultralytics' ``make_divisible``);
- depth ``ceil`` (EfficientNet's ``round_repeats``) and ``round`` (Ultralytics: ``max(round(n·d), 1)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from normdsl.diagnostics import Span

WIDTH_RULES = ("make_divisible", "ceil")
DEPTH_RULES = ("ceil", "round")
FUNCTIONS = {"w": 1, "d": 1, "max": 2, "min": 2}  # name → number of arguments


@dataclass(frozen=True, slots=True)
class Scaling:
    """Width and depth multipliers, the divisor and rounding rule, and the scale's name."""

    width: float = 1.0
    depth: float = 1.0
    divisor: int = 8
    round: str = "make_divisible"
    depth_round: str = "ceil"
    input: int | None = None  # the input's height and width at this scale (EfficientNet B1: 240)
    name: str | None = None  # the named scale chosen (b1), for messages
    moved: tuple[Moved, ...] = ()  # widths moved so that every group count consuming them divides them

    def width_of(self, channels: int) -> int:
        """``w(channels)``: the scaled width, rounded by the rule."""
        target = channels * self.width
        if self.round == "ceil":
            return max(self.divisor, math.ceil(target / self.divisor) * self.divisor)
        rounded = max(self.divisor, int(target + self.divisor / 2) // self.divisor * self.divisor)
        return rounded + self.divisor if rounded < 0.9 * target else rounded

    def depth_of(self, count: int) -> int:
        """``d(count)``: the scaled repetition count, rounded by the rule."""
        if self.depth_round == "round":
            return max(round(count * self.depth), 1)
        return math.ceil(count * self.depth)

    def call(self, name: str, args: tuple[int, ...]) -> int:
        match name:
            case "w":
                return self.width_of(args[0])
            case "d":
                return self.depth_of(args[0])
            case "max":
                return max(args)
            case "min":
                return min(args)
        raise ValueError(f"no scaling function {name!r}")

    def describe(self) -> str:
        """``scale b1: width 1.0, depth 1.1 (make_divisible by 8, depth ceil), input 240``."""
        head = f"scale {self.name}: " if self.name else "scale: "
        rules = f"{self.round} by {self.divisor}, depth {self.depth_round}"
        return f"{head}width {self.width:g}, depth {self.depth:g} ({rules})" + (
            f", input {self.input}" if self.input else ""
        )


@dataclass(frozen=True, slots=True)
class Moved:
    """A scaled width moved for the group counts that consume it (--round-for-groups)."""

    span: Span  # the w(...) call
    channels: int  # its argument
    width: float
    plain: int  # what the rounding rule gave
    moved: int  # the nearest multiple of the divisor that every consumer's group count divides
    divisor: int
    consumers: tuple[str, ...]  # gn(32), conv96(groups=3)
    groups: tuple[int, ...]  # their group counts

    def describe(self) -> str:
        """``7:6 w(120): 120 × 0.75 = 90 → 88 (divisor 8) → 96 (gn(32) consumes it)``."""
        consumers = ", ".join(self.consumers)
        verb = "consumes" if len(self.consumers) == 1 else "consume"
        return (
            f"{self.span.line}:{self.span.column} w({self.channels}): {self.channels} × {self.width:g} ="
            f" {self.channels * self.width:g} → {self.plain} (divisor {self.divisor}) → {self.moved}"
            f" ({consumers} {verb} it)"
        )


def nearest_multiple(value: int, step: int) -> int:
    """The positive multiple of ``step`` nearest to ``value`` (the larger one on a tie)."""
    below = max(step, value // step * step)
    above = below if below >= value else below + step
    return above if above - value <= value - below or below < step else below


def report(scaling: Scaling) -> str:
    """The scale report: the scale in use and every width moved for the group counts consuming it."""
    lines = [scaling.describe()]
    lines += [f"  {m.describe()}" for m in scaling.moved] or ["  no width moved"]
    return "\n".join(lines)


KEYS = {f.name for f in fields(Scaling)} - {"name", "moved"}


def make(settings: dict[str, object], name: str | None) -> Scaling:
    """The Scaling of the valid ``settings`` (a spec's, then a named scale's, then the caller's); the
    invalid ones were reported where they are written and are left at their defaults."""
    valid = {k: v for k, v in settings.items() if k in KEYS and problem(k, v) is None}
    base = Scaling()

    def number(key: str, default: float) -> float:
        value = valid.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    def integer(key: str, default: int | None) -> int | None:
        value = valid.get(key, default)
        return value if isinstance(value, int) else default

    def word(key: str, default: str) -> str:
        value = valid.get(key, default)
        return value if isinstance(value, str) else default

    return Scaling(
        width=number("width", base.width),
        depth=number("depth", base.depth),
        divisor=integer("divisor", base.divisor) or base.divisor,
        round=word("round", base.round),
        depth_round=word("depth_round", base.depth_round),
        input=integer("input", None),
        name=name,
    )


NO_SCALING = Scaling()


def problem(key: str, value: object) -> str | None:
    """Why ``value`` cannot be the scaling setting ``key`` (None if it can)."""
    if key in ("width", "depth"):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 100
        return None if ok else f"{key} must be a number above 0 (at most 100), got {value!r}"
    if key in ("divisor", "input"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000
        return None if ok else f"{key} must be an integer from 1 to 100,000, got {value!r}"
    if key == "round":
        return None if value in WIDTH_RULES else f"round must be {' or '.join(WIDTH_RULES)}, got {value!r}"
    if key == "depth_round":
        return None if value in DEPTH_RULES else f"depth_round must be {' or '.join(DEPTH_RULES)}, got {value!r}"
    return f"scaling has no setting {key!r}; its settings: {', '.join(sorted(KEYS))}"

"""A permissive stand-in for TensorFlow, Keras and matplotlib: every attribute, call, item, operator and
context works and gives another stand-in, so generated code runs every statement without the libraries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Anything:
    """Accepts any attribute, call, item, arithmetic and ``with``; iterates as two stand-ins (so that
    ``train, validation = ...`` unpacks) and has length two."""

    def __init__(self, name: str = "stub") -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<stub {self._name}>"

    def __getattr__(self, name: str) -> Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything(f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Anything:
        return Anything(f"{self._name}()")

    def __getitem__(self, key: Any) -> Anything:
        return Anything(f"{self._name}[]")

    def __iter__(self) -> Iterator[Anything]:
        return iter((Anything(f"{self._name}[0]"), Anything(f"{self._name}[1]")))

    def __len__(self) -> int:
        return 2

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> Anything:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    def _operator(self, *other: Any) -> Anything:
        return Anything(f"({self._name} op)")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _operator
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __pow__ = __rpow__ = _operator
    __neg__ = __pos__ = _operator


def module_getattr(module: str) -> Any:
    """A module-level ``__getattr__`` (PEP 562) that makes every missing name a stand-in."""

    def __getattr__(name: str) -> Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything(f"{module}.{name}")

    return __getattr__

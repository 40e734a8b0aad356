"""Layer kinds from other packages, through the ``normdsl.kinds`` entry point group.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."normdsl.kinds"]
    mykinds = "mypackage.kinds:KINDS"

where ``KINDS`` is a ``normdsl.layers.LayerKind``, a list of them, or a function returning either.
A kind backed by the plugin's own Keras layer names it with ``keras_class`` and ``module``; the
generated code then imports it from that module, and the safety check admits exactly that import.

Plugins are loaded on first need (an unknown kind in a spec, ``normdsl kinds``), never on the
plain check path: discovering entry points costs tens of milliseconds. A plugin is code you trust.
"""

from __future__ import annotations

import functools
import re

from normdsl.layers import KINDS, LayerKind

GROUP = "normdsl.kinds"
ORIGINS: dict[str, str] = {}  # plugin kind → "distribution version"
_KIND_NAME = re.compile(r"[a-z][a-z_]*")  # no digits: conv64's digits are its width
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class PluginError(ValueError):
    """A plugin that cannot be used: it fails to load, or a kind of it is malformed or taken."""


def kind(name: str) -> LayerKind | None:
    """The kind called ``name``, built in or from a plugin (loading the plugins if need be)."""
    found = KINDS.get(name)
    if found is None:
        load()
        found = KINDS.get(name)
    return found


@functools.cache
def load() -> tuple[str, ...]:
    """Every installed plugin's kinds, added to the registry once; their names."""
    from importlib.metadata import entry_points  # slow to import: only here

    added: list[str] = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        origin = f"{point.dist.name} {point.dist.version}" if point.dist is not None else point.value
        try:
            found = point.load()
            if callable(found) and not isinstance(found, LayerKind):
                found = found()
        except Exception as exc:
            raise PluginError(f"plugin {point.name!r} ({origin}) failed to load: {exc}") from None
        for item in [found] if isinstance(found, LayerKind) else list(found):
            _register(item, origin)
            added.append(item.name)
    return tuple(added)


def _register(item: object, origin: str) -> None:
    if not isinstance(item, LayerKind):
        raise PluginError(f"plugin {origin}: {item!r} is not a normdsl.layers.LayerKind")
    problem = None
    if not _KIND_NAME.fullmatch(item.name):
        problem = "a kind's name is lowercase letters and _ (digits after it are a width)"
    elif item.name in KINDS:
        problem = "the name is taken" + (f" by {ORIGINS[item.name]}" if item.name in ORIGINS else " by normdsl")
    elif not item.keras_class.isidentifier() or (item.module is not None and not _MODULE.fullmatch(item.module)):
        problem = "keras_class must be a class name and module a dotted module name"
    elif not all(p.key.isidentifier() and p.keras.isidentifier() for p in item.params):
        problem = "parameter keys and Keras keywords must be identifiers"
    if problem is not None:
        raise PluginError(f"plugin {origin}: kind {item.name!r}: {problem}")
    KINDS[item.name] = item
    ORIGINS[item.name] = origin

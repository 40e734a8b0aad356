"""Where the grammar and templates are: inside the installed package, or beside it in a checkout."""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.realpath(__file__))  # (os.path, not pathlib: pathlib costs a check's start 4 ms)


def data_dir(name: str) -> str:
    """``normdsl/<name>`` in a wheel install, ``<checkout>/<name>`` in a source or editable checkout."""
    for candidate in (os.path.join(_HERE, name), os.path.join(os.path.dirname(_HERE), name)):
        if os.path.isdir(candidate):
            return candidate
    raise RuntimeError(
        f"normdsl is installed without its {name}/ folder (looked in {_HERE} and {os.path.dirname(_HERE)})"
    )

"""Where the grammar and templates are: inside the installed package, or beside it in a checkout."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``normdsl/<name>`` in a wheel install, ``<checkout>/<name>`` in a source or editable checkout."""
    for candidate in (_HERE / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"normdsl is installed without its {name}/ folder (looked in {_HERE} and {_HERE.parent})")

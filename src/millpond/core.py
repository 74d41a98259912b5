"""Picks the core implementation: the Cython extension, or its pure-Python twin.

``MILLPOND_NO_EXTENSIONS=1`` (or a missing extension) selects the twin. ``IMPLEMENTATION`` says
which one is in use: ``"c"`` or ``"py"``. Both expose the same names (see ``_core_py``).
"""

from __future__ import annotations

import os
from types import ModuleType

from millpond import _core_py


def load(name: str | None = None) -> ModuleType:
    """The core module named ``"c"`` or ``"py"``; ``None`` picks as described above."""
    if name == "py":
        return _core_py
    if name is None and os.environ.get("MILLPOND_NO_EXTENSIONS", "") not in ("", "0"):
        return _core_py
    try:
        from millpond import _core_c
    except ImportError:
        if name == "c":
            raise
        return _core_py
    return _core_c


_default = load()
IMPLEMENTATION: str = _default.IMPLEMENTATION

"""Shape checks of the embedded API's arguments: a value of the wrong Python type is refused
with a MillpondError naming the parameter, before anything is looked up or stored (a string
where a list belongs would otherwise be taken character by character).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millpond.errors import InvalidParameterValue, MillpondError


def entries(value: Any, what: str, error: type[MillpondError] = InvalidParameterValue) -> list[Any]:
    """``value`` as a list: a list or a tuple, nothing else (not a str, a dict or a set)."""
    if not isinstance(value, (list, tuple)):
        raise error(f"{what} must be a list, not {type(value).__name__}.")
    return list(value)


def texts(value: Any, what: str, error: type[MillpondError] = InvalidParameterValue) -> list[str]:
    """``value`` as a list of strings (a list or tuple of str)."""
    items = entries(value, what, error)
    for item in items:
        text(item, f"each of {what}", error)
    return items


def text(value: Any, what: str, error: type[MillpondError] = InvalidParameterValue) -> str:
    """``value`` if it is a str that UTF-8 can encode (no lone surrogates)."""
    if not isinstance(value, str):
        raise error(f"{what} must be a string, not {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{what} must be valid Unicode text (it holds a lone surrogate).") from None
    return value


def mapping(
    value: Any,
    what: str,
    error: type[MillpondError] = InvalidParameterValue,
    required: bool = False,
) -> Mapping[str, Any]:
    """``value`` if it is a mapping; None counts as an empty one unless ``required``."""
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{what} must be a map of names to values, not {type(value).__name__}.")
    return value

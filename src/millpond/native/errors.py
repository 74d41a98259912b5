"""Errors across the native protocol: a whitelist of classes by name, both ways.

The daemon sends an error as ``[class name, AWS code, message]``; the client raises the class of
that name when it is one of millpond's own (every :class:`MillpondError` subclass defined in the
modules below), and a plain :class:`MillpondError` carrying the code otherwise. A name is only
ever looked up in this table, never imported or fetched by attribute.
"""

from __future__ import annotations

from millpond import errors, sns_envelope, subscription
from millpond.errors import MillpondError

# The modules whose MillpondError subclasses may be raised on the client.
_MODULES = frozenset((errors.__name__, sns_envelope.__name__, subscription.__name__, __name__))


class ProtocolError(MillpondError):
    """The peer broke the native protocol (a frame over the limit, bytes that are not msgpack,
    an unknown operation); the daemon closes the connection after a framing error."""

    code = "ProtocolError"
    json_type = "ProtocolError"
    http_status = 400
    sender_fault = True


class AccessDenied(MillpondError):
    """The daemon checks credentials ([auth]) and the client gave none, or wrong ones."""

    code = "AccessDenied"
    json_type = "AccessDeniedException"
    http_status = 403
    sender_fault = True


def _subclasses(base: type[MillpondError]) -> list[type[MillpondError]]:
    found = []
    for cls in base.__subclasses__():
        found.append(cls)
        found.extend(_subclasses(cls))
    return found


# name -> class, for the classes of _MODULES only (a test's or a plugin's subclass is not in it)
_ALL: list[type[MillpondError]] = [MillpondError, *_subclasses(MillpondError)]
CLASSES: dict[str, type[MillpondError]] = {
    cls.__name__: cls for cls in _ALL if cls.__module__ in _MODULES
}


def encode(exc: MillpondError) -> list[str]:
    """What the daemon sends for ``exc``: [class name, AWS code, message]."""
    return [type(exc).__name__, exc.code, str(exc)]


def decode(fields: object) -> MillpondError:
    """The exception to raise for an error the daemon sent."""
    if not isinstance(fields, (list, tuple)) or len(fields) != 3:
        return ProtocolError(f"malformed error from the daemon: {fields!r}")
    name, code, message = (str(field) for field in fields)
    cls = CLASSES.get(name)
    if cls is None:
        exc = MillpondError(message)
        exc.code = code  # the AWS code, for code that inspects it
        return exc
    return cls(message)

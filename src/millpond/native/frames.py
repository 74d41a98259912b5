"""The native protocol's wire format.

Every frame is a 4-byte big-endian length, then that many bytes of msgpack (bin type for bytes,
str for text). A frame longer than the receiver's ``max_frame`` is refused: the daemon answers
with a connection error and closes.

On connect the daemon speaks first, with a greeting ``{"millpond": VERSION, "nonce": 16
bytes, "auth": bool}``. Then the client sends requests and the daemon answers them, in any
order::

    request   [request id (int >= 1), operation (str), target (str or nil), args (array),
               kwargs (map)]
    answer    [request id, OK, result]   or   [request id, ERROR, [class, AWS code, message]]

The first request must be ``hello`` (see :mod:`millpond.native.ops`). Request id 0 is the
connection's own: an error with id 0 is about the connection (a frame over the limit, bytes
that are not msgpack) and the daemon closes it after sending that error.

Results carry millpond's objects as msgpack extension types, so that every method answers
with the same shapes as the embedded broker: QUEUE ``[name, arn, fifo]``, TOPIC ``[name, arn,
fifo]``, SUBSCRIPTION ``[arn, topic name, queue name, endpoint, protocol, pending, owner]``,
MESSAGE ``[body, message id, receipt handle, receive count, sent ms, first receive ms,
metadata (msgpack bytes), dead-letter source ARN, sequence number]`` and ERROR ``[class, AWS
code, message]`` (the per-entry errors of ``delete_entries``).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

VERSION = 1
HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024  # a receive of 10 messages of 1 MiB each, with room
CONNECTION = 0  # the request id of connection-level errors
OK, ERROR = 0, 1

# extension type codes of results
QUEUE, TOPIC, SUBSCRIPTION, MESSAGE, ERROR_VALUE = 1, 2, 3, 4, 5


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix."""
    return HEADER.pack(len(payload)) + payload


def pack_ext(code: int, fields: list[Any]) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(fields, use_bin_type=True))


def unpack(payload: bytes, ext_hook: Any = None) -> Any:
    """One frame's msgpack value (raises ValueError, or a msgpack error, when it is not one)."""
    if ext_hook is None:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=ext_hook)


def too_long(size: int, limit: int) -> str:
    return f"frame of {size} bytes is over the limit of {limit} bytes"

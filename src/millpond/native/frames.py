"""The native protocol's wire format.

Every frame is a 4-byte big-endian length, then that many bytes of msgpack (bin type for bytes,
str for text). A frame longer than the receiver's ``max_frame`` (the daemon's: MAX_HELLO_FRAME
until the hello is answered) is refused: the daemon answers with a connection error and closes.

On connect the daemon speaks first, with a greeting ``{"millpond": VERSION, "nonce": 16
bytes (this connection's), "auth": bool, "max_frame": int}``. Then the client sends requests
and the daemon answers them, in any order::

    request   [request id (int >= 1), operation (str), target (str or nil), args (array),
               kwargs (map)]
    answer    [request id, OK, result]   or   [request id, ERROR, [class, AWS code, message]]

The first request must be ``hello`` (answered by the daemon's region, account id, durability,
core and max frame; see :mod:`millpond.native.server`); requests may follow it at once.
``cancel`` (args ``[request id]``) ends that request if it is a long poll still waiting
(``queue.receive``): its caller stopped waiting, and the poll would otherwise take the next
message for nobody. The poll is not answered; the cancel is (with nil, whatever it found).
Request id 0 is the connection's own: an error with id 0 is about the connection (a frame
over the limit, bytes that are not msgpack) and is the daemon's last frame on it (the requests
still running are answered first); then it closes.

Results carry millpond's objects as msgpack extension types, so that every method answers
with the same shapes as the embedded broker: QUEUE ``[name, arn, fifo]``, TOPIC ``[name, arn,
fifo]``, SUBSCRIPTION ``[arn, topic name, queue name, endpoint, protocol, pending, owner]``,
MESSAGE ``[body, message id, receipt handle, receive count, sent ms, first receive ms,
metadata (msgpack bytes), dead-letter source ARN, sequence number]`` and ERROR ``[class, AWS
code, message]`` (the per-entry errors of ``delete_entries``).
"""

from __future__ import annotations

import hmac
import socket
import struct
from typing import Any

import msgpack

from millpond.errors import (
    BrokerClosed,
    ConnectionLost,
    InvalidParameterValue,
    MessageTooLong,
    MillpondError,
)

VERSION = 1
HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024  # a receive of 10 messages of 1 MiB each, with room
# Before its hello a peer is nobody: its frames (the hello is ~200 bytes) are held to this.
MAX_HELLO_FRAME = 64 * 1024
# Array and map elements of one request, all containers together: a batch of 10 entries with
# 10 attributes each has a few hundred. Without a budget a 16 MiB frame of empty maps unpacks
# to 16 million dicts (~1 GiB, and seconds of the event loop).
MAX_REQUEST_ITEMS = 100_000
CONNECTION = 0  # the request id of connection-level errors
CANCEL = "cancel"  # the operation that ends a long poll whose caller stopped waiting
OK, ERROR = 0, 1

# extension type codes of results
QUEUE, TOPIC, SUBSCRIPTION, MESSAGE, ERROR_VALUE = 1, 2, 3, 4, 5


# A peer that vanishes without a FIN or RST (a host powered off, a cable pulled) is found by
# TCP keepalive after about KEEPALIVE_IDLE_S + KEEPALIVE_COUNT x KEEPALIVE_INTERVAL_S, instead
# of never: the client's calls waiting for it fail with ConnectionLost, and the daemon lets go.
# Data sent and never acknowledged gives up after USER_TIMEOUT_MS (Linux's default retries
# for about 15 minutes).
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3
USER_TIMEOUT_MS = 70_000


def tune(sock: Any) -> None:
    """Set a connection's socket options, on both sides."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames go at once
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),  # Linux names; elsewhere the system's defaults
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix."""
    return HEADER.pack(len(payload)) + payload


def request(rid: int, op: str, target: Any, args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """A client's request frame; raises InvalidParameterValue for an argument the daemon
    cannot take (that call alone fails: a frame the daemon cannot unpack closes the
    connection, and every other call in flight on it)."""
    try:
        payload = msgpack.packb([rid, op, target, args, kwargs], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidParameterValue(f"An argument of {op} cannot be sent: {exc}") from None
    _refuse_keys_not_text(op, [args, kwargs])  # after packb, which bounds the nesting
    return frame(payload)


def _refuse_keys_not_text(op: str, value: Any) -> None:
    """Raise InvalidParameterValue for a dict key in ``value`` that is not text: the daemon
    unpacks map keys as str or bytes only (msgpack's strict_map_key, against hash flooding)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, nested in item.items():
                if not isinstance(key, (str, bytes, bytearray, memoryview)):
                    raise InvalidParameterValue(
                        f"An argument of {op} cannot be sent: a dict key must be str, "
                        f"not {key!r:.100}"
                    )
                stack.append(nested)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def pack_ext(code: int, fields: list[Any]) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(fields, use_bin_type=True))


def unpack(payload: bytes, ext_hook: Any = None) -> Any:
    """One frame's msgpack value (raises ValueError, or a msgpack error, when it is not one)."""
    if ext_hook is None:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return msgpack.unpackb(payload, raw=False, strict_map_key=False, ext_hook=ext_hook)


def unpack_request(payload: bytes) -> Any:
    """One request frame's msgpack value, within MAX_REQUEST_ITEMS elements (raises
    ValueError, or a msgpack error, when it is not msgpack or passes the budget)."""
    if len(payload) <= MAX_REQUEST_ITEMS:  # every element takes a byte at least: within it
        return msgpack.unpackb(payload, raw=False)
    budget = MAX_REQUEST_ITEMS

    def spend(count: int) -> None:
        nonlocal budget
        budget -= count
        if budget < 0:
            raise ValueError(f"a request of more than {MAX_REQUEST_ITEMS} array or map elements")

    def array(items: list[Any]) -> list[Any]:
        spend(len(items))
        return items

    def mapping(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        spend(len(pairs))
        return dict(pairs)

    # each container is counted once built: the limits stop one huge container before that
    return msgpack.unpackb(
        payload,
        raw=False,
        list_hook=array,
        object_pairs_hook=mapping,
        max_array_len=MAX_REQUEST_ITEMS,
        max_map_len=MAX_REQUEST_ITEMS,
    )


def cancel(rid: int, of: int) -> bytes:
    """The frame of request ``rid`` that cancels request ``of`` (see the module's docstring)."""
    return frame(msgpack.packb([rid, CANCEL, None, [of], {}], use_bin_type=True))


def too_long(size: int, limit: int) -> str:
    return f"frame of {size} bytes is over the limit of {limit} bytes"


def not_sent(error: MillpondError) -> MillpondError:
    """What a call raises, unsent, on a connection that failed with ``error``: BrokerClosed
    once the client was closed (as the embedded broker's calls then), else ConnectionLost."""
    return (BrokerClosed if isinstance(error, BrokerClosed) else ConnectionLost)(str(error))


_SENDS = frozenset(("queue.send", "queue.send_batch", "queue.send_batch_detailed"))


def request_too_long(op: str, size: int, limit: int) -> InvalidParameterValue:
    """What a client raises for a request over the daemon's limit (not sent): MessageTooLong
    for a send, as the embedded queue raises for a body over its size (code that catches it to
    store the payload elsewhere must see it here too), else InvalidParameterValue."""
    kind = MessageTooLong if op in _SENDS else InvalidParameterValue
    return kind(too_long(size, limit))


def request_limit(greeting: dict[str, Any]) -> int:
    """The largest request frame the daemon takes, from its greeting: a larger one would make
    it close the connection, failing every call in flight on it."""
    limit = greeting.get("max_frame")
    return limit if type(limit) is int and limit > 0 else MAX_FRAME


def welcome(answer: Any) -> dict[str, Any]:
    """The daemon's answer to the hello: its facts (region, account_id, durability,
    implementation, max_frame); raises the daemon's error when it refused."""
    from millpond.native import errors  # errors imports nothing of this module's

    if not isinstance(answer, list) or len(answer) != 3 or answer[0] != 1:
        raise errors.ProtocolError(f"malformed hello answer {answer!r:.100}")
    if answer[1] != OK:
        raise errors.decode(answer[2])
    return answer[2]  # type: ignore[no-any-return]


SIGNATURE_CONTEXT = b"millpond-native-1:"  # what an access key's secret signs: this + nonce


def signature(secret: str, nonce: bytes) -> str:
    """The hello's proof of a secret: HMAC-SHA256 of the greeting's nonce (hex)."""
    return hmac.new(secret.encode(), SIGNATURE_CONTEXT + nonce, "sha256").hexdigest()


def hello(
    greeting: Any, region: str | None, access_key_id: str | None, secret_access_key: str | None
) -> bytes:
    """The client's hello frame (request id 1) answering the daemon's ``greeting``.

    Raises ConnectionLost when the daemon refused the connection (an error said in place of
    the greeting: too many connections), ValueError when the greeting is not a millpond
    daemon's of this version.
    """
    if isinstance(greeting, list) and len(greeting) == 3 and greeting[:2] == [CONNECTION, ERROR]:
        from millpond.native import errors  # errors imports nothing of this module's

        raise ConnectionLost(f"the daemon refused the connection: {errors.decode(greeting[2])}")
    if not isinstance(greeting, dict) or greeting.get("millpond") != VERSION:
        raise ValueError(f"not a millpond native port of version {VERSION}: {greeting!r:.100}")
    options: dict[str, Any] = {"version": VERSION, "region": region}
    if access_key_id is not None and secret_access_key is not None:
        options["access_key_id"] = access_key_id
        options["signature"] = signature(secret_access_key, greeting["nonce"])
    return frame(msgpack.packb([1, "hello", None, [], options], use_bin_type=True))

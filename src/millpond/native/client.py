"""The native protocol's synchronous client: ``millpond.connect("millpond://host:port")``.

:class:`Client` has the embedded :class:`millpond.Broker`'s methods, arguments, return shapes
and exceptions; its queues, topics and subscriptions are proxies
(:mod:`millpond.native.proxies`) with the embedded objects' methods, and a receive returns
:class:`millpond.Message` objects.

One TCP connection carries every call. Any number of threads may share a Client: each call is
one request frame, and while calls are in flight the thread whose answer is still due reads
the socket for everyone (no reader thread: a lone caller reads its own answer, with no hand-off
between threads). A connection that breaks fails the calls in flight on it with
:class:`~millpond.errors.ConnectionLost` (a send among them may or may not have been
stored); the next call connects again. A process forked from one that had a Client connects
again too, at its first call: the inherited connection stays the parent's.
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import threading
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from millpond.errors import BrokerClosed, ConnectionLost, InvalidParameterValue, MillpondError
from millpond.native import errors, frames
from millpond.native.errors import ProtocolError
from millpond.native.proxies import (
    RemoteFifoQueue,
    RemoteQueue,
    RemoteSubscription,
    RemoteTopic,
    ext_hook,
)
from millpond.native.tls import TlsSocket

DEFAULT_CONNECT_TIMEOUT_S = 10.0
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)  # POSIX; elsewhere the first call finds out
_process_id = os.getpid()  # kept current across fork() without a getpid() per call


# Every Client of this process, for _after_fork_in_child.
_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _process_id
    _process_id = os.getpid()
    # A parent thread may have held a Client's lock as the process forked (reconnecting): that
    # thread is not in the child, and the child's first call, which connects anew, would wait
    # for it for ever.
    for client in list(_clients):
        client._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# The errors fail() raises in each waiting call as a fresh instance (an instance raised in
# several threads would gather all their tracebacks); the daemon's are raised as they came.
_OWN_ERRORS = (ConnectionLost, BrokerClosed)


class _Slot:
    """One call awaiting its answer. ``lock`` is held from creation and released to wake the
    caller: with its answer, or with the reader's role handed on to it."""

    __slots__ = ("rid", "long_poll", "lock", "sent", "done", "ok", "value")

    def __init__(self, rid: int, long_poll: bool = False) -> None:
        self.rid = rid
        self.long_poll = long_poll  # a queue.receive: cancelled in the daemon when abandoned
        self.lock = threading.Lock()
        self.lock.acquire()
        self.sent = False  # its request is on the wire: its thread may read for everyone
        self.done = False
        self.ok = False
        self.value: Any = None

    def result(self) -> Any:
        if self.ok:
            return self.value
        raise self.value


class _Connection:
    """One socket, its calls in flight, and the reader role among the waiting threads."""

    def __init__(self, sock: socket.socket | TlsSocket, max_frame: int, ext_hook: Any) -> None:
        self.sock = sock
        self.pid = _process_id  # a process forked after this must not use it (see let_go)
        self.max_frame = max_frame  # the largest answer taken: the client's to choose
        self.max_request = frames.MAX_FRAME  # the daemon's limit, told by its greeting
        self.ext_hook = ext_hook
        self.error: MillpondError | None = None
        self._buffer = bytearray()
        self._pending: dict[int, _Slot] = {}
        self._reader: _Slot | None = None  # the call whose thread reads the socket now
        self._state = threading.Lock()  # guards _pending, _reader, error and the slots
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- one call ---------------------------------------------------------------------------------

    def call(self, op: str, target: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        rid = next(self._ids)  # itertools.count: atomic under the GIL
        data = frames.request(rid, op, target, args, kwargs)
        if len(data) - 4 > self.max_request:
            raise frames.request_too_long(op, len(data) - 4, self.max_request)
        slot = _Slot(rid, long_poll=op == "queue.receive")
        with self._state:
            if self.error is not None:
                raise frames.not_sent(self.error)
            self._pending[rid] = slot
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:
            self.fail(ConnectionLost(f"the connection to the daemon broke: {exc}"))
        except BaseException:  # interrupted (Ctrl-C) with part of the frame perhaps sent:
            # no frame can follow it on this connection, and nobody waits for this call
            self.fail(ConnectionLost("a call was interrupted while sending its request"))
            raise
        return self._wait(slot)

    def _wait(self, slot: _Slot) -> Any:
        with self._state:
            slot.sent = True
            if slot.done:
                return slot.result()
            if self._reader is None:
                self._reader = slot
            reading = self._reader is slot
        if not reading:
            try:
                slot.lock.acquire()  # until answered, or handed the reader's role
            except BaseException:  # interrupted (Ctrl-C): stop waiting, and read for no one
                self._abandon(slot)
                raise
            with self._state:
                if slot.done:
                    return slot.result()
        try:
            while not slot.done:
                self._dispatch(self._read_frame())
        except BaseException as exc:  # a broken socket, or an interrupt mid-frame
            lost = (
                exc
                if isinstance(exc, MillpondError)
                else ConnectionLost(f"the connection to the daemon broke: {exc!r}")
            )
            self.fail(lost)
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._state:
                self._hand_on()
        return slot.result()

    def _hand_on(self) -> None:
        """The reader is done: hand the socket to a call still waiting whose request is sent
        (caller holds _state). A call still sending cannot read: handed the role, it would
        leave the others' answers unread, and the daemon, its answers not taken, stops reading
        the rest of that request. With none sent, the next call done sending reads."""
        self._reader = next((slot for slot in self._pending.values() if slot.sent), None)
        if self._reader is not None:
            self._reader.lock.release()

    def _abandon(self, slot: _Slot) -> None:
        """A caller stopped waiting: its answer goes nowhere, and if it had just been handed
        the reader's role, the role goes on to another call."""
        with self._state:
            waiting = self._pending.pop(slot.rid, None) is not None
            if self._reader is slot:
                self._hand_on()
        if waiting and slot.long_poll:
            self._cancel(slot.rid)

    def _cancel(self, rid: int) -> None:
        """Tell the daemon that nobody waits for long poll ``rid`` any more: left running, it
        would take the next message and hide it for the visibility timeout. The cancel's own
        answer is dropped, as nobody waits for its id."""
        try:
            with self._send_lock:
                self.sock.sendall(frames.cancel(next(self._ids), rid))
        except OSError:
            pass  # the connection broke: the daemon ends the polls of a connection that goes

    def broken(self) -> bool:
        """Whether this connection can carry no more calls: it failed, or the daemon closed it
        while no call was in flight (a restart; then it fails now). With calls in flight, their
        reader finds out; without, the next call would send on a closed socket and raise
        ConnectionLost for a request the daemon never got, where it can reconnect instead."""
        if self.error is not None:
            return True
        if self._pending:
            return False
        if isinstance(self.sock, TlsSocket):
            closed = self.sock.closed_while_idle()
            if closed:
                self.fail(ConnectionLost("the daemon closed the connection"))
            return closed
        if _DONTWAIT is None:
            return False
        try:
            closed = self.sock.recv(1, socket.MSG_PEEK | _DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # open, and nothing to read
        except OSError:
            closed = True  # reset by the peer
        if closed:
            self.fail(ConnectionLost("the daemon closed the connection"))
        return closed

    # -- the socket -------------------------------------------------------------------------------

    def read_frame(self, timeout: float | None = None) -> Any:
        """One frame's value, outside any call (the greeting and the hello)."""
        self.sock.settimeout(timeout)
        try:
            return frames.unpack(self._read_frame(), self.ext_hook)
        finally:
            self.sock.settimeout(None)

    def _read_frame(self) -> bytes:
        buffer = self._buffer
        while True:
            if len(buffer) >= 4:
                (length,) = frames.HEADER.unpack_from(buffer, 0)
                if length > self.max_frame:
                    raise ProtocolError(frames.too_long(length, self.max_frame))
                end = 4 + length
                if len(buffer) >= end:
                    payload = bytes(buffer[4:end])
                    del buffer[:end]
                    return payload
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionLost("the daemon closed the connection")
            buffer += chunk

    def _dispatch(self, payload: bytes) -> None:
        answer = frames.unpack(payload, self.ext_hook)
        if type(answer) is not list or len(answer) != 3:
            raise ProtocolError(f"malformed answer from the daemon: {answer!r:.200}")
        rid, status, value = answer
        if rid == frames.CONNECTION:  # about the connection: it is closed after this
            raise errors.decode(value)
        ok = status == frames.OK
        result = value if ok else errors.decode(value)
        with self._state:
            slot = self._pending.pop(rid, None)
            if slot is None:
                return  # an id this connection never sent: nobody waits for it
            slot.done, slot.ok, slot.value = True, ok, result
            if slot is not self._reader:
                slot.lock.release()

    def fail(self, exc: MillpondError) -> None:
        """Fail every call in flight (each with its own exception), and close."""
        with self._state:
            if self.error is None:
                self.error = exc
            for slot in self._pending.values():
                slot.done, slot.ok = True, False
                slot.value = type(exc)(str(exc)) if isinstance(exc, _OWN_ERRORS) else exc
                if slot is not self._reader:
                    slot.lock.release()
            self._pending.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
        except OSError:
            pass
        self.sock.close()

    def let_go(self) -> None:
        """Forget a connection inherited through fork(): close this process's descriptor only.

        The connection is the parent's: a frame sent on it would mix with the parent's, its
        answers could be read by either process, and shutdown() would cut the parent's calls.
        """
        self.sock.close()


class Client:
    """A millpond daemon over the native protocol, with the methods of :class:`millpond.Broker`.

    Args:
        host, port: the daemon's ``--native-port``.
        region: the region whose queues and topics to use (default: the daemon's region).
        access_key_id, secret_access_key: a key pair of the daemon's ``[auth]`` credentials,
            required when it has any (the secret is not sent: it signs the daemon's nonce).
        connect_timeout: seconds to connect and greet (calls themselves wait for their
            answer as long as it takes: a long poll takes up to 20 s).
        max_frame: the largest answer accepted, in bytes (requests are held to the daemon's
            limit, which its greeting tells).
        tls: True, or an ``ssl.SSLContext``, for a daemon serving TLS (``--tls-cert``): True
            checks its certificate against the system's CAs; a context of your own can trust
            a private CA (``ssl.create_default_context(cafile=...)``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_frame: int = frames.MAX_FRAME,
        tls: bool | ssl.SSLContext = False,
    ) -> None:
        self.host, self.port = host, port
        self._options = (region, access_key_id, secret_access_key, connect_timeout, max_frame)
        self._tls = tls_context(tls)
        self._lock = threading.Lock()  # for (re)connecting and closing
        self._closed = False
        self._connection: _Connection | None = None
        _clients.add(self)
        kinds = (RemoteQueue, RemoteFifoQueue, RemoteTopic, RemoteSubscription)
        self._ext_hook = ext_hook(self, kinds)
        info = self._connect()
        self.region: str = info["region"]
        # a reconnect asks for this region, not the daemon's default of then (it may differ)
        self._options = (self.region, *self._options[1:])
        self.account_id: str = info["account_id"]
        self._durability: str = info["durability"]
        self._implementation: str = info["implementation"]

    def _connect(self) -> dict[str, Any]:
        region, key, secret, timeout, max_frame = self._options
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {self._url}: {exc.strerror or exc}") from None
        frames.tune(sock)
        channel: socket.socket | TlsSocket = sock
        if self._tls is not None:
            channel = TlsSocket(sock, self._tls, self.host)
            try:
                channel.handshake()
            except OSError as exc:  # ssl.SSLError included (a certificate that does not verify)
                sock.close()
                raise ConnectionLost(f"TLS with {self._url} failed: {exc}") from None
        connection = _Connection(channel, max_frame, self._ext_hook)
        try:
            greeting = connection.read_frame(timeout)
            try:
                channel.sendall(frames.hello(greeting, region, key, secret))
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
            connection.max_request = frames.request_limit(greeting)
            info = frames.welcome(connection.read_frame(timeout))
        except OSError as exc:
            connection.fail(ConnectionLost(f"greeting failed: {exc}"))
            raise ConnectionLost(f"{self._url} did not greet: {exc}") from None
        except BaseException:
            connection.fail(ConnectionLost("greeting failed"))
            raise
        connection._ids = itertools.count(2)
        self._connection = connection
        return info

    def _call(
        self,
        op: str,
        target: Any = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        connection = self._connection
        if connection is None or connection.pid != _process_id or connection.broken():
            connection = self._reconnect(connection)
        return connection.call(op, target, list(args), dict(kwargs) if kwargs else {})

    @property
    def _url(self) -> str:
        return f"{'millponds' if self._tls else 'millpond'}://{self.host}:{self.port}"

    def _reconnect(self, broken: _Connection | None) -> _Connection:
        with self._lock:
            if self._closed:
                raise BrokerClosed("the client was closed")
            if self._connection is broken:  # not yet replaced by another thread
                self._connection = None
                if broken is not None and broken.pid != _process_id:
                    broken.let_go()  # the parent's, inherited through fork()
                self._connect()
            assert self._connection is not None
            return self._connection

    # -- what Broker has besides its methods ------------------------------------------------------

    @property
    def implementation(self) -> str:
        """The daemon's core: "c" (Cython) or "py"."""
        return self._implementation

    @property
    def durability(self) -> str:
        """The daemon's durability mode ("fsync" or "os")."""
        return self._durability

    def arn(self, service: str, name: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{name}"

    # -- queues -----------------------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RemoteQueue:
        """As :meth:`millpond.Broker.create_queue`."""
        return self._call("create_queue", None, (name, attributes, tags))  # type: ignore[no-any-return]

    def queue(self, name: str) -> RemoteQueue:
        """The existing queue ``name``; raises QueueDoesNotExist."""
        return self._call("queue", None, (name,))  # type: ignore[no-any-return]

    def delete_queue(self, name: str) -> None:
        self._call("delete_queue", None, (name,))

    def list_queues(self, prefix: str = "") -> list[str]:
        return self._call("list_queues", None, (prefix,))  # type: ignore[no-any-return]

    def list_dead_letter_source_queues(self, name: str) -> list[str]:
        return self._call("list_dead_letter_source_queues", None, (name,))  # type: ignore[no-any-return]

    def start_message_move_task(
        self,
        source_arn: str,
        destination_arn: str | None = None,
        max_messages_per_second: int | None = None,
    ) -> str:
        return self._call(  # type: ignore[no-any-return]
            "start_message_move_task", None, (source_arn, destination_arn, max_messages_per_second)
        )

    def list_message_move_tasks(
        self, source_arn: str, max_results: int = 1
    ) -> list[dict[str, Any]]:
        return self._call("list_message_move_tasks", None, (source_arn, max_results))  # type: ignore[no-any-return]

    def cancel_message_move_task(self, task_handle: str) -> int:
        return self._call("cancel_message_move_task", None, (task_handle,))  # type: ignore[no-any-return]

    # -- topics -----------------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RemoteTopic:
        return self._call("create_topic", None, (name, attributes, tags))  # type: ignore[no-any-return]

    def topic(self, name: str) -> RemoteTopic:
        return self._call("topic", None, (name,))  # type: ignore[no-any-return]

    def delete_topic(self, name: str) -> None:
        self._call("delete_topic", None, (name,))

    def list_topics(self) -> list[str]:
        return self._call("list_topics")  # type: ignore[no-any-return]

    def subscription(self, arn: str) -> RemoteSubscription:
        return self._call("subscription", None, (arn,))  # type: ignore[no-any-return]

    def list_subscriptions(self) -> list[RemoteSubscription]:
        return self._call("list_subscriptions")  # type: ignore[no-any-return]

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; calls still in flight fail with BrokerClosed, as the embedded
        broker's do (a consumer stops on it, where it would retry on ConnectionLost)."""
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None and connection.pid != _process_id:
            connection.let_go()  # the parent's, inherited through fork(): left as it is
        elif connection is not None:
            connection.fail(BrokerClosed("the client was closed"))

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client('{self._url}', region={self.region!r})"


def tls_context(tls: bool | ssl.SSLContext) -> ssl.SSLContext | None:
    """The SSL context a client's ``tls=`` argument asks for (None: plain TCP)."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return ssl.create_default_context()
    if tls is False or tls is None:
        return None
    raise InvalidParameterValue(f"tls must be True, False or an ssl.SSLContext, not {tls!r}")

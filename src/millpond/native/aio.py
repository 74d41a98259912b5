"""The native protocol's asyncio client: the methods of :class:`millpond.native.client.Client`
as coroutines.

    async with await AsyncClient.open("127.0.0.1", 9325) as broker:
        queue = await broker.create_queue("jobs")
        await queue.send(b"hello")
        for m in await queue.receive(10, wait_seconds=20):
            await queue.delete(m.receipt_handle)

One connection carries every call of every task, pipelined: each call writes its request and
awaits its answer (by request id), so a long poll holds up no other call. A broken connection
fails the calls in flight on it with ConnectionLost; the next call connects again. The
objects it returns are :mod:`millpond.native.aio_proxies`.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import msgpack

from millpond.errors import BrokerClosed, ConnectionLost, MillpondError
from millpond.native import errors, frames
from millpond.native.aio_proxies import (
    AsyncRemoteFifoQueue,
    AsyncRemoteQueue,
    AsyncRemoteSubscription,
    AsyncRemoteTopic,
)
from millpond.native.client import DEFAULT_CONNECT_TIMEOUT_S, tls_context
from millpond.native.errors import ProtocolError
from millpond.native.proxies import ext_hook


class _Connection(asyncio.Protocol):
    """One connection: frames in, answers to the futures of their request ids."""

    def __init__(self, max_frame: int, decode: Any) -> None:
        self.max_frame = max_frame  # the largest answer taken: the client's to choose
        self.max_request = frames.MAX_FRAME  # the daemon's limit, told by its greeting
        self.decode = decode
        self.transport: asyncio.Transport | None = None
        self.error: MillpondError | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(2)  # 1 is the hello's
        self._buffer = bytearray()
        self._polls: dict[int, Any] = {}  # long polls not answered: request id -> queue
        self._cancels: dict[int, int] = {}  # a cancel's request id -> the long poll's
        # the greeting and the hello's answer, before any call (or the error that ended it)
        self._handshake: asyncio.Queue[Any] = asyncio.Queue()
        self.handshaking = True
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            frames.tune(sock)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = 0
        while len(buffer) - at >= 4:
            (length,) = frames.HEADER.unpack_from(buffer, at)
            if length > self.max_frame:
                self.fail(ProtocolError(frames.too_long(length, self.max_frame)))
                return
            end = at + 4 + length
            if end > len(buffer):
                break
            payload = bytes(buffer[at + 4 : end])
            at = end
            try:
                self._frame(frames.unpack(payload, self.decode))
            except MillpondError as exc:
                self.fail(exc)
                return
            except Exception as exc:
                self.fail(ProtocolError(f"malformed answer from the daemon: {exc}"))
                return
        del buffer[:at]

    def _frame(self, value: Any) -> None:
        if self.handshaking:
            self._handshake.put_nowait(value)
            return
        if type(value) is not list or len(value) != 3:
            raise ProtocolError(f"malformed answer from the daemon: {value!r:.200}")
        rid, status, result = value
        if rid == frames.CONNECTION:
            raise errors.decode(result)
        queue = self._polls.pop(rid, None) if self._polls else None
        future = self.pending.pop(rid, None)
        if future is None or future.done():  # its caller was cancelled
            if rid in self._cancels:  # a cancel's answer: the poll's came before, if any
                self._polls.pop(self._cancels.pop(rid), None)
            elif queue is not None and status == frames.OK:
                self._give_back(queue, result)
            return
        if status == frames.OK:
            future.set_result(result)
        else:
            future.set_exception(errors.decode(result))

    async def next_frame(self, timeout: float) -> Any:
        """The greeting, then the hello's answer (one at a time, before any call)."""
        value = await asyncio.wait_for(self._handshake.get(), timeout)
        if isinstance(value, MillpondError):
            raise value
        return value

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionLost(f"the daemon closed the connection{f': {exc}' if exc else ''}"))

    def fail(self, exc: MillpondError) -> None:
        if self.error is None:
            self.error = exc
        for future in self.pending.values():
            if not future.done():
                future.set_exception(type(exc)(str(exc)))
        self.pending.clear()
        if self.handshaking:
            self._handshake.put_nowait(exc)
        self._writable.set()  # writers blocked on a full buffer see the error
        if self.transport is not None:
            self.transport.close()

    async def call(self, op: str, target: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.error is not None:
            raise frames.not_sent(self.error)
        rid = next(self.ids)
        data = frames.request(rid, op, target, args, kwargs)
        if len(data) - 4 > self.max_request:
            raise frames.request_too_long(op, len(data) - 4, self.max_request)
        if not self._writable.is_set():  # the daemon reads slower than we write: wait
            await self._writable.wait()
            if self.error is not None:
                raise frames.not_sent(self.error)
        future = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        if op == "queue.receive":
            self._polls[rid] = target
        assert self.transport is not None
        self.transport.write(data)
        try:
            return await future
        except asyncio.CancelledError:
            if op == "queue.receive":
                self._abandon_poll(rid, target, future)
            raise
        finally:
            self.pending.pop(rid, None)  # cancelled: its answer will be dropped

    def _abandon_poll(self, rid: int, queue: Any, future: asyncio.Future[Any]) -> None:
        """The caller of long poll ``rid`` was cancelled. Its messages, if they came, are
        given back; a poll still waiting in the daemon is cancelled there: left running, it
        would take the next message and hide it for the visibility timeout, for nobody. (An
        answer that comes before the daemon reads the cancel is given back by _frame.)"""
        if future.done() and not future.cancelled():  # answered as the caller was cancelled
            if future.exception() is None:  # (an error is dropped: the caller is cancelled)
                self._give_back(queue, future.result())
        elif rid in self._polls:
            cancel = next(self.ids)
            self._cancels[cancel] = rid
            self._write(frames.cancel(cancel, rid))

    def _give_back(self, queue: Any, messages: Any) -> None:
        """Make the messages of a poll nobody takes visible again at once, as the daemon does
        with those of a poll it cancels, rather than hidden for a visibility timeout."""
        if messages:
            handles = [[message.receipt_handle, 0] for message in messages]
            request = [next(self.ids), "queue.change_visibility_entries", queue, [handles], {}]
            self._write(frames.frame(msgpack.packb(request, use_bin_type=True)))  # answer unread

    def _write(self, data: bytes) -> None:
        """A request whose answer nobody awaits (dropped by _frame)."""
        if self.error is None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class AsyncClient:
    """A millpond daemon over the native protocol, for asyncio: open it with :meth:`open`.

    Arguments as :class:`millpond.native.client.Client`; every method is a coroutine.
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
        kinds = (AsyncRemoteQueue, AsyncRemoteFifoQueue, AsyncRemoteTopic, AsyncRemoteSubscription)
        self._decode = ext_hook(self, kinds)
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        self.region = self.account_id = self._durability = self._implementation = ""

    @classmethod
    async def open(cls, host: str, port: int, **options: Any) -> AsyncClient:
        """Connect (and greet) now: a daemon that is not there fails here, not at first use."""
        client = cls(host, port, **options)
        await client._connect()
        return client

    async def _connect(self) -> _Connection:
        region, key, secret, timeout, max_frame = self._options
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(max_frame, self._decode),
                    self.host,
                    self.port,
                    ssl=self._tls,
                    server_hostname=self.host if self._tls else None,
                ),
                timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {self._url}: {exc!r}") from None
        try:
            greeting = await connection.next_frame(timeout)
            try:
                hello = frames.hello(greeting, region, key, secret)
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
            connection.max_request = frames.request_limit(greeting)
            assert connection.transport is not None
            connection.transport.write(hello)
            info = frames.welcome(await connection.next_frame(timeout))
            connection.handshaking = False
        except BaseException as exc:
            connection.fail(ConnectionLost("greeting failed"))
            if isinstance(exc, asyncio.TimeoutError):
                raise ConnectionLost(f"{self._url} did not greet") from None
            raise
        if self._closed:  # closed while this connected: the connection is not kept
            connection.fail(ConnectionLost("the client was closed"))
            raise BrokerClosed("the client was closed")
        self.region, self.account_id = info["region"], info["account_id"]
        # a reconnect asks for this region, not the daemon's default of then (it may differ)
        self._options = (self.region, *self._options[1:])
        self._durability, self._implementation = info["durability"], info["implementation"]
        self._connection = connection
        return connection

    @property
    def _url(self) -> str:
        return f"{'millponds' if self._tls else 'millpond'}://{self.host}:{self.port}"

    async def _call(
        self,
        op: str,
        target: Any = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        connection = self._connection
        if connection is None or connection.error is not None:
            if self._closed:
                raise BrokerClosed("the client was closed")
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:  # one reconnect for all the callers that need it
                if self._closed:
                    raise BrokerClosed("the client was closed")
                connection = self._connection
                if connection is None or connection.error is not None:
                    connection = await self._connect()
        return await connection.call(op, target, list(args), dict(kwargs) if kwargs else {})

    # -- what Broker has besides its methods -------------------------------------------------

    @property
    def implementation(self) -> str:
        return self._implementation

    @property
    def durability(self) -> str:
        return self._durability

    def arn(self, service: str, name: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{name}"

    # -- queues -------------------------------------------------------------------------------

    async def create_queue(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> AsyncRemoteQueue:
        return await self._call("create_queue", None, (name, attributes, tags))  # type: ignore[no-any-return]

    async def queue(self, name: str) -> AsyncRemoteQueue:
        return await self._call("queue", None, (name,))  # type: ignore[no-any-return]

    async def delete_queue(self, name: str) -> None:
        await self._call("delete_queue", None, (name,))

    async def list_queues(self, prefix: str = "") -> list[str]:
        return await self._call("list_queues", None, (prefix,))  # type: ignore[no-any-return]

    async def list_dead_letter_source_queues(self, name: str) -> list[str]:
        return await self._call("list_dead_letter_source_queues", None, (name,))  # type: ignore[no-any-return]

    async def start_message_move_task(
        self,
        source_arn: str,
        destination_arn: str | None = None,
        max_messages_per_second: int | None = None,
    ) -> str:
        return await self._call(  # type: ignore[no-any-return]
            "start_message_move_task", None, (source_arn, destination_arn, max_messages_per_second)
        )

    async def list_message_move_tasks(
        self, source_arn: str, max_results: int = 1
    ) -> list[dict[str, Any]]:
        return await self._call("list_message_move_tasks", None, (source_arn, max_results))  # type: ignore[no-any-return]

    async def cancel_message_move_task(self, task_handle: str) -> int:
        return await self._call("cancel_message_move_task", None, (task_handle,))  # type: ignore[no-any-return]

    # -- topics -------------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> AsyncRemoteTopic:
        return await self._call("create_topic", None, (name, attributes, tags))  # type: ignore[no-any-return]

    async def topic(self, name: str) -> AsyncRemoteTopic:
        return await self._call("topic", None, (name,))  # type: ignore[no-any-return]

    async def delete_topic(self, name: str) -> None:
        await self._call("delete_topic", None, (name,))

    async def list_topics(self) -> list[str]:
        return await self._call("list_topics")  # type: ignore[no-any-return]

    async def subscription(self, arn: str) -> AsyncRemoteSubscription:
        return await self._call("subscription", None, (arn,))  # type: ignore[no-any-return]

    async def list_subscriptions(self) -> list[AsyncRemoteSubscription]:
        return await self._call("list_subscriptions")  # type: ignore[no-any-return]

    # -- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection; calls still in flight fail with BrokerClosed, as the embedded
        broker's do (a consumer stops on it, where it would retry on ConnectionLost)."""
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.fail(BrokerClosed("the client was closed"))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient('millpond://{self.host}:{self.port}', region={self.region!r})"

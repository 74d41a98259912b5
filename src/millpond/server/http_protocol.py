"""uvicorn's HTTP protocol with a deadline on each request's head, and a connection limit.

uvicorn times out a keep-alive connection only once it has answered a request; a connection
that never sends a complete request head (nothing at all, or headers trickled in one byte at
a time) would stay open for good and count toward the connection limit. Here every request
head, the first on a connection included, must arrive within HEAD_TIMEOUT_S of the connection
opening or of the previous response; request bodies have their own watchdog (server/app.py).

The connection limit (uvicorn's ``limit_concurrency`` setting) is applied here, not by uvicorn:
uvicorn answered every request with a plain-text 503 once the open connections (idle keep-alive
ones included) or running requests reached it, those of the connections already open too, which
no SDK reads as an AWS error. Here only a connection opened past the limit is refused: its
request is marked (scope[OVER_LIMIT]) for the application to answer with an AWS error in the
request's own protocol, and the connection closes after that answer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The most a client may take to send a request's method, path and headers (env: tests shorten
# it).
HEAD_TIMEOUT_S = float(os.environ.get("MILLPOND_HEAD_TIMEOUT_S", "30"))
# On shutdown, how long a TLS connection being closed may wait for the client's close_notify.
TLS_CLOSE_GRACE_S = 1.0
# The scope key of a request whose connection was opened past the connection limit.
OVER_LIMIT = "millpond.over_limit"


class DeadlineHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request head is late."""

    # The open connections of the server in this process (uvicorn's set, which all its
    # protocols share; None before the first): a commit waits for no more writes than there
    # are connections to send them (server/context.py, LoopCommitter).
    server_connections: ClassVar[Collection[Any] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._lost = False
        # the limit is checked here (see the module's doc), not by uvicorn
        self.max_connections, self.limit_concurrency = self.limit_concurrency, None
        self._over_limit = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # counted in self.connections from here
        DeadlineHttpProtocol.server_connections = self.connections
        limit = self.max_connections
        self._over_limit = limit is not None and len(self.connections) > limit
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # a request after a response: the clock starts now
            self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        if self._over_limit:
            self.scope[OVER_LIMIT] = True  # type: ignore[literal-required]
        super().on_headers_complete()
        if self._over_limit and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed: its descriptor comes back

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        super().shutdown()
        if self.transport.get_extra_info("sslcontext") is not None:
            self._abort_once_closing()

    def _abort_once_closing(self) -> None:
        # asyncio waits up to 30 s for the client's TLS close_notify, which a client keeping a
        # pooled connection idle (every SDK does) never sends, and the exit waits for it: once
        # the connection is closing (its last response sent), drop it after a short grace.
        if self.transport.is_closing():
            self.loop.call_later(TLS_CLOSE_GRACE_S, self._abort_once_sent)
        else:  # a request still being answered: its connection closes after the response
            self.loop.call_later(0.1, self._abort_once_closing)

    def _abort_once_sent(self) -> None:
        if self._lost:
            return
        if self.transport.get_write_buffer_size():  # a slow reader still getting its response
            self.loop.call_later(TLS_CLOSE_GRACE_S, self._abort_once_sent)
        else:
            self.transport.abort()

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_late)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

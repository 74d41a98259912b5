"""uvicorn's HTTP protocol with a deadline on each request's head.

uvicorn times out a keep-alive connection only once it has answered a request; a connection
that never sends a complete request head (nothing at all, or headers trickled in one byte at
a time) would stay open for good and count toward the connection limit. Here every request
head, the first on a connection included, must arrive within HEAD_TIMEOUT_S of the connection
opening or of the previous response; request bodies have their own watchdog (server/app.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The most a client may take to send a request's method, path and headers (env: tests shorten
# it).
HEAD_TIMEOUT_S = float(os.environ.get("MILLPOND_HEAD_TIMEOUT_S", "30"))


class DeadlineHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """HttpToolsProtocol that closes a connection whose request head is late."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # a request after a response: the clock starts now
            self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

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

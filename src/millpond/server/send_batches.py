"""SendMessage requests to one standard queue, stored together: one core call per commit.

Concurrent requests share a commit anyway (group commit); without this each of them is also
an operation of its own in that commit, and each pays for it: the queue's counters row and the
search for its last log key, the operation and its settling. Here the first request for a
queue in a commit submits one operation for the queue; the requests that follow before that
operation runs join it; it stores them all with one ``core.send`` (as a SendMessageBatch does)
and each request gets its own seq back. All of them are standard-queue sends to the same
queue, checked before they join, so what fails them (the queue deleted, a full store) fails
each of them alike, as it would have one by one.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from millpond.errors import QueueDoesNotExist


class SendBatch:
    """The sends that join one queue's next commit; ``store`` is their Storage operation."""

    __slots__ = ("queue", "bodies", "blobs", "delays", "futures", "closed", "_lock", "_open")

    def __init__(self, queue: Any, open_batches: dict[Any, SendBatch]) -> None:
        self.queue = queue
        self._open = open_batches  # queue -> the batch sends to it join (this one, for now)
        self.bodies: list[bytes] = []
        self.blobs: list[bytes] = []
        self.delays: list[int] = []
        self.futures: list[asyncio.Future[int]] = []
        self.closed = False  # its operation ran: later sends go into a new batch
        # The operation runs on the committing thread, which is the writer thread while
        # commits are slow: joining and closing must not interleave.
        self._lock = threading.Lock()

    def join(self, data: bytes, blob: bytes, delay_ms: int, future: asyncio.Future[int]) -> bool:
        """Add one prepared send; False if the batch is already being stored."""
        with self._lock:
            if self.closed:
                return False
            self.bodies.append(data)
            self.blobs.append(blob)
            self.delays.append(delay_ms)
            self.futures.append(future)
            return True

    def store(self, txn: Any, tables: Any, queue_id: int, now_ms: int) -> int:
        """The operation (the queue's op wrapper runs it): every send joined so far, stored
        with one core call; the first seq. It may run again (a rerun of its commit): with the
        same sends."""
        with self._lock:
            self.closed = True
        queue = self.queue
        return queue._core.send(  # type: ignore[no-any-return]
            txn,
            tables,
            queue_id,
            now_ms,
            self.bodies,
            self.blobs,
            self.delays,
            queue._broker._env_id,
        )

    def settle(self, op: Any) -> None:
        """On the loop, once committed: each send's seq (the first + its place), or the error."""
        if self._open.get(self.queue) is self:
            del self._open[self.queue]
        error = op.error
        if error is None:
            self.queue._sent_counted(len(self.futures))
        elif isinstance(error, QueueDoesNotExist):
            self.queue._broker._forget(self.queue)
        for place, future in enumerate(self.futures):
            if future.cancelled():
                continue  # its request went away; the send itself stands
            if error is None:
                future.set_result(op.result + place)
            else:
                future.set_exception(error)

"""The embedded broker under threads: races a user of a thread pool would hit.

Real threads for the races, bounded joins (no test may hang), a ManualClock where time matters.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from millpond import errors

FIFO = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}


class Call(threading.Thread):
    """Runs ``fn`` in its own thread; keeps its result or exception and how long it took."""

    def __init__(self, fn: Any) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def outcome(self, timeout: float = 10) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.result


# -- delete_queue while other threads use the queue ---------------------------------------------


@pytest.mark.parametrize("attributes", [{}, FIFO], ids=["standard", "fifo"])
def test_delete_queue_ends_long_polls_with_queue_does_not_exist(broker, attributes):
    # broker.delete_queue promises that long polls on the queue end with QueueDoesNotExist;
    # a FIFO receive found no messages in a deleted queue instead, so its long poll slept its
    # whole wait and then answered an empty list, as if the queue were still there.
    name = "jobs.fifo" if attributes else "jobs"
    queue = broker.create_queue(name, attributes)
    polls = [Call(lambda: queue.receive(10, wait_seconds=20)) for _ in range(3)]
    for poll in polls:
        poll.start()
    time.sleep(0.2)  # let them block first
    broker.delete_queue(name)
    for poll in polls:
        with pytest.raises(errors.QueueDoesNotExist):
            poll.outcome()
        assert poll.seconds < 5
    with pytest.raises(errors.QueueDoesNotExist):
        queue.receive(10)  # a short poll too

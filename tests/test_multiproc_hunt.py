"""Several processes on one data directory: what one process changes, another sees as SQS/SNS
would show it to a single process."""

from __future__ import annotations

import os
import threading
import time

import millpond
from tests.daemon import Daemon

# -- long polls woken across processes ------------------------------------------------------------


def test_a_send_from_another_process_wakes_a_daemon_long_poll(tmp_path):
    # The daemon waited for long polls on its event loop, woken only by the commits of its
    # own process: a message sent by another process on the same data directory (README:
    # "Long polls are woken across processes by a futex doorbell file") lay unseen until the
    # poll's wait ended, 10 s here.
    data = str(tmp_path / "data")
    daemon = Daemon(data, native=True)
    try:
        with millpond.connect(daemon.native_url) as client:
            q = client.create_queue("q")
            outcome: list[object] = []

            def poll() -> None:
                started = time.monotonic()
                outcome.append([m.body for m in q.receive(1, wait_seconds=10)])
                outcome.append(time.monotonic() - started)

            poller = threading.Thread(target=poll)
            poller.start()
            time.sleep(0.3)  # let the daemon park the poll
            with millpond.open(os.path.join(data, "us-east-1"), durability="os") as other:
                other.queue("q").send("hello")
            poller.join(15)
    finally:
        daemon.stop()
    assert outcome[0] == [b"hello"]
    assert isinstance(outcome[1], float) and outcome[1] < 3, outcome  # not the 10 s wait

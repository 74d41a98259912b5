"""Stopping the daemon: a second Ctrl-C, and what is in flight when it stops. Each test starts
its own `millpond serve` process."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

from millpond.server import FORCED_EXIT_STATUS

from .daemon import Daemon

BIG = "x" * 1_000_000  # ten of them make a ReceiveMessage reply of ~10 MB


def _stuck_receive(daemon: Daemon, url: str) -> socket.socket:
    """A connection whose ReceiveMessage reply is never read: its request cannot finish (its
    reply waits for the client), which holds a graceful stop for the full grace period."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", daemon.port))
    body = json.dumps({"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 0})
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: AmazonSQS.ReceiveMessage\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    return sock


def _read_all(daemon: Daemon, url: str) -> list[str]:
    sqs = daemon.client()
    bodies = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
        ).get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]


def test_a_second_ctrl_c_stops_at_once_and_still_closes_the_data(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    daemon = Daemon(data, durability="fsync")
    sqs = daemon.client()
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sent = [f"{i}{BIG}" for i in range(10)] + [f"small {i}" for i in range(20)]
    for body in sent:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    with _stuck_receive(daemon, url):
        time.sleep(1)  # the reply is being written, and stalls
        daemon.process.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert daemon.process.poll() is None  # a graceful stop waits for that request
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGINT)
        code = daemon.stop(timeout=20)
        seconds = time.monotonic() - started
    log = daemon.log()
    assert code == FORCED_EXIT_STATUS, log
    assert seconds < 5, f"the second Ctrl-C took {seconds:.1f} s\n{log}"
    assert "Traceback" not in log and "ERROR" not in log, log
    assert "second interrupt: stopping now" in log, log
    # the brokers were closed (a later open of the data would say otherwise) and every
    # acknowledged send is there
    again = Daemon(data)
    try:
        assert sorted(_read_all(again, url)) == sorted(sent)
    finally:
        assert again.stop() == 0
    assert "Traceback" not in again.log(), again.log()

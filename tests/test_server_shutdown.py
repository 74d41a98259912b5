"""Stopping the daemon: a second Ctrl-C, and what is in flight when it stops. Each test starts
its own `millpond serve` process."""

from __future__ import annotations

import http.server
import json
import queue
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
    assert seconds < 10, f"the second Ctrl-C took {seconds:.1f} s\n{log}"
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


# -- HTTP/S deliveries in flight at the stop ---------------------------------------------------


class SlowEndpoint:
    """An HTTP endpoint recording the POSTs it gets (the message type and body); those whose
    body is in ``hold`` get no answer until ``release`` is set."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.hold: set[bytes] = set()
        self.release = threading.Event()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                endpoint.posts.put((self.headers["x-amz-sns-message-type"], body))
                if any(held in body for held in endpoint.hold):
                    endpoint.release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float) -> tuple[str, bytes]:
        return self.posts.get(timeout=timeout)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_endpoint() -> Iterator[SlowEndpoint]:
    endpoint = SlowEndpoint()
    yield endpoint
    endpoint.close()


def test_a_post_in_flight_at_a_stop_is_made_at_once_by_the_next_start(
    tmp_path: Path, slow_endpoint: SlowEndpoint
) -> None:
    data = str(tmp_path / "data")
    daemon = Daemon(data)
    try:
        sns = daemon.client("sns")
        topic = sns.create_topic(Name="events")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=slow_endpoint.url)
        kind, body = slow_endpoint.next(10)
        assert kind == "SubscriptionConfirmation"
        with urllib.request.urlopen(json.loads(body)["SubscribeURL"], timeout=10) as reply:
            assert reply.status == 200
        sns.publish(TopicArn=topic, Message="answered")
        kind, body = slow_endpoint.next(10)
        assert kind == "Notification" and json.loads(body)["Message"] == "answered"
        slow_endpoint.hold.add(b"unanswered")
        sns.publish(TopicArn=topic, Message="unanswered")
        assert b"unanswered" in slow_endpoint.next(10)[1]  # and its POST waits for an answer
    finally:
        assert daemon.stop() == 0, daemon.log()
    slow_endpoint.hold.clear()
    started = time.monotonic()
    again = Daemon(data)
    try:
        kind, body = slow_endpoint.next(20)
        # made again at once (not after the 60 s lease), and only the one never answered
        assert time.monotonic() - started < 15
        assert kind == "Notification" and json.loads(body)["Message"] == "unanswered"
        time.sleep(1.5)
        assert slow_endpoint.posts.empty()  # answered now: settled once, not made again
    finally:
        assert again.stop() == 0, again.log()
    for log in (daemon.log(), again.log()):
        assert "Traceback" not in log, log

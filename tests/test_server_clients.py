"""Real clients other than boto3 against `millpond serve` (issue 5, section 4).

* aws-cli (v1, from PyPI): create-queue, send-message, receive-message, delete-message.
* kombu's SQS transport, both paths Celery uses: the blocking boto3 path (SimpleQueue) and the
  asynchronous path (kombu's Hub + pycurl, as a Celery worker consumes); and a real Celery worker
  process consuming a task.
* The AWS SDK for JavaScript v3 (tests/js/sqs_md5_check.mjs): the SDK checks every body MD5
  itself; the script checks MD5OfMessageAttributes / MD5OfMessageSystemAttributes with its own
  implementation of the AWS algorithm (the JS SDK does not verify those). A corrupting proxy
  shows that a wrong MD5 of either kind makes the script, and so the test, fail.

Each client is skipped, with the reason, when it is not installed. In CI (.ci/run):
    pip install "awscli>=1.34,<2" "celery[sqs]>=5.5,<6"
    (cd tests/js && npm ci)      # or let the test run it (it does when node_modules is missing)
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# kombu's curl client uses pycurl calls that pycurl >= 7.45 deprecates (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:kombu.asynchronous.http.curl")

JS_DIR = Path(__file__).parent / "js"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def _host(daemon: Any) -> str:
    return str(daemon.url).split("//", 1)[1]


# -- aws-cli ------------------------------------------------------------------------------------


def _aws(daemon: Any, tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # No user configuration or credentials may leak in.
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_PAGER": "",
    }
    done = subprocess.run(
        ["aws", "--endpoint-url", daemon.url, "--output", "json", "sqs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"aws sqs {args[0]} failed:\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.mark.skipif(
    shutil.which("aws") is None, reason="aws-cli is not installed (pip install 'awscli>=1.34,<2')"
)
def test_aws_cli_round_trip(daemon: Any, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    url = _aws(daemon, tmp_path, "create-queue", "--queue-name", name)["QueueUrl"]
    assert url.endswith(f"/{name}")
    body = "hello from aws-cli \u2713"
    attributes = json.dumps({"kind": {"DataType": "String", "StringValue": "cli"}})
    sent = _aws(
        daemon,
        tmp_path,
        "send-message",
        "--queue-url",
        url,
        "--message-body",
        body,
        "--message-attributes",
        attributes,
    )
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"]
    received = _aws(
        daemon,
        tmp_path,
        "receive-message",
        "--queue-url",
        url,
        "--message-attribute-names",
        "All",
        "--attribute-names",
        "All",
        "--wait-time-seconds",
        "2",
    )
    (message,) = received["Messages"]
    assert message["Body"] == body
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["MessageAttributes"] == {"kind": {"DataType": "String", "StringValue": "cli"}}
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    _aws(
        daemon,
        tmp_path,
        "delete-message",
        "--queue-url",
        url,
        "--receipt-handle",
        message["ReceiptHandle"],
    )
    left = _aws(
        daemon,
        tmp_path,
        "get-queue-attributes",
        "--queue-url",
        url,
        "--attribute-names",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    )["Attributes"]
    assert left == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


# -- kombu / Celery -----------------------------------------------------------------------------


def _kombu_options(prefix: str) -> dict[str, Any]:
    return {
        "region": "us-east-1",
        "is_secure": False,  # the endpoint is http://host:port from the connection URL
        "wait_time_seconds": 1,
        "polling_interval": 0.1,
        "queue_name_prefix": prefix,
    }


def _queue_counts(daemon: Any, name: str) -> dict[str, str]:
    sqs = daemon.client()
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attributes  # type: ignore[no-any-return]


def test_kombu_simple_queue_round_trip(daemon: Any) -> None:
    """The blocking path: boto3 sends and receives inside kombu's SQS channel."""
    kombu = pytest.importorskip(
        "kombu",
        reason="kombu is not installed (pip install 'celery[sqs]>=5.5,<6' or 'kombu[sqs]>=5.5,<6')",
    )
    pytest.importorskip("boto3")
    prefix = f"ks-{uuid.uuid4().hex[:8]}-"
    with kombu.Connection(
        f"sqs://AKIDEXAMPLE:secret@{_host(daemon)}", transport_options=_kombu_options(prefix)
    ) as conn:
        queue = conn.SimpleQueue("simple")
        payloads = [{"n": i, "text": "caf\u00e9"} for i in range(3)]
        for payload in payloads:
            queue.put(payload)
        got = []
        for _ in payloads:
            message = queue.get(timeout=10)
            got.append(message.payload)
            message.ack()
        queue.close()
    assert sorted(got, key=lambda p: p["n"]) == payloads
    deadline = time.monotonic() + 10  # ack deletes through kombu's async client
    while time.monotonic() < deadline:
        counts = _queue_counts(daemon, f"{prefix}simple")
        if counts == {
            "ApproximateNumberOfMessages": "0",
            "ApproximateNumberOfMessagesNotVisible": "0",
        }:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"acked messages were not deleted: {counts}")


def test_kombu_async_consumer_round_trip(daemon: Any) -> None:
    """The path a Celery worker takes: kombu's Hub, ReceiveMessage and DeleteMessage over
    pycurl (kombu's own AWS JSON 1.0 requests, not boto3)."""
    kombu = pytest.importorskip(
        "kombu",
        reason="kombu is not installed (pip install 'celery[sqs]>=5.5,<6' or 'kombu[sqs]>=5.5,<6')",
    )
    pytest.importorskip(
        "pycurl",
        reason="pycurl is not installed: kombu's asynchronous SQS "
        "client needs it (pip install 'kombu[sqs]')",
    )
    from kombu.asynchronous import Hub, set_event_loop

    prefix = f"ka-{uuid.uuid4().hex[:8]}-"
    hub = Hub()
    set_event_loop(hub)
    received: list[tuple[Any, dict[str, Any]]] = []
    try:
        with kombu.Connection(
            f"sqs://AKIDEXAMPLE:secret@{_host(daemon)}", transport_options=_kombu_options(prefix)
        ) as conn:
            conn.transport.register_with_event_loop(conn.connection, hub)
            channel = conn.channel()
            assert channel.hub is hub
            queue = kombu.Queue(
                "tasks", kombu.Exchange("tasks", type="direct"), routing_key="tasks"
            )

            def on_message(body: Any, message: Any) -> None:
                received.append((body, dict(message.delivery_info)))
                message.ack()

            with kombu.Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
                producer = kombu.Producer(channel)
                for i in range(5):
                    producer.publish(
                        {"task": "add", "args": [i, i]},
                        exchange=queue.exchange,
                        routing_key="tasks",
                        declare=[queue],
                        serializer="json",
                    )
                loop = hub.create_loop()
                deadline = time.monotonic() + 30
                while len(received) < 5 and time.monotonic() < deadline:
                    next(loop)
                # The acks (async DeleteMessage) finish on the hub too.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    next(loop)
                    counts = _queue_counts(daemon, f"{prefix}tasks")
                    if counts == {
                        "ApproximateNumberOfMessages": "0",
                        "ApproximateNumberOfMessagesNotVisible": "0",
                    }:
                        break
                    time.sleep(0.02)
                else:
                    pytest.fail(f"acked messages were not deleted: {counts}")
            assert type(channel.asynsqs()).__name__ == "AsyncSQSConnection"
    finally:
        set_event_loop(None)
        hub.close()
    assert sorted(body["args"][0] for body, _ in received) == list(range(5))


CELERY_APP = """
import os
from pathlib import Path
from celery import Celery

app = Celery("mp_celery_app", broker=os.environ["MP_BROKER_URL"])
app.conf.update(
    broker_transport_options={
        "region": "us-east-1", "is_secure": False, "wait_time_seconds": 1,
        "polling_interval": 0.1, "queue_name_prefix": os.environ["MP_QUEUE_PREFIX"],
    },
    broker_connection_retry_on_startup=True,
    worker_enable_remote_control=False,
    task_default_queue="work",
)


@app.task(name="mp_celery_app.add")
def add(x, y, out):
    Path(out).write_text(str(x + y))
    return x + y
"""


def test_celery_worker_consumes_a_task(daemon: Any, tmp_path: Path) -> None:
    """A real `celery worker` process consumes a task sent with send_task."""
    pytest.importorskip(
        "celery", reason="celery is not installed (pip install 'celery[sqs]>=5.5,<6')"
    )
    pytest.importorskip("pycurl", reason="pycurl is not installed (pip install 'celery[sqs]')")
    (tmp_path / "mp_celery_app.py").write_text(textwrap.dedent(CELERY_APP))
    env = {
        **os.environ,
        **CREDENTIALS,
        "MP_BROKER_URL": f"sqs://AKIDEXAMPLE:secret@{_host(daemon)}",
        "MP_QUEUE_PREFIX": f"cel-{uuid.uuid4().hex[:8]}-",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "mp_celery_app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
            "-Q",
            "work",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        sys.path.insert(0, str(tmp_path))
        os.environ.update({k: env[k] for k in ("MP_BROKER_URL", "MP_QUEUE_PREFIX")})
        import mp_celery_app  # type: ignore[import-not-found]

        outs = [tmp_path / f"out-{i}" for i in range(3)]
        for i, out in enumerate(outs):
            mp_celery_app.app.send_task("mp_celery_app.add", args=[i, 40, str(out)])
        deadline = time.monotonic() + 60
        while not all(out.exists() for out in outs) and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.1)
        log_text = (tmp_path / "worker.log").read_text(errors="replace")
        assert [out.read_text() if out.exists() else None for out in outs] == ["40", "41", "42"], (
            log_text
        )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mp_celery_app", None)
        for key in ("MP_BROKER_URL", "MP_QUEUE_PREFIX"):
            os.environ.pop(key, None)
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        log.close()


# -- long polls that a delete or a visibility change must wake -----------------------------------
# SQS answers a long poll as soon as a message is available. A message can become available
# without a send: a DeleteMessage unblocks the rest of a FIFO message group, and a
# ChangeMessageVisibility can bring a message's visibility forward (kombu requeues a message
# that way, and applies its backoff policies so). A poll already waiting must see it then, not
# at the end of its WaitTimeSeconds: a Celery worker on a FIFO queue otherwise waits out a whole
# wait_time_seconds after every batch (200 tasks took 34 s instead of 2 s).


@pytest.mark.parametrize(
    ("fifo", "change", "expected_s"),
    [(True, "delete", 1.0), (True, "visibility", 3.0), (False, "visibility", 3.0)],
)
def test_long_poll_woken_by_delete_or_visibility_change(
    daemon: Any, fifo: bool, change: str, expected_s: float
) -> None:
    sqs = daemon.client()
    name = f"lp-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    group = {"MessageGroupId": "g"} if fifo else {}
    for body in ("first", "second"):
        sqs.send_message(QueueUrl=url, MessageBody=body, **group)
    held = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"][0]
    if not fifo:  # only the held message may be left to receive
        other = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"][0]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=other["ReceiptHandle"])
    polled: dict[str, Any] = {}

    def poll() -> None:
        start = time.monotonic()
        polled["messages"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get(
            "Messages", []
        )
        polled["elapsed"] = time.monotonic() - start

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1)  # the poll is waiting: the group is blocked, or the message hidden for 30 s
    if change == "delete":
        sqs.delete_message(QueueUrl=url, ReceiptHandle=held["ReceiptHandle"])
    else:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=held["ReceiptHandle"], VisibilityTimeout=2
        )
    poller.join(15)
    assert len(polled["messages"]) == 1
    # the message is available about expected_s after the poll began, not after its 10 s
    assert polled["elapsed"] < expected_s + 2, polled["elapsed"]


def test_kombu_fifo_consumer_does_not_wait_out_long_polls(daemon: Any) -> None:
    """kombu's asynchronous consumer on a FIFO queue: each ack (DeleteMessage) unblocks the
    message group, and the poll already waiting must return the next message at once."""
    kombu = pytest.importorskip(
        "kombu",
        reason="kombu is not installed (pip install 'celery[sqs]>=5.5,<6' or 'kombu[sqs]>=5.5,<6')",
    )
    pytest.importorskip("pycurl", reason="pycurl is not installed (pip install 'kombu[sqs]')")
    from kombu.asynchronous import Hub, set_event_loop

    prefix = f"kf-{uuid.uuid4().hex[:8]}-"
    options = {**_kombu_options(prefix), "wait_time_seconds": 8}
    hub = Hub()
    set_event_loop(hub)
    received: list[int] = []
    try:
        with kombu.Connection(
            f"sqs://AKIDEXAMPLE:secret@{_host(daemon)}", transport_options=options
        ) as conn:
            conn.transport.register_with_event_loop(conn.connection, hub)
            channel = conn.channel()
            channel.basic_qos(prefetch_count=2)  # a worker with a second task prefetched
            queue = kombu.Queue(
                "jobs.fifo", kombu.Exchange("jobs", type="direct"), routing_key="jobs.fifo"
            )
            working: list[Any] = []

            def on_message(body: Any, message: Any) -> None:
                received.append(body["n"])
                working.append(message)  # acked once "done", as a worker acks

            with kombu.Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
                producer = kombu.Producer(channel)
                for i in range(6):
                    producer.publish(
                        {"n": i},
                        exchange=queue.exchange,
                        routing_key="jobs.fifo",
                        declare=[queue],
                        serializer="json",
                    )
                loop = hub.create_loop()
                start = time.monotonic()
                while len(received) < 6 and time.monotonic() - start < 60:
                    next(loop)
                    if working:  # one task done per turn: a poll goes out while one is held
                        time.sleep(0.05)
                        working.pop(0).ack()
                elapsed = time.monotonic() - start
    finally:
        set_event_loop(None)
        hub.close()
    assert received == list(range(6))
    # a poll that waited out its 8 s after the unblocking deletes would take 16 s or more
    assert elapsed < 10, elapsed


# -- AWS SDK for JavaScript v3 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_sdk() -> str:
    """tests/js with @aws-sdk/client-sqs installed; the node executable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the AWS SDK for JavaScript check")
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-sqs").is_dir():
        command = "ci" if (JS_DIR / "package-lock.json").exists() else "install"
        try:
            done = subprocess.run(
                [npm, command, "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm {command} in tests/js timed out (offline?)")
        if done.returncode != 0:
            pytest.skip(f"npm {command} in tests/js failed (offline?):\n{done.stderr[-2000:]}")
    return node


def _run_js(node: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            node,
            str(JS_DIR / "sqs_md5_check.mjs"),
            "--endpoint",
            endpoint,
            "--prefix",
            f"js-{uuid.uuid4().hex[:8]}",
        ],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )


def test_js_sdk_md5s(daemon: Any, node_sdk: str) -> None:
    done = _run_js(node_sdk, daemon.url)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["failures"] == 0 and summary["checks"] > 300, summary


# The proof that the check bites: the same script through a proxy that corrupts one kind of MD5.
CORRUPT = {
    "body": {"MD5OfMessageBody", "MD5OfBody"},
    "attributes": {"MD5OfMessageAttributes"},
    "system": {"MD5OfMessageSystemAttributes"},
}


def _corrupt(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: ("0" * 32 if k in keys and isinstance(v, str) else _corrupt(v, keys))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_corrupt(v, keys) for v in value]
    return value


@pytest.fixture
def corrupting_proxy(daemon: Any) -> Iterator[Any]:
    """``start(kind)`` -> URL of a proxy to the daemon that replaces the MD5s of ``kind``."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(kind: str) -> str:
        keys = CORRUPT[kind]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = urllib.request.Request(
                    daemon.url + self.path,
                    data=body,
                    method="POST",
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("content-length", "connection")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as r:
                        status, headers, data = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, headers, data = e.code, e.headers, e.read()
                if status == 200 and data:
                    data = json.dumps(_corrupt(json.loads(data), keys)).encode()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("body", "InvalidChecksumError"),  # the SDK's own middleware
        ("attributes", "MD5OfMessageAttributes"),  # the script's check
        ("system", "MD5OfMessageSystemAttributes"),
    ],
)
def test_js_sdk_check_fails_on_a_wrong_md5(
    node_sdk: str, corrupting_proxy: Any, kind: str, expected: str
) -> None:
    done = _run_js(node_sdk, corrupting_proxy(kind))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL:" in done.stderr and expected in done.stderr, done.stderr

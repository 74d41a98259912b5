"""The embedded Python API as a user's program sees it: shapes, errors, connect() URLs."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import millpond
from millpond import errors, storage

from .daemon import Daemon, native_daemon_fixture  # noqa: F401 (fixture)
from .test_native_hunt import send_from_a_forked_child


def test_aws_service_error_survives_pickling() -> None:
    # pickle.loads raised "AwsServiceError.__init__() missing 3 required positional
    # arguments": an error of the sqs:// backend could not cross a multiprocessing pool (the
    # worker's exception is pickled back to the parent), which hid it behind a
    # MaybeEncodingError. Every other millpond error pickles.
    aws_errors = pytest.importorskip("millpond.aws.errors")
    error = aws_errors.AwsServiceError("ThrottlingException", "Rate exceeded", 400, True)
    vars(error)["batch_results"] = ["message-id", None]  # as raise_first_failure adds it

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is aws_errors.AwsServiceError
    assert str(copy) == "ThrottlingException: Rate exceeded"
    assert (copy.code, copy.json_type, copy.http_status, copy.sender_fault) == (
        "ThrottlingException",
        "ThrottlingException",
        400,
        True,
    )
    assert copy.batch_results == ["message-id", None]
    assert isinstance(copy, errors.MillpondError)


# -- millpond.connect() URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "millpond://127.0.0.1:99999",
        "millpond://127.0.0.1:abc",
        "millpond://127.0.0.1:-1",
        "millpond://127.0.0.1:0",
    ],
)
def test_connect_refuses_a_bad_port_with_its_own_error(url: str) -> None:
    # urlsplit's "Port out of range 0-65535" came out as a bare ValueError; connect() is
    # documented to raise InvalidParameterValue for a URL that lacks what its backend needs.
    with pytest.raises(errors.InvalidParameterValue, match="port") as raised:
        millpond.connect(url)
    assert url in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "millpond://127.0.0.1:9?region=eu-west-1",
        "millpond://AKIAEXAMPLE:hunter2@127.0.0.1:9",
        "file://{path}?durability=os",
    ],
)
def test_connect_refuses_url_parts_it_would_ignore(tmp_path: Path, url: str) -> None:
    # The query of a millpond:// or file:// URL and the user:password of a millpond:// URL
    # were dropped without a word: "?region=eu-west-1" talked to the daemon's default region
    # (the queues of another region, silently), "?durability=os" opened the directory with
    # fsync. Only sqs:// takes options in its query; the others take them as keywords.
    url = url.format(path=tmp_path / "data")
    with pytest.raises(errors.InvalidParameterValue, match="keyword") as raised:
        millpond.connect(url)
    assert "://" in str(raised.value) and "hunter2" not in str(raised.value)
    assert not (tmp_path / "data").exists()  # nothing opened, nothing made


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("millpond://127.0.0.1:9/eu-west-1", "path"),
        ("sqs://us-east-1:9324", "port"),
        ("sqs://us-east-1/jobs", "path"),
        ("sqs://AKIAEXAMPLE:hunter2@us-east-1", "user"),
    ],
)
def test_connect_refuses_the_parts_of_a_url_its_backend_has_no_use_for(url: str, part: str) -> None:
    # Dropped without a word: "sqs://us-east-1:9324" (a daemon's port, one might think) went
    # to Amazon's own endpoint; a path or a user:password was ignored the same way.
    with pytest.raises(errors.InvalidParameterValue, match=part) as raised:
        millpond.connect(url)
    assert "hunter2" not in str(raised.value)


def test_connect_still_takes_a_path_with_a_question_mark(tmp_path: Path) -> None:
    path = tmp_path / "what?data"
    with millpond.connect(str(path)) as broker:
        assert isinstance(broker, millpond.Broker)
    assert path.is_dir()


# -- batch entries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "unknown"),
    [
        ({"body": "late", "DelaySeconds": 60}, "DelaySeconds"),  # boto3's name, beside ours
        ({"body": "late", "delay": 60}, "delay"),  # a typo
        ({"Id": "1", "MessageBody": "copied from boto3"}, "MessageBody"),
    ],
)
def test_send_batch_refuses_an_entry_key_it_does_not_know(
    broker: millpond.Broker, entry: dict[str, Any], unknown: str
) -> None:
    # {"body": ..., "DelaySeconds": 60} was sent at once, its delay dropped without a word
    # (likewise "MessageAttributes": the attributes were lost); a boto3-shaped entry was
    # refused as "The message body must be bytes or str, not NoneType.". boto3 refuses an
    # unknown member of an entry before sending ("Unknown parameter in Entries[0]").
    queue = broker.create_queue("jobs")
    with pytest.raises(errors.InvalidParameterValue, match=unknown) as raised:
        queue.send_batch(["first", entry])
    assert "entry 2" in str(raised.value) and "delay_seconds" in str(raised.value)
    assert queue.get_attributes()["ApproximateNumberOfMessages"] == "0"
    assert queue.get_attributes()["ApproximateNumberOfMessagesDelayed"] == "0"


def test_fifo_send_batch_refuses_an_entry_key_it_does_not_know(broker: millpond.Broker) -> None:
    queue = broker.create_queue(
        "jobs.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    entry = {"body": "b", "group_id": "g", "MessageAttributes": {}}
    with pytest.raises(errors.InvalidParameterValue, match="MessageAttributes"):
        queue.send_batch([{"body": "a", "group_id": "g"}, entry])
    assert queue.receive(10) == []


def test_publish_batch_refuses_an_entry_key_it_does_not_know(broker: millpond.Broker) -> None:
    # {"Id", "Message", "MessageAttribute": ...} (a typo) published the message without its
    # attributes, so a filter policy on them dropped it: nothing told the caller why.
    queue = broker.create_queue("orders")
    topic = broker.create_topic("events")
    topic.subscribe(queue, filter_policy={"kind": ["order"]})
    kind = {"kind": {"DataType": "String", "StringValue": "order"}}
    with pytest.raises(errors.InvalidInputError, match="MessageAttribute") as raised:
        topic.publish_batch([{"Id": "a", "Message": "paid", "MessageAttribute": kind}])
    assert raised.value.code == "InvalidParameter"  # SNS's code for a bad batch entry
    # both spellings stay accepted
    topic.publish_batch(
        [
            {"Id": "b", "Message": "paid", "MessageAttributes": kind},
            {"id": "c", "message": "paid", "attributes": kind},
        ]
    )
    assert sorted(m.receive_count for m in queue.receive(10)) == [1, 1]


def test_sqs_backend_refuses_unknown_entry_keys_as_embedded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sqs:// backend read its entries the same way and dropped the same keys.
    moto = pytest.importorskip("moto")
    pytest.importorskip("millpond.aws")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with moto.mock_aws(), millpond.connect("sqs://us-east-1") as broker:
        queue = broker.create_queue("jobs")
        with pytest.raises(errors.InvalidParameterValue, match="DelaySeconds"):
            queue.send_batch([{"body": "late", "DelaySeconds": 60}])
        topic = broker.create_topic("events")
        with pytest.raises(errors.InvalidInputError, match="Subjet"):
            topic.publish_batch([{"Id": "a", "Message": "m", "Subjet": "typo"}])
        assert queue.receive(10) == []


# -- fork() while the parent is writing -----------------------------------------------------------


def _commit_in_flight(broker: millpond.Broker, seconds: float) -> threading.Thread:
    """A write whose transaction stays open ``seconds`` (a slow commit), started and entered."""
    entered = threading.Event()

    def slow(txn: Any, now_ms: int) -> None:
        entered.set()
        time.sleep(seconds)
        txn.put(b"test:slow", b"1", db=broker._storage.tables.meta)

    writer = threading.Thread(target=lambda: broker._storage.write(slow))
    writer.start()
    assert entered.wait(10)
    return writer


def _open_in_child(data_dir: str) -> str:
    """Fork; the child opens ``data_dir`` again and sends; what it saw, as text."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_fd)
            try:
                with millpond.open(data_dir, durability="os") as own:
                    own.queue("jobs").send("from the child")
                    outcome = "reopened"
            except BaseException as exc:
                outcome = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            os.write(write_fd, outcome.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as answer:
            return answer.read().decode()
    finally:
        os.waitpid(pid, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_during_a_commit_can_open_the_directory(data_dir: str) -> None:
    # A process that forked (a multiprocessing "fork" worker) while one of its threads was
    # committing could not open the data directory at all: its inherited copy of the
    # environment could not be closed (the committing thread does not exist in the child),
    # and millpond.open() failed with py-lmdb's raw "lmdb.Error: The environment ... is
    # already open in this process". README: "a forked child must open it again".
    broker = millpond.open(data_dir, durability="os")
    try:
        broker.create_queue("jobs")
        writer = _commit_in_flight(broker, 0.3)
        try:
            assert _open_in_child(data_dir) == "reopened"
        finally:
            writer.join(10)
        assert [m.text for m in broker.queue("jobs").receive(10)] == ["from the child"]
    finally:
        broker.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_during_an_endless_commit_gets_a_clear_error(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fork() waits for a commit in flight only so long: past that, the child's reopen is
    # refused with millpond's own error saying why, not a raw lmdb.Error.
    monkeypatch.setattr(storage, "FORK_WAITS_FOR_COMMIT_S", 0.05)
    broker = millpond.open(data_dir, durability="os")
    try:
        broker.create_queue("jobs")
        writer = _commit_in_flight(broker, 0.5)
        try:
            outcome = _open_in_child(data_dir)
        finally:
            writer.join(10)
        assert outcome.startswith("millpond.errors.AlreadyOpen:"), outcome
        assert "fork" in outcome
    finally:
        broker.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_using_the_native_client_leaves_the_parents_connection_alone(
    daemon: Daemon,
) -> None:
    # A Client inherited through fork() went on using the parent's socket: both processes
    # wrote frames on one connection and read each other's answers (a call hung, or got
    # the other's messages), and the child's close() shut the socket down under the
    # parent, whose long poll failed with ConnectionLost. The child now connects anew.
    with millpond.connect(daemon.native_url) as client:
        queue = client.create_queue(f"forked-{os.getpid()}")
        polled: list[Any] = []
        poll = threading.Thread(target=lambda: polled.append(_receive_texts(queue)))
        poll.start()
        deadline = time.monotonic() + 5
        while not client._connection._pending and time.monotonic() < deadline:
            time.sleep(0.01)  # until the long poll is in flight, its reader in recv()
        child_said = send_from_a_forked_child(client, queue, alarm_seconds=5)
        poll.join(10)
        assert child_said == b"sent"
        assert polled == [["from the child"]]
        assert queue.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "1"


def _receive_texts(queue: Any, wait_seconds: int = 5, max_messages: int = 1) -> Any:
    try:
        return [m.text for m in queue.receive(max_messages, wait_seconds=wait_seconds)]
    except errors.MillpondError as exc:
        return exc


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_using_an_sqs_broker_does_not_share_its_http_connections(
    daemon: Daemon,
) -> None:
    # An AwsBroker inherited through fork() used the parent's pooled keep-alive
    # connections: parent and child wrote requests on one connection and read each other's
    # answers (a send got a ReceiveMessage answer: KeyError 'MessageId'; a receive got
    # "400: Invalid HTTP request received."; calls hung). botocore clients are not
    # fork-safe (boto/botocore#1246); the child now makes its own.
    pytest.importorskip("millpond.aws")
    with millpond.connect(
        "sqs://us-east-1",
        endpoint_url=daemon.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as broker:
        queue = broker.create_queue(f"forked-sqs-{os.getpid()}")
        for round_ in range(3):
            queue.get_attributes()  # leaves an idle keep-alive connection in the pool
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never return into pytest
                try:
                    signal.alarm(5)  # a call that hangs must not hang the test
                    os.close(read_fd)
                    try:
                        ids = [queue.send(f"{round_}.{i}") for i in range(3)]
                        said = " ".join(ids)
                    except BaseException as exc:
                        said = f"{type(exc).__name__}: {exc}"
                    os.write(write_fd, said.encode())
                finally:
                    os._exit(0)
            os.close(write_fd)
            received = _receive_texts(queue, wait_seconds=1)  # at the same time as the child
            with os.fdopen(read_fd, "rb") as answer:
                child_said = answer.read().decode()
            os.waitpid(pid, 0)
            assert len(set(child_said.split())) == 3, child_said
            assert not isinstance(received, Exception), received
            for _ in range(3):
                received += _receive_texts(queue, wait_seconds=0, max_messages=10)
            assert sorted(received) == [f"{round_}.{i}" for i in range(3)]


# -- what cannot cross to another process ---------------------------------------------------------


def test_broker_objects_refuse_pickling_with_a_message_saying_what_to_do(
    broker: millpond.Broker,
) -> None:
    # pickle.dumps(queue) raised "TypeError: cannot pickle 'module' object": what a user
    # gets passing a Queue to a multiprocessing worker started with "spawn" (macOS) or
    # "forkserver" (Linux from Python 3.14). Such an object stands for a data directory
    # this process has open; the worker must open the directory itself.
    queue = broker.create_queue("jobs")
    topic = broker.create_topic("events")
    subscription = topic.subscribe(queue)
    for thing, kind in [
        (broker, "Broker"),
        (queue, "Queue"),
        (topic, "Topic"),
        (subscription, "Subscription"),
    ]:
        with pytest.raises(TypeError, match=f"a millpond {kind} cannot be pickled") as raised:
            pickle.dumps(thing)
        assert "millpond.open" in str(raised.value)

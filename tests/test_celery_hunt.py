"""kombu's SQS transport (the one Celery uses) and aws-cli doing real work against the daemon.

What a Celery user relies on beyond the round trips of test_server_clients.py: delayed
publishes, requeue and reject (with and without a redrive policy), unacknowledged messages
given back when a channel closes, fanout exchanges over SNS topics, predefined queues, the
query protocol of older botocore, and the SNS commands of aws-cli. Each checks what the client
sees (bodies, attributes, counts, timing), not only that nothing raised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_server_sqs import query_model_dir

__all__ = ["query_model_dir"]  # a fixture: the query-protocol SQS model for botocore

kombu = pytest.importorskip(
    "kombu", reason="kombu is not installed (pip install 'celery[sqs]>=5.5,<6')"
)
pytest.importorskip("pycurl", reason="pycurl is not installed (pip install 'kombu[sqs]')")

# kombu's curl client uses pycurl calls that pycurl >= 7.45 deprecates (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:kombu.asynchronous.http.curl")

BOTH_COUNTS = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


def _connection(daemon: Any, **options: Any) -> Any:
    """A kombu connection to the daemon, its queue names under a fresh prefix."""
    host = str(daemon.url).split("//", 1)[1]
    transport_options = {
        "region": "us-east-1",
        "is_secure": False,  # the endpoint is http://host:port from the connection URL
        "wait_time_seconds": 1,
        "polling_interval": 0,
        "queue_name_prefix": f"ch-{uuid.uuid4().hex[:8]}-",
        **options,
    }
    return kombu.Connection(f"sqs://AKIDEXAMPLE:secret@{host}", transport_options=transport_options)


def _url(channel: Any, name: str) -> str:
    return channel._new_queue(name)  # type: ignore[no-any-return]


def _counts(channel: Any, name: str) -> dict[str, str]:
    attributes = channel.sqs().get_queue_attributes(
        QueueUrl=_url(channel, name), AttributeNames=BOTH_COUNTS
    )["Attributes"]
    return attributes  # type: ignore[no-any-return]


@pytest.fixture
def hub() -> Iterator[Any]:
    """kombu's event loop, as a Celery worker runs it (receives over pycurl)."""
    from kombu.asynchronous import Hub, set_event_loop

    loop = Hub()
    set_event_loop(loop)
    yield loop
    set_event_loop(None)
    loop.close()


def _consume(
    hub: Any,
    channel: Any,
    queues: list[Any],
    on_message: Callable[[Any, Any], None],
    until: Callable[[], bool],
    timeout: float = 10,
    **consumer: Any,
) -> None:
    with kombu.Consumer(channel, queues, callbacks=[on_message], accept=["json"], **consumer):
        loop = hub.create_loop()
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            next(loop)


def test_delayed_publishes_reach_a_waiting_consumer_when_due(daemon: Any, hub: Any) -> None:
    """kombu's delay_seconds is SQS DelaySeconds: a consumer long polling (5 s here) gets
    each message when its delay ends, not at the end of a poll."""
    got: list[tuple[int, float]] = []
    with _connection(daemon, wait_time_seconds=5) as conn:
        conn.transport.register_with_event_loop(conn.connection, hub)
        channel = conn.channel()
        channel.basic_qos(prefetch_count=10)
        queue = kombu.Queue("later", kombu.Exchange("later", type="direct"), routing_key="later")
        producer = kombu.Producer(channel)
        start = time.monotonic()
        for delay in (1, 0):
            producer.publish(
                {"delay": delay},
                exchange=queue.exchange,
                routing_key="later",
                declare=[queue],
                serializer="json",
                delay_seconds=delay,
            )

        def on_message(body: Any, message: Any) -> None:
            got.append((body["delay"], time.monotonic() - start))
            message.ack()

        _consume(hub, channel, [queue], on_message, until=lambda: len(got) == 2)
    assert [delay for delay, _ in got] == [0, 1]
    assert got[0][1] < 0.9
    assert 0.9 <= got[1][1] < 2.5, got  # when due, not after the 5 s poll


def test_requeue_and_reject_on_a_queue_without_redrive_policy(daemon: Any) -> None:
    """requeue() hides the message for wait_time_seconds (ChangeMessageVisibility), then it
    comes back with ApproximateReceiveCount 2; reject() deletes it (kombu reads the queue's
    RedrivePolicy first: there is none)."""
    with _connection(daemon) as conn:
        simple = conn.SimpleQueue("jobs")
        simple.put({"n": 1})
        first = simple.get(timeout=5)
        assert first.delivery_info["sqs_message"]["Attributes"] == {"ApproximateReceiveCount": "1"}
        first.requeue()
        again = simple.get(timeout=5)
        assert again.payload == {"n": 1}
        assert again.delivery_info["sqs_message"]["Attributes"] == {"ApproximateReceiveCount": "2"}
        again.reject()
        assert _counts(simple.channel, "jobs") == dict.fromkeys(BOTH_COUNTS, "0")
        simple.close()


def test_a_rejected_message_is_dead_lettered_by_the_redrive_policy(daemon: Any) -> None:
    """With a RedrivePolicy kombu leaves a rejected message in the queue, and SQS moves it to
    the dead-letter queue on the receive past maxReceiveCount."""
    with _connection(daemon) as conn:
        channel = conn.channel()
        dead_url = _url(channel, "dead")
        sqs = channel.sqs()
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        work_url = _url(channel, "work")
        policy = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": 1}
        sqs.set_queue_attributes(
            QueueUrl=work_url,
            Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(policy)},
        )
        simple = conn.SimpleQueue("work")
        simple.put({"poison": True})
        simple.get(timeout=5).reject()
        assert _counts(channel, "work") == {  # left to the redrive policy, not deleted
            "ApproximateNumberOfMessages": "0",
            "ApproximateNumberOfMessagesNotVisible": "1",
        }
        deadline = time.monotonic() + 5  # visible again after 1 s: the next receive moves it
        while time.monotonic() < deadline:
            assert "Messages" not in sqs.receive_message(QueueUrl=work_url)
            dead = sqs.receive_message(QueueUrl=dead_url, MessageSystemAttributeNames=["All"])
            if "Messages" in dead:
                break
            time.sleep(0.1)
        (message,) = dead["Messages"]
        source = channel.canonical_queue_name("work")
        assert message["Attributes"]["DeadLetterQueueSourceArn"].endswith(":" + source)
        assert _counts(channel, "work") == dict.fromkeys(BOTH_COUNTS, "0")
        simple.close()


def test_unacknowledged_messages_come_back_when_the_channel_closes(daemon: Any, hub: Any) -> None:
    """A consumer that closes with prefetched, unacknowledged messages (a worker stopping)
    gives them back (kombu: ChangeMessageVisibility to wait_time_seconds), rather than leave
    them hidden for the 30 minutes of kombu's visibility timeout."""
    got: list[int] = []
    with _connection(daemon) as conn:
        conn.transport.register_with_event_loop(conn.connection, hub)
        channel = conn.channel()
        channel.basic_qos(prefetch_count=3)
        queue = kombu.Queue("held", kombu.Exchange("held", type="direct"), routing_key="held")
        producer = kombu.Producer(channel)
        for n in range(5):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="held", declare=[queue])
        _consume(
            hub, channel, [queue], lambda body, _: got.append(body["n"]), lambda: len(got) == 3
        )
        assert _counts(channel, "held") == {
            "ApproximateNumberOfMessages": "2",
            "ApproximateNumberOfMessagesNotVisible": "3",
        }
        url, sqs = _url(channel, "held"), channel.sqs()
        channel.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=BOTH_COUNTS)
        if counts["Attributes"]["ApproximateNumberOfMessages"] == "5":
            break
        time.sleep(0.1)
    assert counts["Attributes"] == {
        "ApproximateNumberOfMessages": "5",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_a_fanout_exchange_delivers_through_an_sns_topic(daemon: Any, fifo: bool) -> None:
    """supports_fanout: kombu makes an SNS topic for the exchange, subscribes each bound queue
    (raw delivery, a queue policy for the topic) and publishes once; every queue gets it."""
    suffix = ".fifo" if fifo else ""
    got: dict[str, list[Any]] = {}
    with _connection(daemon, supports_fanout=True) as conn:
        exchange = kombu.Exchange("broadcast" + suffix, type="fanout")
        queues = [kombu.Queue(f"listener{i}{suffix}", exchange) for i in (1, 2)]
        channel = conn.channel()

        def on_message(body: Any, message: Any) -> None:
            queue = message.delivery_info["sqs_queue"].rsplit("/", 1)[1]
            got.setdefault(queue, []).append(body)
            message.ack()

        with kombu.Consumer(channel, queues, callbacks=[on_message], accept=["json"]):
            producer = kombu.Producer(channel)
            for n in range(2):
                producer.publish({"n": n}, exchange=exchange, declare=queues, MessageGroupId="fans")
            deadline = time.monotonic() + 10
            while sum(map(len, got.values())) < 4 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except (TimeoutError, OSError):
                    pass
        topic_arn = channel.fanout._topic_arn_cache[exchange.name]
        prefix = channel.queue_name_prefix
    assert topic_arn.endswith(f":{prefix}broadcast{suffix}")
    expected = [{"n": 0}, {"n": 1}]
    assert {q: bodies if fifo else sorted(bodies, key=str) for q, bodies in got.items()} == {
        f"{prefix}listener1{suffix}": expected,
        f"{prefix}listener2{suffix}": expected,
    }


def test_a_predefined_queue_named_by_its_amazon_url(daemon: Any, hub: Any) -> None:
    """predefined_queues as written for AWS (https://sqs.<region>.amazonaws.com/<account>/
    <name>): the JSON protocol sends the URL as data to the endpoint, and the daemon finds
    the queue by its account and name."""
    name = f"pre-{uuid.uuid4().hex[:8]}"
    sqs = daemon.client()
    local_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    account = local_url.rsplit("/", 2)[1]
    amazon_url = f"https://sqs.us-east-1.amazonaws.com/{account}/{name}"
    got: list[Any] = []
    options = {"predefined_queues": {name: {"url": amazon_url}}, "queue_name_prefix": ""}
    with _connection(daemon, **options) as conn:
        conn.transport.register_with_event_loop(conn.connection, hub)
        channel = conn.channel()
        queue = kombu.Queue(name, kombu.Exchange(name, type="direct"), routing_key=name)
        kombu.Producer(channel).publish(
            {"predefined": True}, exchange=queue.exchange, routing_key=name, declare=[queue]
        )

        def on_message(body: Any, message: Any) -> None:
            got.append(body)
            message.ack()

        _consume(hub, channel, [queue], on_message, until=lambda: bool(got))
    assert got == [{"predefined": True}]
    deadline = time.monotonic() + 5  # the ack's DeleteMessage
    while time.monotonic() < deadline:
        counts = sqs.get_queue_attributes(QueueUrl=local_url, AttributeNames=BOTH_COUNTS)
        if counts["Attributes"] == dict.fromkeys(BOTH_COUNTS, "0"):
            break
        time.sleep(0.05)
    assert counts["Attributes"] == dict.fromkeys(BOTH_COUNTS, "0")


def test_a_no_ack_consumer_over_the_query_protocol(
    daemon: Any, hub: Any, query_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a botocore whose SQS model is the query protocol (before 1.34.90) kombu's
    asynchronous client POSTs ReceiveMessage to the queue URL and, for a no_ack consumer,
    deletes each message with a presigned GET: both must work."""
    monkeypatch.setenv("AWS_DATA_PATH", query_model_dir)
    got: list[Any] = []
    with _connection(daemon) as conn:
        conn.transport.register_with_event_loop(conn.connection, hub)
        channel = conn.channel()
        assert channel.sqs().meta.service_model.protocol == "query"
        queue = kombu.Queue("q", kombu.Exchange("q", type="direct"), routing_key="q")
        producer = kombu.Producer(channel)
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="q", declare=[queue])
        _consume(
            hub,
            channel,
            [queue],
            lambda body, _: got.append(body["n"]),
            until=lambda: (
                len(got) == 3 and _counts(channel, "q") == dict.fromkeys(BOTH_COUNTS, "0")
            ),
            no_ack=True,
        )
        counts = _counts(channel, "q")
    assert sorted(got) == [0, 1, 2]
    assert counts == dict.fromkeys(BOTH_COUNTS, "0")


# -- aws-cli: SNS (the query protocol, XML) ---------------------------------------------------


def _aws(daemon: Any, tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No user configuration or credentials may leak in.
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_PAGER": "",
    }
    done = subprocess.run(
        ["aws", "--endpoint-url", daemon.url, "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"aws {' '.join(args[:2])} failed:\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.mark.skipif(
    shutil.which("aws") is None, reason="aws-cli is not installed (pip install 'awscli>=1.34,<2')"
)
def test_aws_cli_sns_fan_out_with_a_filter_policy(daemon: Any, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    topic = _aws(daemon, tmp_path, "sns", "create-topic", "--name", name)["TopicArn"]
    sqs = daemon.client()
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = {"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"kind": ["order"]})}
    subscription = _aws(
        daemon, tmp_path, "sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs",
        "--notification-endpoint", queue_arn, "--attributes", json.dumps(attributes),
        "--return-subscription-arn",
    )["SubscriptionArn"]  # fmt: skip
    assert subscription.startswith(topic + ":")
    for kind in ("order", "refund"):
        message_attributes = {"kind": {"DataType": "String", "StringValue": kind}}
        published = _aws(
            daemon, tmp_path, "sns", "publish", "--topic-arn", topic, "--message",
            f"{kind} <&> \u00e9", "--message-attributes", json.dumps(message_attributes),
        )  # fmt: skip
        assert published["MessageId"]
    batch = _aws(
        daemon, tmp_path, "sns", "publish-batch", "--topic-arn", topic,
        "--publish-batch-request-entries", json.dumps([
            {"Id": "a", "Message": "batched order",
             "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "order"}}},
            {"Id": "b", "Message": "unlabelled"},
        ]),
    )  # fmt: skip
    assert sorted(entry["Id"] for entry in batch["Successful"]) == ["a", "b"]
    assert batch["Failed"] == []
    received = _aws(
        daemon, tmp_path, "sqs", "receive-message", "--queue-url", queue_url,
        "--max-number-of-messages", "10", "--message-attribute-names", "All",
    )["Messages"]  # fmt: skip
    assert sorted(m["Body"] for m in received) == ["batched order", "order <&> \u00e9"]
    for message in received:
        assert message["MessageAttributes"] == {
            "kind": {"DataType": "String", "StringValue": "order"}
        }
    got = _aws(
        daemon, tmp_path, "sns", "get-subscription-attributes", "--subscription-arn",
        subscription,
    )["Attributes"]  # fmt: skip
    assert got["RawMessageDelivery"] == "true"
    assert json.loads(got["FilterPolicy"]) == {"kind": ["order"]}

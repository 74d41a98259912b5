"""Standard queues: what every backend must do as Amazon SQS does.

Sources: reference = /work/shared/reference/sqs-sns.md (section named); AWS docs by URL. Real
time only: visibility is driven with ``change_visibility(0)`` or a receive's
``visibility_timeout=0`` rather than waiting a timeout out, except where the timeout itself is
under test (1 s).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from millpond.errors import (
    QueueAlreadyExists,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
)
from tests.conformance._helpers import (
    binary,
    bodies,
    drain,
    md5_of_attributes,
    number,
    receive_woken_by,
    string,
)
from tests.conformance._limits import requires

# -- queue lifecycle and attributes ---------------------------------------------------------------


def test_new_queue_has_sqs_defaults(broker: Any, name: str) -> None:
    """Defaults and string values as SQS returns them (reference §1.3: VisibilityTimeout 30,
    DelaySeconds 0, MessageRetentionPeriod 345600, MaximumMessageSize 1048576 since 2025-08,
    ReceiveMessageWaitTimeSeconds 0; "All values are strings")."""
    q = broker.create_queue(name)
    attributes = q.get_attributes()
    assert {
        key: attributes[key]
        for key in (
            "VisibilityTimeout",
            "DelaySeconds",
            "MessageRetentionPeriod",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        )
    } == {
        "VisibilityTimeout": "30",
        "DelaySeconds": "0",
        "MessageRetentionPeriod": "345600",
        "MaximumMessageSize": "1048576",
        "ReceiveMessageWaitTimeSeconds": "0",
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    arn = attributes["QueueArn"]
    assert arn.startswith("arn:aws:sqs:") and arn.endswith(":" + name)
    assert arn == q.arn


STANDARD_ALL = {
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
}
FIFO_ALL = STANDARD_ALL | {
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
}


def test_all_attributes_of_a_new_queue(broker: Any, name: str) -> None:
    """GetQueueAttributes All of a new queue names exactly what AWS recorded (reference §1.3,
    LS-SQS test_fifo_set_content_based_deduplication_strategy: the FIFO set; standard: "same
    minus FIFO keys"), with SqsManagedSseEnabled "true" and the FIFO defaults."""
    standard = broker.create_queue(name).get_attributes(["All"])
    assert set(standard) == STANDARD_ALL
    assert standard["SqsManagedSseEnabled"] == "true"
    fifo = broker.create_queue(name + ".fifo", {"FifoQueue": "true"}).get_attributes(["All"])
    assert set(fifo) == FIFO_ALL
    assert {key: fifo[key] for key in FIFO_ALL - STANDARD_ALL} == {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
        "DeduplicationScope": "queue",
        "FifoThroughputLimit": "perQueue",
    }


@requires("sqs-created-timestamp-seconds")
def test_created_timestamp_is_epoch_seconds(broker: Any, name: str) -> None:
    """CreatedTimestamp and LastModifiedTimestamp are whole epoch seconds (reference §1.3)."""
    before = int(time.time())
    attributes = broker.create_queue(name).get_attributes()
    for key in ("CreatedTimestamp", "LastModifiedTimestamp"):
        assert before - 5 <= int(attributes[key]) <= time.time() + 5


def test_create_queue_with_attributes(broker: Any, name: str) -> None:
    """CreateQueue's Attributes are the queue's; GetQueueAttributes returns exactly the names
    asked for (AWS API_GetQueueAttributes)."""
    given = {
        "VisibilityTimeout": "45",
        "MessageRetentionPeriod": "3600",
        "MaximumMessageSize": "2048",
        "DelaySeconds": "3",
        "ReceiveMessageWaitTimeSeconds": "2",
    }
    q = broker.create_queue(name, given)
    assert q.get_attributes(list(given)) == given
    assert broker.queue(name).get_attributes(["VisibilityTimeout"]) == {"VisibilityTimeout": "45"}


def test_create_queue_again(broker: Any, name: str) -> None:
    """CreateQueue with an existing name returns the queue when the given attributes match (or
    none are given), and fails with QueueNameExists when one differs: "Amazon SQS returns this
    error only if the request includes attributes whose values differ from those of the
    existing queue" (botocore SQS.Client.exceptions.QueueNameExists)."""
    q = broker.create_queue(name, {"VisibilityTimeout": "45"})
    q.send("kept")
    again = broker.create_queue(name, {"VisibilityTimeout": "45"})
    assert again.get_attributes(["VisibilityTimeout"]) == {"VisibilityTimeout": "45"}
    assert bodies(drain(broker.create_queue(name), 1)) == ["kept"]  # same queue, not a new one
    with pytest.raises(QueueAlreadyExists):
        broker.create_queue(name, {"VisibilityTimeout": "46"})
    assert q.get_attributes(["VisibilityTimeout"]) == {"VisibilityTimeout": "45"}


def test_set_attributes(broker: Any, name: str) -> None:
    """SetQueueAttributes changes what GetQueueAttributes returns; the new queue default
    VisibilityTimeout governs the next receive (AWS API_SetQueueAttributes)."""
    q = broker.create_queue(name)
    q.set_attributes({"VisibilityTimeout": "0", "DelaySeconds": "0", "MaximumMessageSize": "4096"})
    assert q.get_attributes(["VisibilityTimeout", "MaximumMessageSize"]) == {
        "VisibilityTimeout": "0",
        "MaximumMessageSize": "4096",
    }
    q.send("again and again")
    first = drain(q, 1)
    # VisibilityTimeout 0: the message is visible again at once, received a second time
    second = drain(q, 1)
    assert [m.receive_count for m in first + second] == [1, 2]


def test_list_queues_with_prefix(broker: Any, name: str) -> None:
    """ListQueues returns the queues whose names begin with QueueNamePrefix (AWS
    API_ListQueues); order is not specified, so sets are compared."""
    for suffix in ("-a", "-b", "x"):
        broker.create_queue(name + suffix)
    assert set(broker.list_queues(name + "-")) == {name + "-a", name + "-b"}
    assert set(broker.list_queues(name)) == {name + "-a", name + "-b", name + "x"}
    assert {name + "-a", name + "-b", name + "x"} <= set(broker.list_queues())
    assert broker.list_queues(name + "-none") == []


def test_deleted_queue_is_gone(broker: Any, name: str) -> None:
    """After DeleteQueue the queue and its messages are gone: not listed, and a call naming it
    fails with QueueDoesNotExist (AWS API_DeleteQueue; AWS may take up to 60 s to get there,
    the backends here are immediate)."""
    q = broker.create_queue(name)
    q.send("lost")
    broker.delete_queue(name)
    assert name not in broker.list_queues(name)
    with pytest.raises(QueueDoesNotExist):
        broker.queue(name)
    with pytest.raises(QueueDoesNotExist):
        q.send("into the void")
    with pytest.raises(QueueDoesNotExist):
        q.receive(1)


# -- send, receive, delete ------------------------------------------------------------------------


def test_round_trip_fields(broker: Any, name: str) -> None:
    """A received message carries its body, the MessageId the send returned, receive count 1,
    SentTimestamp and ApproximateFirstReceiveTimestamp in epoch ms (reference §1.4), and its
    body's MD5 (reference §1.5: "foobar" -> 3858f622...)."""
    q = broker.create_queue(name)
    before_ms = int(time.time() * 1000)
    message_id = q.send("foobar")
    (m,) = drain(q, 1)
    after_ms = int(time.time() * 1000)
    assert (m.body, m.message_id, m.receive_count) == (b"foobar", message_id, 1)
    assert before_ms - 1000 <= m.sent_timestamp <= after_ms + 1000
    assert m.sent_timestamp - 1000 <= m.first_receive_timestamp <= after_ms + 1000
    assert m.md5_of_body == "3858f62230ac3c915f300c664312c63f"
    assert m.md5_of_message_attributes is None  # no attributes, no digest (reference §1.5)
    q.delete(m.receipt_handle)
    assert q.receive(10) == []


def test_unicode_body(broker: Any, name: str) -> None:
    """Bodies are text in SQS's character set (any Unicode outside the excluded ranges); the
    MD5 is over the UTF-8 bytes (reference §1.2 SendMessage, §1.5)."""
    q = broker.create_queue(name)
    text = "naïve 😀 \t\n\r \ue000 \U0010ffff"
    q.send(text)
    (m,) = drain(q, 1)
    assert m.body.decode("utf-8") == text
    assert m.md5_of_body == hashlib.md5(text.encode()).hexdigest()


def test_send_batch(broker: Any, name: str) -> None:
    """SendMessageBatch stores up to 10 messages, each with its own id, delay and attributes
    (AWS API_SendMessageBatch); the embedded API returns the ids in entry order."""
    q = broker.create_queue(name)
    entries = [
        "plain",
        {"body": "with attributes", "attributes": {"kind": string("batch")}},
        {"body": "delayed", "delay_seconds": 900},
    ]
    ids = q.send_batch(entries)
    assert len(ids) == 3 and len(set(ids)) == 3
    received = drain(q, 2)
    assert sorted((m.message_id, m.body) for m in received) == sorted(
        [(ids[0], b"plain"), (ids[1], b"with attributes")]
    )
    by_body = {m.body: m for m in received}
    assert by_body[b"with attributes"].attributes == {"kind": string("batch")}
    assert q.receive(10) == []  # the third waits 900 s


def test_delete_entries_results_per_entry(broker: Any, name: str) -> None:
    """DeleteMessageBatch answers per entry: a bad handle fails alone (ReceiptHandleIsInvalid),
    the others are deleted (AWS API_DeleteMessageBatch: Successful / Failed lists)."""
    q = broker.create_queue(name)
    q.send_batch(["one", "two"])
    received = drain(q, 2, visibility_timeout=0)
    handles = [m.receipt_handle for m in received]
    results = q.delete_entries([handles[0], "not-a-handle", handles[1]])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ReceiptHandleIsInvalid)
    assert q.receive(10) == []


def test_change_visibility_entries_results_per_entry(broker: Any, name: str) -> None:
    """ChangeMessageVisibilityBatch answers per entry; the good entries take effect (AWS
    API_ChangeMessageVisibilityBatch)."""
    q = broker.create_queue(name)
    q.send_batch(["one", "two"])
    received = drain(q, 2)
    assert q.receive(10) == []
    results = q.change_visibility_entries(
        [(received[0].receipt_handle, 0), ("not-a-handle", 0), (received[1].receipt_handle, 0)]
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ReceiptHandleIsInvalid)
    again = drain(q, 2)
    assert sorted(m.body for m in again) == [b"one", b"two"]
    assert [m.receive_count for m in again] == [2, 2]


def test_delete_batch(broker: Any, name: str) -> None:
    q = broker.create_queue(name)
    q.send_batch([f"m{i}" for i in range(10)])
    received = drain(q, 10, visibility_timeout=0)
    assert len(received) == 10
    q.delete_batch([m.receipt_handle for m in received])
    assert q.receive(10) == []


def test_delay_seconds_per_message(broker: Any, name: str) -> None:
    """A message sent with DelaySeconds stays invisible that long, then arrives, waking a long
    poll that waits for it; a per-message DelaySeconds overrides the queue's, an explicit 0
    included (reference §1.6 Delay; moto#7372)."""
    q = broker.create_queue(name, {"DelaySeconds": "900"})
    q.send("queue default")  # 900 s: not seen in this test
    q.send("explicit zero", delay_seconds=0)
    sent = time.monotonic()
    q.send("one second", delay_seconds=1)
    assert bodies(drain(q, 1)) == ["explicit zero"]
    assert q.receive(10) == []
    (m,) = drain(q, 1, wait=5)
    assert m.body == b"one second"
    assert 0.9 <= time.monotonic() - sent < 3


def test_visibility_timeout_runs_out(broker: Any, name: str) -> None:
    """A received message is hidden for the visibility timeout, then received again with
    ApproximateReceiveCount 2, by a long poll that was waiting for it (AWS
    sqs-visibility-timeout.html)."""
    q = broker.create_queue(name)
    q.send("retry me")
    (first,) = drain(q, 1, visibility_timeout=1)
    hidden_at = time.monotonic()
    assert q.receive(10) == []
    (second,) = drain(q, 1, wait=5)
    assert 0.9 <= time.monotonic() - hidden_at < 3
    assert (second.message_id, second.receive_count) == (first.message_id, 2)


def test_change_visibility_zero_makes_message_visible(broker: Any, name: str) -> None:
    """ChangeMessageVisibility(0) makes an in-flight message visible at once; the next receive
    gets it with count 2 and a new receipt handle (reference §1.6 Visibility; every receive
    gives a new handle)."""
    q = broker.create_queue(name)
    q.send("put back")
    (first,) = drain(q, 1)
    assert q.receive(10) == []  # in flight for 30 s
    q.change_visibility(first.receipt_handle, 0)
    (second,) = drain(q, 1)
    assert (second.message_id, second.receive_count, second.body) == (
        first.message_id,
        2,
        b"put back",
    )
    assert second.receipt_handle != first.receipt_handle
    assert second.first_receive_timestamp == first.first_receive_timestamp


def test_changed_visibility_is_not_remembered(broker: Any, name: str) -> None:
    """A visibility set by ChangeMessageVisibility holds for that receive only: the next receive
    hides the message for the queue's VisibilityTimeout again (AWS
    API_ChangeMessageVisibility: "the new value isn't saved for subsequent receives";
    reference §1.6); SentTimestamp does not change across receives."""
    q = broker.create_queue(name)
    q.send("again")
    (first,) = drain(q, 1)
    q.change_visibility(first.receipt_handle, 0)
    (second,) = drain(q, 1)  # hidden for the queue's 30 s, not 0
    assert q.receive(10) == []
    assert second.sent_timestamp == first.sent_timestamp


def test_group_id_on_a_standard_queue(broker: Any, name: str) -> None:
    """A standard queue takes MessageGroupId since 2025-07 (fair queues) and returns it with
    the message (AWS API_SendMessage MessageGroupId; reference §1.6 Fair queues)."""
    q = broker.create_queue(name)
    q.send("tenant work", group_id="tenant-1")
    (m,) = drain(q, 1)
    assert m.group_id == "tenant-1"


def test_delete_twice_succeeds(broker: Any, name: str) -> None:
    """Deleting with the same receipt handle again succeeds (AWS-recorded: three deletes, all
    200; reference §1.6 Receipt handles) and the message does not come back."""
    q = broker.create_queue(name)
    q.send("once")
    (m,) = drain(q, 1, visibility_timeout=0)
    q.delete(m.receipt_handle)
    q.delete(m.receipt_handle)
    q.delete(m.receipt_handle)
    assert q.receive(10) == []


def test_older_receipt_handle_still_deletes(broker: Any, name: str) -> None:
    """On a standard queue the handle of an earlier receive still deletes the message
    (AWS-validated: receive, receive again, DeleteMessage with the old handle -> 200 and the
    message is gone; reference §1.6 Receipt handles)."""
    q = broker.create_queue(name)
    q.send("twice received")
    (first,) = drain(q, 1, visibility_timeout=0)
    (second,) = drain(q, 1, visibility_timeout=0)
    assert (second.message_id, second.receive_count) == (first.message_id, 2)
    q.delete(first.receipt_handle)
    assert q.receive(10) == []


def test_purge(broker: Any, name: str) -> None:
    """PurgeQueue deletes available, in-flight and delayed messages (reference §1.2
    PurgeQueue: "deletes available + in-flight"; AWS API_PurgeQueue: "Deletes available
    messages in a queue (including in-flight messages)")."""
    q = broker.create_queue(name)
    q.send_batch(["a", "b", "c", {"body": "later", "delay_seconds": 900}])
    assert len(drain(q, 1)) == 1  # one in flight
    q.purge()
    assert q.receive(10) == []
    attributes = q.get_attributes(
        ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    q.send("after the purge")
    assert bodies(drain(q, 1)) == ["after the purge"]


def test_approximate_counts(broker: Any, name: str) -> None:
    """ApproximateNumberOfMessages counts visible messages, ...NotVisible in-flight ones,
    ...Delayed delayed ones (reference §1.3; exact on a quiet queue of these backends)."""
    q = broker.create_queue(name)
    q.send_batch(["a", "b", "c", {"body": "later", "delay_seconds": 900}])
    drain(q, 1)
    assert q.get_attributes(
        [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
    ) == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesNotVisible": "1",
        "ApproximateNumberOfMessagesDelayed": "1",
    }


# -- message attributes and MD5 -----------------------------------------------------------------


ALL_TYPES = {
    "text": string("héllo wörld"),
    "my.attr-1_x": string("dots, hyphens and underscores in a name"),
    "label": string("tagged", "String.custom"),
    "int": number("42"),
    "float": number("-3.25", "Number.float"),
    "blob": binary(b"\x00\x01\xfe\xff"),
    "png": binary(b"\x89PNG\r\n", "Binary.png"),
}


def test_message_attributes_round_trip(broker: Any, name: str) -> None:
    """Every attribute type (String, Number, Binary, each with a custom label) comes back as
    sent, and MD5OfMessageAttributes is SQS's digest of them (reference §1.5; AWS
    sqs-message-metadata.html)."""
    q = broker.create_queue(name)
    q.send("typed", attributes=ALL_TYPES)
    (m,) = drain(q, 1)
    assert m.attributes == ALL_TYPES
    assert m.md5_of_message_attributes == md5_of_attributes(ALL_TYPES)


@pytest.mark.parametrize(
    ("attributes", "digest"),
    [
        pytest.param(
            {"MyAttribute": string("foobar")}, "adb59cd4678ea5a855436b949cd07ab6", id="one"
        ),
        pytest.param(
            {
                "General": string("Kenobi"),
                "Hello": string("There"),
                "Help.Me": string("Me"),
            },
            "4c360f3fdafd970e05fae2f149d997f5",
            id="three",
        ),
        pytest.param(
            {
                "attr1": binary(
                    b"traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01"
                )
            },
            "8cbe4db156db8a94db8b801b7addb984",
            id="binary",
        ),
    ],
)
def test_md5_of_message_attributes_aws_vectors(
    broker: Any, name: str, attributes: Any, digest: str
) -> None:
    """AWS-recorded MD5OfMessageAttributes digests (reference §1.5 "Verified test vectors")."""
    q = broker.create_queue(name)
    q.send("foobar", attributes=attributes)
    (m,) = drain(q, 1)
    assert m.md5_of_message_attributes == digest
    assert m.md5_of_body == "3858f62230ac3c915f300c664312c63f"


def test_ten_attributes_allowed(broker: Any, name: str) -> None:
    """Up to 10 message attributes (reference §1.5)."""
    q = broker.create_queue(name)
    attributes = {f"a{i}": string(str(i)) for i in range(10)}
    q.send("ten", attributes=attributes)
    (m,) = drain(q, 1)
    assert m.attributes == attributes


# -- receiving ------------------------------------------------------------------------------------


def test_long_poll_returns_when_a_message_is_sent(broker: Any, name: str) -> None:
    """A long poll returns as soon as a message arrives, not at the end of WaitTimeSeconds
    (AWS sqs-short-and-long-polling.html; reference §1.6 Long polling)."""
    q = broker.create_queue(name)
    assert bodies(receive_woken_by(q, lambda: q.send("woken"))) == ["woken"]


def test_long_poll_wait_from_queue_attribute(broker: Any, name: str) -> None:
    """A receive that gives no WaitTimeSeconds long-polls for the queue's
    ReceiveMessageWaitTimeSeconds (reference §1.3: "queue default for long polling when
    request omits WaitTimeSeconds")."""
    q = broker.create_queue(name, {"ReceiveMessageWaitTimeSeconds": "10"})
    got = receive_woken_by(q, lambda: q.send("by default"), wait_seconds=None)
    assert bodies(got) == ["by default"]


def test_long_poll_returns_when_a_message_becomes_visible(broker: Any, name: str) -> None:
    """A message made visible by ChangeMessageVisibility(0) is "available": a waiting long
    poll returns it at once (AWS sqs-short-and-long-polling.html: long polling returns "as
    soon as a message is available")."""
    q = broker.create_queue(name)
    q.send("back")
    (m,) = drain(q, 1)
    got = receive_woken_by(q, lambda: q.change_visibility(m.receipt_handle, 0))
    assert [(g.message_id, g.receive_count) for g in got] == [(m.message_id, 2)]


def test_long_poll_times_out_empty(broker: Any, name: str) -> None:
    """With nothing to receive, a long poll waits WaitTimeSeconds and returns no messages."""
    q = broker.create_queue(name)
    started = time.monotonic()
    assert q.receive(1, wait_seconds=1) == []
    assert 0.9 <= time.monotonic() - started < 5


def test_max_messages(broker: Any, name: str) -> None:
    """ReceiveMessage returns at most MaxNumberOfMessages (fewer may come); every message is
    delivered once while none is made visible again (AWS API_ReceiveMessage)."""
    q = broker.create_queue(name)
    sent = {f"m{i}" for i in range(15)}
    q.send_batch(sorted(sent)[:10])
    q.send_batch(sorted(sent)[10:])
    first = q.receive(3, wait_seconds=2)
    assert 1 <= len(first) <= 3
    rest = drain(q, 15 - len(first))
    assert len(first) + len(rest) == 15
    assert set(bodies(first + rest)) == sent


# -- dead-letter queues ---------------------------------------------------------------------------


def _redrive(dlq: Any, max_receive_count: int) -> dict[str, str]:
    return {
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
        )
    }


def _dead_letter(broker: Any, name: str) -> tuple[Any, Any, str]:
    """A message received past maxReceiveCount 2: (source queue, the dead letter, its id)."""
    dlq = broker.create_queue(name + "-dlq")
    q = broker.create_queue(name, _redrive(dlq, 2))
    message_id = q.send("poison")
    counts = [m.receive_count for m in drain(q, 1, visibility_timeout=0)]
    counts += [m.receive_count for m in drain(q, 1, visibility_timeout=0)]
    assert counts == [1, 2]
    assert q.receive(10, visibility_timeout=0) == []  # the third receive moves it
    (dead,) = drain(dlq, 1)
    return q, dead, message_id


def test_dead_letter_queue_after_max_receive_count(broker: Any, name: str) -> None:
    """When a message's receive count would pass maxReceiveCount, SQS moves it to the
    deadLetterTargetArn queue instead of returning it (AWS sqs-dead-letter-queues.html; CDK
    DeadLetterQueue "moves messages after the value of maxReceiveCount is exceeded"); the
    moved message keeps its id and body."""
    q, dead, message_id = _dead_letter(broker, name)
    assert (dead.message_id, dead.body) == (message_id, b"poison")
    assert q.receive(10) == []


@requires("sqs-dlq-source-arn")
def test_dead_letter_source_arn(broker: Any, name: str) -> None:
    """A dead letter carries the DeadLetterQueueSourceArn system attribute: the ARN of the
    queue it was moved from (reference §1.4, enum since 2023-06)."""
    q, dead, _ = _dead_letter(broker, name)
    assert dead.dead_letter_source_arn == q.arn


def test_redrive_policy_attribute(broker: Any, name: str) -> None:
    """RedrivePolicy reads back as the JSON it was set to (reference §1.3)."""
    dlq = broker.create_queue(name + "-dlq")
    q = broker.create_queue(name)
    q.set_attributes(_redrive(dlq, 5))
    policy = json.loads(q.get_attributes(["RedrivePolicy"])["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == dlq.arn
    assert int(policy["maxReceiveCount"]) == 5


def test_list_dead_letter_source_queues(broker: Any, name: str) -> None:
    """ListDeadLetterSourceQueues lists the queues whose RedrivePolicy targets the queue (AWS
    API_ListDeadLetterSourceQueues)."""
    dlq = broker.create_queue(name + "-dlq")
    broker.create_queue(name + "-a", _redrive(dlq, 3))
    broker.create_queue(name + "-b").set_attributes(_redrive(dlq, 3))
    broker.create_queue(name + "-c")
    assert set(broker.list_dead_letter_source_queues(name + "-dlq")) == {name + "-a", name + "-b"}
    assert broker.list_dead_letter_source_queues(name + "-c") == []


# -- tags -----------------------------------------------------------------------------------------


def test_tags(broker: Any, name: str) -> None:
    """CreateQueue tags, TagQueue adds or replaces, UntagQueue removes (missing keys ignored),
    ListQueueTags reads (AWS sqs-queue-tags.html)."""
    q = broker.create_queue(name, tags={"team": "pond", "env": "test"})
    assert q.tags() == {"team": "pond", "env": "test"}
    q.tag({"env": "prod", "cost": "42"})
    assert q.tags() == {"team": "pond", "env": "prod", "cost": "42"}
    q.untag(["team", "no-such-key"])
    assert q.tags() == {"env": "prod", "cost": "42"}
    assert broker.queue(name).tags() == {"env": "prod", "cost": "42"}

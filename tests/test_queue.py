"""SQS standard-queue semantics through the embedded API, driven by a manual clock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time

import pytest

import millpond
from millpond import errors


def depth(q: millpond.Queue) -> tuple[int, int, int]:
    a = q.get_attributes()
    return (
        int(a["ApproximateNumberOfMessages"]),
        int(a["ApproximateNumberOfMessagesNotVisible"]),
        int(a["ApproximateNumberOfMessagesDelayed"]),
    )


# -- queues ------------------------------------------------------------------------------------


def test_new_queue_has_the_sqs_defaults(broker, clock):
    q = broker.create_queue("jobs")
    assert q.get_attributes() == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesDelayed": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
        "CreatedTimestamp": str(clock.now_ms() // 1000),
        "DelaySeconds": "0",
        "LastModifiedTimestamp": str(clock.now_ms() // 1000),
        "MaximumMessageSize": "1048576",
        "MessageRetentionPeriod": "345600",
        "QueueArn": "arn:aws:sqs:us-east-1:123456789012:jobs",
        "ReceiveMessageWaitTimeSeconds": "0",
        "SqsManagedSseEnabled": "true",
        "VisibilityTimeout": "30",
    }
    assert q.get_attributes(["VisibilityTimeout", "QueueArn"]) == {
        "VisibilityTimeout": "30",
        "QueueArn": "arn:aws:sqs:us-east-1:123456789012:jobs",
    }


def test_create_queue_is_idempotent_unless_an_attribute_differs(broker):
    q = broker.create_queue("jobs", {"VisibilityTimeout": 60})
    assert broker.create_queue("jobs", {"VisibilityTimeout": "60"}) is q
    assert broker.create_queue("jobs") is q
    with pytest.raises(errors.QueueAlreadyExists, match="attribute VisibilityTimeout"):
        broker.create_queue("jobs", {"VisibilityTimeout": "61"})
    with pytest.raises(errors.QueueAlreadyExists, match="DelaySeconds"):
        broker.create_queue("jobs", {"DelaySeconds": "5"})


def test_sse_kms_and_sse_sqs_exclude_each_other(broker):
    both = {"KmsMasterKeyId": "alias/aws/sqs", "SqsManagedSseEnabled": "true"}
    with pytest.raises(errors.InvalidAttributeName, match="one type of server-side encryption"):
        broker.create_queue("q", both)
    assert broker.list_queues() == []
    q = broker.create_queue("q")
    assert q.get_attributes(["SqsManagedSseEnabled"]) == {"SqsManagedSseEnabled": "true"}
    with pytest.raises(errors.InvalidAttributeName, match="one type of server-side encryption"):
        q.set_attributes(both)
    q.set_attributes({"KmsMasterKeyId": "alias/aws/sqs"})  # SSE-KMS replaces SSE-SQS
    attributes = q.get_attributes(["KmsMasterKeyId", "SqsManagedSseEnabled"])
    assert attributes == {"KmsMasterKeyId": "alias/aws/sqs", "SqsManagedSseEnabled": "false"}
    assert broker.create_queue("q", {"KmsMasterKeyId": "alias/aws/sqs"}) is q
    q.set_attributes({"SqsManagedSseEnabled": "true"})  # and back: the KMS key goes
    assert "KmsMasterKeyId" not in q.get_attributes()
    assert q.get_attributes(["SqsManagedSseEnabled"]) == {"SqsManagedSseEnabled": "true"}


@pytest.mark.parametrize("policy", ["not json", "[]", '{"Version": "2012-10-17"}'])
def test_a_policy_that_is_no_policy_document_is_refused(broker, policy):
    q = broker.create_queue("q")
    with pytest.raises(
        errors.InvalidAttributeValue, match="^Invalid value for the parameter Policy"
    ):
        q.set_attributes({"Policy": policy})
    assert "Policy" not in q.get_attributes()


def test_attributes_sqs_leaves_out_until_set(broker):
    standard = broker.create_queue("plain", {"FifoQueue": "false"})
    assert "FifoQueue" not in standard.get_attributes()  # a standard queue shows no FifoQueue
    assert broker.create_queue("plain", {"FifoQueue": False}) is standard
    # KMS: the data key reuse period shows (300 s by default) once a key is set
    assert "KmsDataKeyReusePeriodSeconds" not in standard.get_attributes()
    assert broker.create_queue("plain", {"KmsDataKeyReusePeriodSeconds": 300}) is standard
    standard.set_attributes({"KmsMasterKeyId": "alias/aws/sqs"})
    assert standard.get_attributes(["KmsDataKeyReusePeriodSeconds"]) == {
        "KmsDataKeyReusePeriodSeconds": "300"
    }
    # a policy set to "" is removed, not shown empty
    standard.set_attributes({"Policy": '{"Version": "2012-10-17", "Statement": []}'})
    assert "Policy" in standard.get_attributes()
    standard.set_attributes({"Policy": ""})
    assert "Policy" not in standard.get_attributes()


@pytest.mark.parametrize(
    "attributes, error, phrase",
    [
        ({"VisibilityTimeout": 43_201}, errors.InvalidAttributeValue, "VisibilityTimeout"),
        ({"VisibilityTimeout": -1}, errors.InvalidAttributeValue, "VisibilityTimeout"),
        ({"DelaySeconds": 901}, errors.InvalidAttributeValue, "DelaySeconds"),
        ({"MessageRetentionPeriod": 59}, errors.InvalidAttributeValue, "MessageRetentionPeriod"),
        ({"MessageRetentionPeriod": 1_209_601}, errors.InvalidAttributeValue, "Retention"),
        ({"MaximumMessageSize": 1023}, errors.InvalidAttributeValue, "MaximumMessageSize"),
        ({"MaximumMessageSize": 1_048_577}, errors.InvalidAttributeValue, "MaximumMessageSize"),
        ({"ReceiveMessageWaitTimeSeconds": 21}, errors.InvalidAttributeValue, "WaitTime"),
        ({"VisibilityTimeout": "ten"}, errors.InvalidAttributeValue, "VisibilityTimeout"),
        ({"VisibilityTimeout": True}, errors.InvalidAttributeValue, "VisibilityTimeout"),
        ({"DelaySeconds": "\u00b2"}, errors.InvalidAttributeValue, "DelaySeconds"),  # a digit
        ({"DelaySeconds": "--5"}, errors.InvalidAttributeValue, "DelaySeconds"),
        ({"SqsManagedSseEnabled": "yes"}, errors.InvalidAttributeValue, "SqsManagedSseEnabled"),
        ({"Bogus": "1"}, errors.InvalidAttributeName, "Unknown Attribute Bogus"),
        ({"QueueArn": "x"}, errors.InvalidAttributeName, "QueueArn"),
        ({"ContentBasedDeduplication": "true"}, errors.InvalidAttributeName, "ContentBased"),
        ({"RedrivePolicy": "{not json"}, errors.InvalidAttributeValue, "RedrivePolicy"),
        (
            {
                "RedrivePolicy": '{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:d", '
                '"maxReceiveCount": 0}'
            },
            errors.InvalidParameterValue,  # SQS's code for a bad RedrivePolicy
            "maxReceiveCount",
        ),
    ],
)
def test_bad_queue_attributes_are_refused_and_create_nothing(broker, attributes, error, phrase):
    with pytest.raises(error, match=phrase):
        broker.create_queue("jobs", attributes)
    assert broker.list_queues() == []
    assert isinstance(errors.InvalidAttributeValue(""), errors.MillpondError)


@pytest.mark.parametrize("name", ["", "a" * 81, "has space", "dot.ted", "ü", None])
def test_bad_queue_names_are_refused(broker, name):
    with pytest.raises(errors.InvalidParameterValue, match="alphanumeric"):
        broker.create_queue(name)


def test_list_delete_and_unknown_queues(broker):
    for name in ("alpha", "alpine", "beta"):
        broker.create_queue(name)
    assert broker.list_queues() == ["alpha", "alpine", "beta"]
    assert broker.list_queues("alp") == ["alpha", "alpine"]
    q = broker.queue("beta")
    q.send("x")
    broker.delete_queue("beta")
    assert broker.list_queues() == ["alpha", "alpine"]
    with pytest.raises(errors.QueueDoesNotExist):
        broker.queue("beta")
    with pytest.raises(errors.QueueDoesNotExist):
        q.send("y")
    with pytest.raises(errors.QueueDoesNotExist):
        broker.delete_queue("beta")
    # A new queue of the same name starts empty; old handles do not reach it.
    q2 = broker.create_queue("beta")
    assert q2.receive(10) == []


def test_set_attributes_takes_effect_and_updates_last_modified(queue, clock):
    clock.advance(100)
    queue.set_attributes({"VisibilityTimeout": "5", "DelaySeconds": 2})
    attrs = queue.get_attributes()
    assert attrs["VisibilityTimeout"] == "5" and attrs["DelaySeconds"] == "2"
    assert int(attrs["LastModifiedTimestamp"]) == int(attrs["CreatedTimestamp"]) + 100
    queue.send("x")
    assert queue.receive() == []
    clock.advance(2)
    assert len(queue.receive()) == 1
    clock.advance(5)
    assert len(queue.receive()) == 1
    # AWS-validated: test_set_unsupported_attribute_fifo (a standard queue has no FifoQueue)
    with pytest.raises(errors.InvalidAttributeName, match=r"^Unknown Attribute FifoQueue\.$"):
        queue.set_attributes({"FifoQueue": "true"})


# -- send / receive / delete -------------------------------------------------------------------


def test_round_trip_of_bodies_and_attributes(queue, clock):
    attributes = {
        "s": {"DataType": "String", "StringValue": "héllo"},
        "n": {"DataType": "Number.float", "StringValue": "3.25"},
        "b": {"DataType": "Binary.png", "BinaryValue": b"\x00\x01\xff"},
    }
    id1 = queue.send("text ü", attributes=attributes)
    id2 = queue.send(b"\x00bytes\xff")
    messages = queue.receive(10)
    assert [m.message_id for m in messages] == [id1, id2]
    assert messages[0].body == "text ü".encode() and messages[0].text == "text ü"
    assert messages[0].attributes == attributes
    assert messages[1].body == b"\x00bytes\xff" and messages[1].attributes == {}
    assert messages[0].sent_timestamp == clock.now_ms()
    assert messages[1].md5_of_body == hashlib.md5(b"\x00bytes\xff").hexdigest()
    assert len({id1, id2}) == 2


def test_receive_hides_until_the_visibility_timeout_and_counts_receives(queue, clock):
    queue.send("a")
    first = queue.receive()
    assert first[0].receive_count == 1
    assert first[0].first_receive_timestamp == clock.now_ms()
    assert queue.receive() == []
    assert depth(queue) == (0, 1, 0)
    clock.advance(29.999)
    assert queue.receive() == []
    t_first = clock.now_ms() - 29_999
    clock.advance(0.001)
    again = queue.receive(visibility_timeout=100)
    assert again[0].receive_count == 2
    assert again[0].first_receive_timestamp == t_first
    assert again[0].receipt_handle != first[0].receipt_handle
    clock.advance(99)
    assert queue.receive() == []
    clock.advance(1)
    assert queue.receive()[0].receive_count == 3


def test_receive_returns_at_most_max_messages_and_validates_it(queue):
    queue.send_batch([f"m{i}" for i in range(10)])
    queue.send_batch([f"m{i}" for i in range(10, 15)])
    assert len(queue.receive(3)) == 3
    assert len(queue.receive(10)) == 10
    assert len(queue.receive(10)) == 2
    for bad in (0, 11, -1, "2", 2.0):
        with pytest.raises(errors.InvalidParameterValue, match="MaxNumberOfMessages"):
            queue.receive(bad)
    with pytest.raises(errors.InvalidParameterValue, match="VisibilityTimeout"):
        queue.receive(visibility_timeout=43_201)
    with pytest.raises(errors.InvalidParameterValue, match="WaitTimeSeconds"):
        queue.receive(wait_seconds=21)


def test_delay_queue_default_and_per_message_override_including_zero(broker, clock):
    q = broker.create_queue("delayed", {"DelaySeconds": 10})
    q.send("default")
    q.send("zero", delay_seconds=0)
    q.send("long", delay_seconds=900)
    (zero,) = q.receive(10)
    assert zero.text == "zero"
    assert depth(q) == (0, 1, 2)
    q.delete(zero.receipt_handle)
    clock.advance(10)
    (default,) = q.receive(10)
    assert default.text == "default"
    q.delete(default.receipt_handle)
    clock.advance(889)
    assert q.receive(10) == []
    clock.advance(1)
    assert [m.text for m in q.receive(10)] == ["long"]
    for bad in (-1, 901, "5", 1.5):
        with pytest.raises(errors.InvalidParameterValue, match="DelaySeconds"):
            q.send("x", delay_seconds=bad)


def test_delete_is_final_idempotent_and_accepts_an_older_handle(queue, clock):
    queue.send("a")
    old = queue.receive(visibility_timeout=1)[0]
    clock.advance(2)
    new = queue.receive()[0]
    assert new.message_id == old.message_id
    queue.delete(old.receipt_handle)  # standard queues: an older handle still deletes
    queue.delete(old.receipt_handle)
    queue.delete(new.receipt_handle)
    clock.advance(3600)
    assert queue.receive(10) == []
    assert depth(queue) == (0, 0, 0)


def test_delete_batch_checks_every_handle_before_deleting_any(queue):
    queue.send_batch(["a", "b"])
    handles = [m.receipt_handle for m in queue.receive(10)]
    with pytest.raises(errors.ReceiptHandleIsInvalid, match='"garbage"'):
        queue.delete_batch([handles[0], "garbage"])
    assert depth(queue) == (0, 2, 0)
    queue.delete_batch(handles)
    assert depth(queue) == (0, 0, 0)
    with pytest.raises(errors.TooManyEntriesInBatchRequest):
        queue.delete_batch(handles * 6)
    with pytest.raises(errors.EmptyBatchRequest):
        queue.delete_batch([])


@pytest.mark.parametrize("bad", ["\ud800" * 38, "é" * 38, "x" * 37, "x" * 39])
def test_handles_that_are_not_38_ascii_characters_are_invalid(queue, bad):
    queue.send("a")
    (m,) = queue.receive()
    for call in (
        lambda: queue.delete(bad),
        lambda: queue.delete_batch([m.receipt_handle, bad]),
        lambda: queue.change_visibility(bad, 10),
    ):
        with pytest.raises(errors.ReceiptHandleIsInvalid):
            call()
    assert depth(queue) == (0, 1, 0)  # nothing deleted, not even the good handle's message


def test_handles_of_another_queue_or_directory_are_invalid(broker, queue, tmp_path, impl):
    other = broker.create_queue("other")
    other.send("x")
    handle = other.receive()[0].receipt_handle
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        queue.delete(handle)
    with millpond.open(str(tmp_path / "elsewhere"), durability="os", core=impl) as b2:
        q2 = b2.create_queue("other")
        with pytest.raises(errors.ReceiptHandleIsInvalid):
            q2.delete(handle)


def test_change_visibility(queue, clock):
    queue.send("a")
    m = queue.receive(visibility_timeout=60)[0]
    queue.change_visibility(m.receipt_handle, 120)
    clock.advance(119)
    assert queue.receive() == []
    clock.advance(1)
    m2 = queue.receive()[0]
    # the new value is not remembered for the next receive: the queue default (30 s) applies
    clock.advance(30)
    m3 = queue.receive()[0]
    queue.change_visibility(m3.receipt_handle, 0)  # visible at once
    m4 = queue.receive()[0]
    assert m4.receive_count == m2.receive_count + 2
    # a newer receive holds it: the older handle re-times that delivery (AWS-validated:
    # LocalStack's test_terminate_visibility_timeout_after_receive)
    queue.change_visibility(m3.receipt_handle, 0)
    m4 = queue.receive()[0]
    queue.delete(m4.receipt_handle)
    with pytest.raises(errors.InvalidParameterValue, match="Message does not exist"):
        queue.change_visibility(m4.receipt_handle, 10)
    with pytest.raises(errors.InvalidParameterValue, match="VisibilityTimeout"):
        queue.change_visibility(m4.receipt_handle, 43_201)
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        queue.change_visibility("nope", 10)


def test_change_visibility_of_a_visible_message_and_the_12_hour_limit(queue, clock):
    queue.send("a")
    m = queue.receive(visibility_timeout=10)[0]
    clock.advance(11)
    # AWS-validated: test_change_message_visibility_after_visibility_timeout_expiration (200 OK)
    queue.change_visibility(m.receipt_handle, 10)  # visible again: a no-op, not an error
    assert (
        queue.get_attributes(["ApproximateNumberOfMessages"])["ApproximateNumberOfMessages"] == "1"
    )
    m = queue.receive(visibility_timeout=43_200)[0]
    clock.advance(3600)
    with pytest.raises(errors.InvalidParameterValue, match=r"beyond the limit \[43200 seconds\]"):
        queue.change_visibility(m.receipt_handle, 43_200 - 3599)
    queue.change_visibility(m.receipt_handle, 43_200 - 3600)  # exactly 12 h after the receive


# -- sizes and attributes ------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["a\x00b", "bell\x07", "\ufffe", "lone \ud800 surrogate"])
def test_text_bodies_outside_the_sqs_character_set_are_refused(queue, body):
    with pytest.raises(errors.InvalidMessageContents):
        queue.send(body)
    with pytest.raises(errors.InvalidMessageContents):
        queue.send_batch(["fine", body])
    assert depth(queue) == (0, 0, 0)  # nothing stored, not even the good entry of the batch
    queue.send("tab\t newline\n cr\r é \U0001f600")  # all inside the set
    assert depth(queue) == (1, 0, 0)


def test_body_size_limit_counts_attributes_and_follows_the_queue_setting(queue, broker):
    queue.send(b"x" * 1_048_576)
    with pytest.raises(errors.MessageTooLong) as too_long:
        queue.send(b"x" * 1_048_577)
    assert str(too_long.value) == (  # AWS's text
        "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes."
    )
    attrs = {"k": {"DataType": "String", "StringValue": "v"}}  # 1 + 6 + 1 = 8 bytes
    queue.send(b"x" * (1_048_576 - 8), attributes=attrs)
    with pytest.raises(errors.MessageTooLong):
        queue.send(b"x" * (1_048_576 - 7), attributes=attrs)
    small = broker.create_queue("small", {"MaximumMessageSize": 1024})
    small.send(b"x" * 1024)
    with pytest.raises(errors.MessageTooLong, match="shorter than 1024"):
        small.send(b"x" * 1025)
    with pytest.raises(errors.MissingParameter):
        queue.send(b"")
    with pytest.raises(errors.InvalidParameterValue, match="bytes or str"):
        queue.send(12)  # type: ignore[arg-type]
    assert depth(queue) == (2, 0, 0)


def test_bad_message_attributes_store_nothing(queue):
    eleven = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}
    with pytest.raises(errors.InvalidParameterValue, match="exceeds the allowed maximum"):
        queue.send("x", attributes=eleven)
    with pytest.raises(errors.InvalidParameterValue):
        queue.send("x", attributes={"a": {"DataType": "String", "StringValue": ""}})
    with pytest.raises(errors.InvalidParameterValue):
        queue.send("x", attributes={"AWS.x": {"DataType": "String", "StringValue": "v"}})
    with pytest.raises(errors.InvalidParameterValue):
        queue.send_batch(["ok", {"body": "x", "attributes": eleven}])
    assert depth(queue) == (0, 0, 0)


def test_send_batch_shapes_and_limits(queue, clock):
    ids = queue.send_batch(
        [
            "a",
            b"b",
            {
                "body": "c",
                "delay_seconds": 5,
                "attributes": {"k": {"DataType": "Number", "StringValue": "1"}},
            },
        ]
    )
    assert len(set(ids)) == 3
    got = queue.receive(10)
    assert [m.message_id for m in got] == ids[:2]
    clock.advance(5)
    (c,) = queue.receive(10)
    assert c.message_id == ids[2] and c.attributes["k"]["StringValue"] == "1"
    with pytest.raises(errors.TooManyEntriesInBatchRequest, match="You have sent 11"):
        queue.send_batch(["x"] * 11)
    with pytest.raises(errors.EmptyBatchRequest):
        queue.send_batch([])
    with pytest.raises(errors.BatchRequestTooLong):
        queue.send_batch([b"x" * 600_000, b"y" * 600_000])
    assert depth(queue) == (0, 3, 0)


# -- retention, purge --------------------------------------------------------------------------


def test_messages_past_retention_are_never_delivered_and_removed(broker, clock):
    q = broker.create_queue("short", {"MessageRetentionPeriod": 60})
    q.send("old")
    clock.advance(30)
    q.send("young")
    q.send("delayed", delay_seconds=100)
    m = q.receive(visibility_timeout=1000)  # "old" goes in flight
    assert [x.text for x in m] == ["old"]
    clock.advance(31)  # old: 61 s; young: 31 s
    assert depth(q) == (1, 0, 1)
    assert [x.text for x in q.receive(10)] == ["young"]
    clock.advance(200)
    assert q.receive(10) == []
    assert depth(q) == (0, 0, 0)
    q.delete(m[0].receipt_handle)  # deleting an expired message is not an error


def test_purge_removes_everything_once_per_minute(queue, clock):
    queue.send_batch(["a", "b", "c"])
    queue.send("d", delay_seconds=60)
    queue.receive()
    queue.purge()
    assert depth(queue) == (0, 0, 0)
    queue.send("e")
    clock.advance(59)
    with pytest.raises(errors.PurgeQueueInProgress, match="every 60 seconds"):
        queue.purge()
    assert depth(queue) == (1, 0, 0)
    clock.advance(1)
    queue.purge()
    assert depth(queue) == (0, 0, 0)
    clock.advance(120)
    assert queue.receive(10) == []


# -- long polling ------------------------------------------------------------------------------


def test_long_poll_returns_when_another_thread_sends(queue):
    results: list[list[millpond.Message]] = []
    started = threading.Event()

    def poll() -> None:
        started.set()
        results.append(queue.receive(10, wait_seconds=20))

    t = threading.Thread(target=poll)
    t0 = time.monotonic()
    t.start()
    started.wait()
    time.sleep(0.05)  # let it block first; not waiting for a timeout
    queue.send("wake")
    t.join(timeout=10)
    assert not t.is_alive(), "the long poll did not return after the send"
    assert [m.text for m in results[0]] == ["wake"]
    assert time.monotonic() - t0 < 10


def test_long_poll_wakes_when_the_clock_makes_a_message_visible(queue, clock):
    queue.send("later", delay_seconds=30)
    results: list[list[millpond.Message]] = []
    t = threading.Thread(target=lambda: results.append(queue.receive(wait_seconds=20)))
    t.start()
    time.sleep(0.05)
    clock.advance(30)
    t.join(timeout=10)
    assert not t.is_alive() and [m.text for m in results[0]] == ["later"]


def test_long_poll_wakes_when_a_visibility_change_brings_a_message_forward(tmp_path, impl):
    # A poll sleeps until the next visibility time it saw; shortening a message's visibility
    # must wake it (SQS answers a long poll as soon as a message is available). Real clock.
    with millpond.open(tmp_path / "real", durability="os", core=impl) as broker:
        queue = broker.create_queue("q")
        queue.send("hidden")
        (received,) = queue.receive(visibility_timeout=30)
        results: list[list[millpond.Message]] = []
        t = threading.Thread(target=lambda: results.append(queue.receive(wait_seconds=15)))
        t0 = time.monotonic()
        t.start()
        time.sleep(0.2)  # let it block first
        queue.change_visibility(received.receipt_handle, 1)
        t.join(timeout=10)
        assert not t.is_alive() and [m.text for m in results[0]] == ["hidden"]
        assert time.monotonic() - t0 < 5  # about 1 s, not the poll's 15


def test_long_poll_ends_empty_after_the_wait(queue):
    t0 = time.monotonic()
    assert queue.receive(wait_seconds=1) == []
    assert time.monotonic() - t0 >= 0.95


def test_queue_default_wait_applies(broker):
    q = broker.create_queue("lp", {"ReceiveMessageWaitTimeSeconds": 1})
    t0 = time.monotonic()
    assert q.receive() == []
    assert time.monotonic() - t0 >= 0.95
    t0 = time.monotonic()
    assert q.receive(wait_seconds=0) == []
    assert time.monotonic() - t0 < 0.5


def test_heartbeats_extend_visibility_with_one_handle_and_delete_still_works(queue, clock):
    queue.send("long job")
    (m,) = queue.receive(visibility_timeout=120)
    for _ in range(5):  # extend by 2 minutes every minute, as the SQS docs suggest
        clock.advance(60)
        queue.change_visibility(m.receipt_handle, 120)
        assert queue.receive() == []
    queue.delete(m.receipt_handle)
    clock.advance(3600)
    assert queue.receive() == [] and depth(queue) == (0, 0, 0)


def test_tags(broker):
    q = broker.create_queue("tagged", tags={"team": "a"})
    assert q.tags() == {"team": "a"}
    q.tag({"env": "prod", "team": "b"})
    assert q.tags() == {"team": "b", "env": "prod"}
    q.untag(["team", "missing"])
    assert broker.queue("tagged").tags() == {"env": "prod"}
    with pytest.raises(errors.InvalidParameterValue, match="Too many tags"):
        q.tag({f"k{i}": "v" for i in range(50)})
    assert q.tags() == {"env": "prod"}


def _format_1_directory(path):
    """A data directory as the millpond before storage format 2 left it (one queue)."""
    import lmdb
    import msgpack

    with millpond.open(path) as broker:
        broker.create_queue("kept").send("x")
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        identity = msgpack.unpackb(txn.get(b"env"))
        identity["format"] = 1  # as the millpond before fresh messages lived in the log alone
        txn.put(b"env", msgpack.packb(identity))
    env.close()


def test_a_data_directory_of_another_storage_format_is_refused_and_left_alone(tmp_path):
    _format_1_directory(tmp_path)
    for _ in range(2):  # refused each time: the failed open released the directory
        with pytest.raises(errors.IncompatibleDataFormat, match="storage format 1"):
            millpond.open(tmp_path)


def test_the_cli_refuses_another_storage_format_with_its_message_not_a_traceback(tmp_path, capsys):
    from millpond import cli

    _format_1_directory(tmp_path / "demo")
    assert cli.main(["demo", "--data", str(tmp_path / "demo"), "--messages", "10"]) == 1
    _format_1_directory(tmp_path / "served" / "us-east-1")  # the default region's directory
    # serve opens it before listening, so it stops here instead of failing every request
    assert cli.main(["serve", "--data", str(tmp_path / "served"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("storage format 1") == 2 and "Traceback" not in err


def test_the_demo_piped_into_a_reader_that_went_away_ends_quietly(tmp_path):
    """`millpond demo | head -1`: output to a closed pipe ends the demo, with no error message."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: every write fails with EPIPE
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "millpond.cli", "demo", "--data", str(tmp_path / "d")]
            + ["--messages", "200", "--durability", "os"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert demo.stderr == b"", demo.stderr.decode()
    assert demo.returncode == 1


def test_queue_counters_count_from_zero_with_a_dicts_own_item_assignment(
    broker: millpond.Broker,
) -> None:
    q = broker.create_queue("counted")
    q.send(b"a")
    q.send_batch([b"b", b"c"])
    assert q.counters["sent"] == 3
    assert q.counters["never_counted"] == 0
    assert "never_counted" not in q.counters  # reading a count does not add it
    q.counters["empty_receives"] += 1
    assert q.counters["empty_receives"] == 1
    # Counts are bumped after every commit: collections.Counter's Python __delitem__ would send
    # each += through CPython's generic (~15x slower) item-assignment slot.
    assert type(q.counters).__setitem__ is dict.__setitem__
    assert type(q.counters).__delitem__ is dict.__delitem__

"""Dead-letter queues, redrive policies and message move tasks."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

import millpond
from millpond import errors


def redrive(target: millpond.Queue, max_count: int) -> dict[str, str]:
    return {
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": target.arn, "maxReceiveCount": max_count}
        )
    }


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_message_moves_to_the_dead_letter_queue_after_max_receives(broker, clock):
    dlq = broker.create_queue("dlq")
    q = broker.create_queue("work", redrive(dlq, 2))
    message_id = q.send("poison", attributes={"k": {"DataType": "String", "StringValue": "v"}})
    sent_at = clock.now_ms()
    for expected_count in (1, 2):
        (m,) = q.receive(visibility_timeout=0)
        assert m.receive_count == expected_count
    clock.advance(1)
    assert q.receive(10) == []  # the third receive moved it instead of delivering it
    assert q.get_attributes()["ApproximateNumberOfMessages"] == "0"
    (dead,) = dlq.receive()
    # the same message id in the dead-letter queue: AWS-validated, LocalStack's
    # tests/aws/services/sqs/test_sqs.py test_dead_letter_queue_max_receive_count
    assert dead.message_id == message_id and dead.text == "poison"
    assert dead.sent_timestamp == sent_at
    assert dead.attributes == {"k": {"DataType": "String", "StringValue": "v"}}
    assert dead.receive_count == 3  # the count goes on in the dead-letter queue
    assert dead.dead_letter_source_arn == q.arn
    assert broker.list_dead_letter_source_queues("dlq") == ["work"]


def test_healthy_messages_are_delivered_in_the_same_receive(broker, clock):
    dlq = broker.create_queue("dlq")
    q = broker.create_queue("work", redrive(dlq, 1))
    q.send("bad")
    q.receive(visibility_timeout=0)
    q.send("good")
    assert [m.text for m in q.receive(10)] == ["good"]
    assert [m.text for m in dlq.receive(10)] == ["bad"]


@pytest.mark.parametrize(
    "policy, phrase",
    [
        (
            {
                "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:nope",
                "maxReceiveCount": 3,
            },
            "does not exist",
        ),
        (
            {"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:dlq", "maxReceiveCount": 3},
            "Invalid value for deadLetterTargetArn",  # another region's queue
        ),
        (
            {"deadLetterTargetArn": "not-an-arn", "maxReceiveCount": 3},
            "Invalid value for deadLetterTargetArn",
        ),
        (
            {
                "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq",
                "maxReceiveCount": 1001,
            },
            "maxReceiveCount",
        ),
        ({"maxReceiveCount": 3}, "mandatory attribute: deadLetterTargetArn"),
        ({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"}, "maxReceiveCount"),
    ],
)
def test_bad_redrive_policies_are_refused(broker, policy, phrase):
    # SQS: InvalidParameterValue (not InvalidAttributeValue), the policy echoed in the message
    broker.create_queue("dlq")
    text = json.dumps(policy)
    with pytest.raises(errors.InvalidParameterValue, match=phrase) as refused:
        broker.create_queue("work", {"RedrivePolicy": text})
    assert str(refused.value).startswith(f"Value {text} for parameter RedrivePolicy is invalid.")
    assert broker.list_queues() == ["dlq"]


def test_redrive_allow_policy_is_enforced(broker):
    deny = broker.create_queue("deny", {"RedriveAllowPolicy": '{"redrivePermission":"denyAll"}'})
    with pytest.raises(errors.InvalidParameterValue, match="does not allow"):
        broker.create_queue("a", redrive(deny, 3))
    only_b = broker.create_queue(
        "only-b",
        {
            "RedriveAllowPolicy": json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [broker.arn("sqs", "b")]}
            )
        },
    )
    broker.create_queue("b", redrive(only_b, 3))
    with pytest.raises(errors.InvalidParameterValue, match="does not allow"):
        broker.create_queue("c", redrive(only_b, 3))
    with pytest.raises(errors.InvalidAttributeValue, match="RedriveAllowPolicy"):
        broker.create_queue("x", {"RedriveAllowPolicy": '{"redrivePermission":"byQueue"}'})
    with pytest.raises(errors.InvalidParameterValue, match="own dead-letter"):
        broker.queue("b").set_attributes(redrive(broker.queue("b"), 3))


def test_deleted_dead_letter_queue_stops_moves_without_losing_messages(broker, clock):
    dlq = broker.create_queue("dlq")
    q = broker.create_queue("work", redrive(dlq, 1))
    q.send("m")
    q.receive(visibility_timeout=0)
    broker.delete_queue("dlq")
    assert [m.text for m in q.receive()] == ["m"]  # kept and delivered, not dropped


def test_move_task_sends_messages_back_to_their_source(broker, clock):
    dlq = broker.create_queue("dlq")
    a = broker.create_queue("a", redrive(dlq, 1))
    b = broker.create_queue("b", redrive(dlq, 1))
    ids = {a.send(f"a{i}") for i in range(15)} | {b.send(f"b{i}") for i in range(5)}
    for q in (a, b):
        while q.receive(10, visibility_timeout=0):
            pass
        assert q.receive(10) == []
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "20"
    handle = broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    (task,) = broker.list_message_move_tasks(dlq.arn)
    assert task["ApproximateNumberOfMessagesMoved"] == 20
    assert task["ApproximateNumberOfMessagesToMove"] == 20
    assert "TaskHandle" not in task  # only running tasks show their handle
    got_a = a.receive(10) + a.receive(10)
    got_b = b.receive(10)
    assert {m.text for m in got_a} == {f"a{i}" for i in range(15)}
    assert {m.text for m in got_b} == {f"b{i}" for i in range(5)}
    # AWS: "The redrive task resets the retention period. A new `messageID` and `enqueueTime`
    # are assigned to redriven messages" (SQS Developer Guide, awsdocs/amazon-sqs-developer-guide
    # doc_source/sqs-configure-dead-letter-queue-redrive.md; the current guide says the same).
    new_ids = {m.message_id for m in got_a + got_b}
    assert len(new_ids) == 20 and not new_ids & ids
    assert all(m.receive_count == 1 for m in got_a + got_b)  # a redrive starts afresh
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "0"
    with pytest.raises(errors.InvalidParameterValue, match="Only active tasks"):
        broker.cancel_message_move_task(handle)


def test_move_task_to_a_destination_and_validation(broker, clock):
    dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(dlq, 1))
    other = broker.create_queue("other")
    dlq.send("sent straight to the dead-letter queue")
    src.send("dead-lettered")
    src.receive(visibility_timeout=0)
    src.receive()
    broker.start_message_move_task(dlq.arn, destination_arn=other.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    assert sorted(m.text for m in other.receive(10)) == [
        "dead-lettered",
        "sent straight to the dead-letter queue",
    ]
    with pytest.raises(errors.InvalidParameterValue, match="Dead Letter Queue"):
        broker.start_message_move_task(other.arn)
    with pytest.raises(errors.ResourceNotFound):
        broker.start_message_move_task(broker.arn("sqs", "missing"))
    with pytest.raises(errors.InvalidParameterValue, match="MaxNumberOfMessagesPerSecond"):
        broker.start_message_move_task(dlq.arn, max_messages_per_second=501)
    with pytest.raises(errors.ResourceNotFound, match="Task does not exist"):
        broker.cancel_message_move_task("A" * 32)  # shaped like a handle, of no task
    with pytest.raises(errors.InvalidParameterValue, match="TaskHandle is invalid"):
        broker.cancel_message_move_task("no-such-task")  # not even shaped like one


def test_move_task_handle_and_errors_as_aws(broker, clock):
    """AWS-validated: test_basic_move_task_workflow (a handle is base64 JSON of taskId and
    sourceArn), test_source_needs_redrive_policy, test_cancel_with_invalid_source_arn_in_task_handle
    and test_cancel_with_invalid_task_id_in_task_handle (test_sqs_move_task.py)."""
    dlq = broker.create_queue("dlq")
    broker.create_queue("src", redrive(dlq, 1))
    plain = broker.create_queue("plain")
    with pytest.raises(errors.InvalidParameterValue) as info:
        broker.start_message_move_task(plain.arn)
    assert str(info.value) == "Source queue must be configured as a Dead Letter Queue."
    handle = broker.start_message_move_task(dlq.arn)
    doc = json.loads(base64.b64decode(handle))
    assert doc["sourceArn"] == dlq.arn and uuid.UUID(doc["taskId"])

    def aws_handle(task_id: str, source_arn: str) -> str:
        text = json.dumps({"taskId": task_id, "sourceArn": source_arn}, separators=(",", ":"))
        return base64.b64encode(text.encode()).decode()

    missing = "arn:aws:sqs:us-east-1:878966065785:test-queue-doesnt-exist-123456"
    with pytest.raises(errors.ResourceNotFound, match="for the SourceArn parameter doesn't exist"):
        broker.cancel_message_move_task(aws_handle(str(uuid.uuid4()), missing))
    with pytest.raises(errors.ResourceNotFound, match=r"^Task does not exist\.$"):
        broker.cancel_message_move_task(aws_handle(str(uuid.uuid4()), dlq.arn))


def test_move_task_can_be_cancelled_and_is_rate_limited(broker, clock):
    dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(dlq, 1))
    src.send_batch([f"m{i}" for i in range(10)])
    src.send_batch([f"m{i}" for i in range(10, 20)])
    while src.receive(10, visibility_timeout=0):
        pass
    handle = broker.start_message_move_task(dlq.arn, max_messages_per_second=10)
    (task,) = broker.list_message_move_tasks(dlq.arn)
    assert task["Status"] == "RUNNING" and task["TaskHandle"] == handle
    with pytest.raises(errors.InvalidParameterValue, match="already a task running"):
        broker.start_message_move_task(dlq.arn)
    moved = broker.cancel_message_move_task(handle)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "CANCELLED")
    final = broker.list_message_move_tasks(dlq.arn)[0]["ApproximateNumberOfMessagesMoved"]
    assert moved <= final < 20  # at 10/s it cannot have finished
    in_src = int(src.get_attributes()["ApproximateNumberOfMessages"])
    in_dlq = int(dlq.get_attributes()["ApproximateNumberOfMessages"])
    assert (in_src, in_dlq) == (final, 20 - final)  # nothing lost, nothing in both


def test_a_move_task_whose_destination_is_deleted_fails_with_the_sqs_code(broker, clock):
    dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(dlq, 1))
    destination = broker.create_queue("destination")
    src.send_batch([f"m{i}" for i in range(10)])
    src.send_batch([f"m{i}" for i in range(10, 20)])
    while src.receive(10, visibility_timeout=0):
        pass
    broker.start_message_move_task(dlq.arn, destination.arn, max_messages_per_second=10)
    broker.delete_queue("destination")  # while the task waits out its rate
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "FAILED")
    (task,) = broker.list_message_move_tasks(dlq.arn)
    assert task["FailureReason"] == "AWS.SimpleQueueService.NonExistentQueue"
    moved = task["ApproximateNumberOfMessagesMoved"]
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == str(20 - moved)


def test_a_redrive_to_a_deleted_original_source_fails_with_the_sqs_code(broker, clock):
    # The core's LookupError (a queue id that no longer exists) was the FailureReason
    # ("LookupError: 2") instead of SQS's error code.
    dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(dlq, 1))
    broker.create_queue("other", redrive(dlq, 1))  # dlq stays a dead-letter queue
    src.send("m")
    while src.receive(1, visibility_timeout=0):
        pass
    broker.delete_queue("src")
    broker.start_message_move_task(dlq.arn)  # back to each message's source queue
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "FAILED")
    (task,) = broker.list_message_move_tasks(dlq.arn)
    assert task["FailureReason"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "1"  # nothing lost


def test_a_redrive_goes_back_to_a_source_created_again_under_its_name(broker, clock):
    # On SQS a queue is its ARN: the dead letters' DeadLetterQueueSourceArn names the queue
    # created again under the old name (after a deploy, say), and a redrive to the original
    # source delivers there. It failed with NonExistentQueue (the old queue's id was gone).
    dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(dlq, 1))
    src.send_batch(["a", "b"])
    while src.receive(10, visibility_timeout=0):
        pass
    assert {m.dead_letter_source_arn for m in dlq.receive(10, visibility_timeout=0)} == {src.arn}
    broker.delete_queue("src")
    again = broker.create_queue("src", redrive(dlq, 1))
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] != "RUNNING")
    (task,) = broker.list_message_move_tasks(dlq.arn)
    assert task["Status"] == "COMPLETED" and task["ApproximateNumberOfMessagesMoved"] == 2
    assert sorted(m.text for m in again.receive(10)) == ["a", "b"]


def test_a_redrive_that_fails_midway_reports_only_what_it_moved(broker, clock):
    # One step moves to each message's source in turn: when a later source is gone, the
    # moves of that step to the earlier ones are undone, so the task's count stays true.
    dlq = broker.create_queue("dlq")
    first = broker.create_queue("first", redrive(dlq, 1))
    second = broker.create_queue("second", redrive(dlq, 1))
    for queue in (first, second):
        queue.send_batch(["a", "b"])
        while queue.receive(10, visibility_timeout=0):
            pass
    broker.delete_queue("second")
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "FAILED")
    (task,) = broker.list_message_move_tasks(dlq.arn)
    in_first = int(first.get_attributes()["ApproximateNumberOfMessages"])
    assert task["ApproximateNumberOfMessagesMoved"] == in_first
    assert int(dlq.get_attributes()["ApproximateNumberOfMessages"]) == 4 - in_first


def test_move_task_resumes_after_a_restart_without_loss_or_duplicates(data_dir, impl):
    clock = millpond.ManualClock(now_ms=1_700_000_000_000)
    with millpond.open(data_dir, durability="fsync", clock=clock, core=impl) as b:
        dlq = b.create_queue("dlq")
        src = b.create_queue("src", redrive(dlq, 1))
        for start in range(0, 40, 10):
            src.send_batch([f"m{i}" for i in range(start, start + 10)])
        while src.receive(10, visibility_timeout=0):
            pass
        b.start_message_move_task(dlq.arn, max_messages_per_second=20)
        time.sleep(0.3)  # let it move a few batches, then stop the process mid-task
    with millpond.open(data_dir, durability="fsync", clock=clock, core=impl) as b:
        dlq, src = b.queue("dlq"), b.queue("src")
        wait_for(lambda: b.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
        texts = []
        while batch := src.receive(10):
            texts += [m.text for m in batch]
        assert sorted(texts) == sorted(f"m{i}" for i in range(40))
        assert dlq.receive(10) == []


# -- move tasks and the dead-letter queue's retention -------------------------------------------


def _old_behind_young(broker, clock):  # type: ignore[no-untyped-def]
    """(dlq, src) at t=105: the DLQ holds "young" (sent t=50), then "old" (sent t=0), which is
    past the DLQ's 60 s retention, counted from the original send (standard queues)."""
    dlq = broker.create_queue("dlq", {"MessageRetentionPeriod": "60"})
    src = broker.create_queue("src", {**redrive(dlq, 1), "VisibilityTimeout": "100"})
    src.send("old")  # sent at t=0
    src.receive()  # in flight until t=100
    clock.advance(50)
    src.send("young")  # sent at t=50
    src.receive(visibility_timeout=5)  # in flight until t=55
    clock.advance(10)  # t=60
    assert src.receive(10) == []  # "young" moved to the DLQ
    clock.advance(45)  # t=105
    assert src.receive(10) == []  # "old" moved to the DLQ, behind "young"
    return dlq, src


def test_move_task_does_not_bring_back_a_message_past_the_dlq_retention(broker, clock):
    dlq, src = _old_behind_young(broker, clock)
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    got = [m.text for m in src.receive(10)]
    assert got == ["young"]  # "old" expired in the DLQ: it must never be delivered again


def test_dlq_counts_leave_out_a_message_past_retention_behind_a_younger_one(broker, clock):
    # Standard DLQs keep the original sent time, so "old" sits behind "young" in the DLQ's log;
    # as on AWS, an expired message is gone: it is not counted.
    dlq, _ = _old_behind_young(broker, clock)
    counts = dlq.get_attributes()
    assert counts["ApproximateNumberOfMessages"] == "1"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert [m.text for m in dlq.receive(10)] == ["young"]
    assert dlq.get_attributes()["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_rate_limited_move_task_does_not_move_a_message_that_expired_meanwhile(broker, clock):
    # The message left in the DLQ expires while the task runs.
    dlq = broker.create_queue("dlq", {"MessageRetentionPeriod": "60"})
    src = broker.create_queue("src", redrive(dlq, 1))
    src.send("first")
    src.send("second")
    assert len(src.receive(10, visibility_timeout=0)) == 2
    assert src.receive(10) == []  # both moved to the DLQ
    broker.start_message_move_task(dlq.arn, max_messages_per_second=1)
    wait_for(
        lambda: broker.list_message_move_tasks(dlq.arn)[0]["ApproximateNumberOfMessagesMoved"] == 1
    )
    clock.advance(61)  # during the task's 1 s pause: the message left in the DLQ expires
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    assert [m.text for m in src.receive(10)] == ["first"]


def test_move_task_restarts_the_retention_period_of_redriven_messages(broker, clock):
    # AWS (SQS Developer Guide, configuring a dead-letter queue redrive): "The redrive task resets
    # the retention period. All redriven messages are considered new messages". A message older
    # than its source queue's retention must not expire the moment it is moved back.
    dlq = broker.create_queue("dlq", {"MessageRetentionPeriod": "86400"})
    src = broker.create_queue("src", {**redrive(dlq, 1), "MessageRetentionPeriod": "120"})
    src.send("m")
    assert src.receive(visibility_timeout=0)
    assert src.receive() == []  # moved to the DLQ
    clock.advance(1000)  # far past the source's 120 s retention, counted from the send
    redriven_at = clock.now_ms()
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    assert src.get_attributes()["ApproximateNumberOfMessages"] == "1"
    clock.advance(119)
    (m,) = src.receive(visibility_timeout=0)
    assert m.text == "m" and m.sent_timestamp == redriven_at
    clock.advance(2)  # 121 s after the redrive: past the retention it restarted
    counts = src.get_attributes()
    assert counts["ApproximateNumberOfMessages"] == "0"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert src.receive(10) == []
    assert dlq.get_attributes()["ApproximateNumberOfMessages"] == "0"  # expired, not moved


def test_move_task_restamps_only_the_messages_it_moved(broker, clock):
    # The re-stamping walks the destination's log after its last record before the move: a
    # message already there, and the next queue's messages, keep their sent time.
    dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(dlq, 1))
    after = broker.create_queue("after")  # the next queue id: its log keys follow src's
    src.send("moved")
    assert [m.text for m in src.receive(visibility_timeout=0)] == ["moved"]
    assert src.receive() == []  # moved to the DLQ
    sent_at = clock.now_ms()
    src.send("stayed")
    after.send("elsewhere")
    clock.advance(60)
    broker.start_message_move_task(dlq.arn)
    wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    stamps = {m.text: m.sent_timestamp for m in src.receive(10)}
    assert stamps == {"stayed": sent_at, "moved": clock.now_ms()}
    assert [m.sent_timestamp for m in after.receive()] == [sent_at]

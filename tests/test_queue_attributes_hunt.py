"""Queue attributes and queue lifecycle, where millpond differed from Amazon SQS.

Sources, cited per test: the AWS API reference and developer guide, and AWS-recorded answers
(LocalStack's AWS-validated tests and their recordings, localstack/localstack
tests/aws/services/sqs/test_sqs.py, test_sqs_move_task.py and their .snapshot.json).
"""

from __future__ import annotations

import pytest

import millpond
from millpond import errors

from .storage_probe import meta_keys
from .test_dead_letters import redrive, wait_for


def dead_letter(src: millpond.Queue, *bodies: str) -> None:
    """Send ``bodies`` to ``src`` and receive them past its maxReceiveCount of 1."""
    src.send_batch(list(bodies))
    while src.receive(10, visibility_timeout=0):
        pass


# -- a dead-letter queue deleted and re-created under its name, while a move task runs -----------


def _task_on_a_deleted_dlq(broker):  # type: ignore[no-untyped-def]
    """(src, new dlq): a rate-limited move task started on "dlq", which is then deleted and
    created again (millpond allows that at once; SQS makes you wait 60 s, by which time the
    task has failed). The new "dlq" holds one message, "fresh", dead-lettered from "src"."""
    dlq = broker.create_queue("dlq")
    old_src = broker.create_queue("old-src", redrive(dlq, 1))
    dead_letter(old_src, "old-1", "old-2")
    broker.start_message_move_task(dlq.arn, max_messages_per_second=1)  # 1 message, then 1 s
    broker.delete_queue("dlq")
    new_dlq = broker.create_queue("dlq")
    src = broker.create_queue("src", redrive(new_dlq, 1))
    dead_letter(src, "fresh")
    assert new_dlq.get_attributes()["ApproximateNumberOfMessages"] == "1"
    return src, new_dlq


def test_a_move_task_of_a_deleted_dlq_does_not_take_messages_from_its_successor(broker):
    # The task found its queues by name at every step: once "dlq" was created again, the old
    # task went on moving the new queue's messages, which nobody had asked to redrive. Like a
    # task whose destination is deleted (AWS-recorded: test_move_task_delete_destination_queue_
    # while_running, FAILED with AWS.SimpleQueueService.NonExistentQueue), it fails instead.
    # The deleted queue's task records went with it (the new queue lists no task of the old
    # one), and the old task's thread ends at its next step without moving anything.
    src, new_dlq = _task_on_a_deleted_dlq(broker)
    wait_for(lambda: not broker._move_tasks._threads)
    assert broker.list_message_move_tasks(new_dlq.arn) == []
    assert new_dlq.get_attributes()["ApproximateNumberOfMessages"] == "1"  # "fresh" stayed
    assert src.receive(10) == []


def test_a_move_task_of_a_deleted_dlq_does_not_block_one_on_its_successor(broker):
    # The old task, still RUNNING in its pause, counted as the new queue's active task:
    # "There is already a task running" refused a redrive the new queue had never started.
    src, new_dlq = _task_on_a_deleted_dlq(broker)
    handle = broker.start_message_move_task(new_dlq.arn)

    def finished() -> bool:  # only a RUNNING task shows its handle
        return all(
            t.get("TaskHandle") != handle for t in broker.list_message_move_tasks(new_dlq.arn, 10)
        )

    wait_for(finished)
    assert new_dlq.get_attributes()["ApproximateNumberOfMessages"] == "0"
    assert [m.text for m in src.receive(10)] == ["fresh"]


# -- RedrivePolicy validation --------------------------------------------------------------------


def test_a_dlq_of_the_other_type_is_refused_in_aws_words(broker):
    # AWS's text ends in two full stops. Recorded from AWS in a Terraform log (CreateQueue,
    # RequestID e9fec4bf-bf10-5983-b5db-a5c2e7f721e2 and five more, us-east-1 and us-west-2):
    # "api error InvalidParameterValue: Value {...} for parameter RedrivePolicy is invalid.
    # Reason: Dead-letter queue must be same type of queue as the source.."
    fifo_dlq = broker.create_queue("dlq.fifo", {"FifoQueue": "true"})
    policy = redrive(fifo_dlq, 3)
    with pytest.raises(errors.InvalidParameterValue) as refused:
        broker.create_queue("standard", policy)
    assert str(refused.value) == (
        f"Value {policy['RedrivePolicy']} for parameter RedrivePolicy is invalid. Reason: "
        "Dead-letter queue must be same type of queue as the source.."
    )


# -- a deleted queue's handle ----------------------------------------------------------------


def test_the_tags_of_a_deleted_queue_are_not_listed(broker):
    # Every other call on a deleted queue's Queue object raises QueueDoesNotExist (as SQS's
    # ListQueueTags does for a deleted queue); tags() answered from its cache, the deleted
    # queue's tags, even once a new queue had the name.
    q = broker.create_queue("q", tags={"team": "a"})
    broker.delete_queue("q")
    with pytest.raises(errors.QueueDoesNotExist):
        q.tags()
    broker.create_queue("q", tags={"team": "b"})
    with pytest.raises(errors.QueueDoesNotExist):
        q.tags()
    assert broker.queue("q").tags() == {"team": "b"}


def test_deleting_a_purged_queue_leaves_nothing_of_it_behind(broker):
    # A purge records its time (one purge per 60 s, as SQS), under the queue's id; deleting the
    # queue left that record behind for good, one per deleted queue ever purged.
    for _ in range(3):
        q = broker.create_queue("scratch")
        q.send("m")
        q.purge()
        broker.delete_queue("scratch")
    assert meta_keys(broker, b"purged:") == 0


def test_only_the_ten_most_recent_move_tasks_of_a_queue_are_kept(broker, clock):
    # ListMessageMoveTasks "Gets the most recent message movement tasks (up to 10) under a
    # specific source queue" (SQS API Reference); MaxResults is 1 to 10. Every finished task was
    # kept for good, and each StartMessageMoveTask and ListMessageMoveTasks read them all: a
    # redrive run on a schedule made both slower and the store bigger, one record per run.
    dlq = broker.create_queue("dlq")
    broker.create_queue("src", redrive(dlq, 1))
    for _ in range(13):
        clock.advance(1)
        broker.start_message_move_task(dlq.arn)  # nothing to move: it completes at once
        wait_for(lambda: broker.list_message_move_tasks(dlq.arn)[0]["Status"] == "COMPLETED")
    assert meta_keys(broker, b"task:") == 10
    listed = broker.list_message_move_tasks(dlq.arn, 10)
    assert [t["StartedTimestamp"] for t in listed] == [clock.now_ms() - 1000 * i for i in range(10)]


# -- CreateQueue on an existing queue --------------------------------------------------------


def test_create_queue_with_different_tags_for_an_existing_queue_is_refused(broker):
    # SQS refuses CreateQueue of an existing queue "specifying tags and the tags are different to
    # the existing tags (even if the existing queue has no tags)" (seen on AWS and worked around
    # in Bogdanp/dramatiq_sqs#13, and by AWS's own awslabs/amazon-sqs-java-temporary-queues-
    # client#70, "to avoid QueueNameExistsException"); millpond ignored the tags and answered
    # with the queue, whose tags the caller then believed set.
    q = broker.create_queue("tagged", tags={"team": "a"})
    assert broker.create_queue("tagged", tags={"team": "a"}) is q  # the same tags: idempotent
    assert broker.create_queue("tagged") is q  # no tags given: nothing to differ
    with pytest.raises(errors.QueueAlreadyExists, match="tags"):
        broker.create_queue("tagged", tags={"team": "b"})
    with pytest.raises(errors.QueueAlreadyExists, match="tags"):
        broker.create_queue("tagged", tags={"team": "a", "env": "prod"})
    assert q.tags() == {"team": "a"}
    broker.create_queue("untagged")
    with pytest.raises(errors.QueueAlreadyExists, match="tags"):
        broker.create_queue("untagged", tags={"team": "a"})


@pytest.mark.parametrize("name", ["gone", "gone.fifo"])
def test_purging_a_deleted_queue_leaves_no_purge_record(broker, name):
    # The purge wrote its once-per-60-s record before finding the queue gone: QueueDoesNotExist
    # was raised, but the record was committed (the op is not atomic) and never removed.
    q = broker.create_queue(name, {"FifoQueue": "true"} if name.endswith(".fifo") else None)
    broker.delete_queue(name)
    with pytest.raises(errors.QueueDoesNotExist):
        q.purge()
    assert meta_keys(broker, b"purged:") == 0

"""Dead-letter queues and redrive, against what Amazon SQS answers (bug hunt)."""

from __future__ import annotations

import json
import time

import pytest

from millpond import errors


@pytest.mark.parametrize(
    "policy",
    [
        {},
        # member names of the wrong case: both mandatory members are missing
        {"MaxReceiveCount": "4", "DeadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
    ],
)
def test_a_redrive_policy_missing_both_members_names_max_receive_count_first(broker, policy):
    # SQS checks maxReceiveCount before deadLetterTargetArn. Real AWS answers, as reported:
    # `Value {} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain
    # mandatory attribute: maxReceiveCount.` (ansible-collections/community.aws#2321), and the
    # same reason for {"MaxReceiveCount":"4","DeadLetterTargetArn":"..."} (rubyonjets/jets#101).
    broker.create_queue("dlq")
    text = json.dumps(policy)
    with pytest.raises(errors.InvalidParameterValue) as refused:
        broker.create_queue("work", {"RedrivePolicy": text})
    assert str(refused.value) == (
        f"Value {text} for parameter RedrivePolicy is invalid. Reason: Redrive policy does not "
        "contain mandatory attribute: maxReceiveCount."
    )


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def redrive(target, max_count: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": target.arn, "maxReceiveCount": max_count}
        )
    }


def test_move_tasks_started_in_the_same_millisecond_list_newest_first(broker, clock):
    # ListMessageMoveTasks gives "the most recent message movement tasks (up to 10)" newest
    # first. Tasks were ordered by their start time alone: two started at the same time (the
    # rule under a ManualClock, and possible on a fast machine) came in the order of their
    # random handles, so Results[0] was often the older task, and the 10 kept could drop the
    # newest.
    dlq = broker.create_queue("dlq")
    broker.create_queue("src", redrive(dlq, 1))
    destinations = [broker.create_queue(f"to-{i}") for i in range(12)]
    for destination in destinations:
        broker.start_message_move_task(dlq.arn, destination.arn)
        wait_for(
            lambda: all(
                t["Status"] == "COMPLETED"
                for t in broker.list_message_move_tasks(dlq.arn, max_results=10)
            )
        )
    tasks = broker.list_message_move_tasks(dlq.arn, max_results=10)
    newest_first = [d.arn for d in reversed(destinations)][:10]
    assert [t["DestinationArn"] for t in tasks] == newest_first

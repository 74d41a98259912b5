"""FIFO queues in depth: group order across groups as Amazon SQS records it, and concurrent
receivers.

The orderings below are the ones LocalStack's AWS-validated tests recorded against Amazon SQS
(localstack/localstack tests/aws/services/sqs/test_sqs.py, marked ``aws.validated``): which
group comes first after a visibility change or a delete is not documented, only recorded.
"""

from __future__ import annotations

import threading
from typing import Any

import millpond


def fifo(broker: millpond.Broker, **attributes: str) -> millpond.Queue:
    return broker.create_queue(
        "deep.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true", **attributes}
    )


def send_all(q: millpond.Queue, bodies: list[str], clock: millpond.ManualClock) -> None:
    """Send each body to the group its name starts with ("g1-m2" goes to group-1), 10 ms
    apart, and let 10 ms more pass: calls to SQS take time, and the orderings depend on when
    each message was sent or made visible again."""
    for body in bodies:
        q.send(body, group_id="group-" + body.split("-")[0][1:])
        clock.advance(0.01)


def texts(messages: list[Any]) -> list[str]:
    return [m.text for m in messages]


def test_a_zero_visibility_receive_puts_its_groups_behind_the_untouched_ones(broker, clock):
    # test_fifo_receive_message_with_zero_visibility_timeout
    q = fifo(broker)
    send_all(q, ["g1-m1", "g2-m1", "g2-m2", "g3-m1", "g1-m2"], clock)
    assert texts(q.receive(3, visibility_timeout=0)) == ["g1-m1", "g1-m2", "g2-m1"]
    assert texts(q.receive(10, visibility_timeout=0)) == [
        "g3-m1",
        "g1-m1",
        "g1-m2",
        "g2-m1",
        "g2-m2",
    ]


def test_a_group_freed_by_deletes_keeps_its_place_by_its_next_message(broker, clock):
    # test_fifo_message_group_visibility_after_delete (the AWS ordering); the second "g1-m2"
    # is a duplicate by content
    q = fifo(broker)
    send_all(q, ["g1-m1", "g2-m1", "g1-m2", "g2-m2", "g1-m2", "g1-m3", "g1-m4", "g3-m1"], clock)
    first = q.receive(2)
    assert texts(first) == ["g1-m1", "g1-m2"]
    for m in first:
        q.delete(m.receipt_handle)
    assert texts(q.receive(10)) == ["g2-m1", "g2-m2", "g1-m3", "g1-m4", "g3-m1"]


def test_a_partly_deleted_batch_keeps_its_group_locked(broker, clock):
    # test_fifo_message_group_visibility_after_partial_delete
    q = fifo(broker)
    send_all(q, ["g1-m1", "g2-m1", "g1-m2", "g2-m2", "g1-m3", "g1-m4", "g3-m1"], clock)
    first = q.receive(2)
    q.delete(first[0].receipt_handle)
    assert texts(q.receive(10)) == ["g2-m1", "g2-m2", "g3-m1"]


def test_a_group_whose_visibility_ran_out_comes_before_one_received_later(broker, clock):
    # test_fifo_receive_message_visibility_timeout_shared_in_group (the AWS ordering)
    q = fifo(broker, VisibilityTimeout="1")
    send_all(q, ["g1-m1", "g1-m2", "g1-m3", "g1-m4", "g2-m1", "g3-m1"], clock)
    assert texts(q.receive(2)) == ["g1-m1", "g1-m2"]
    clock.advance(0.5)
    assert texts(q.receive(1)) == ["g2-m1"]  # group-1 is in flight as a whole
    clock.advance(2)
    assert texts(q.receive(10, visibility_timeout=0)) == [
        "g3-m1",
        "g1-m1",
        "g1-m2",
        "g1-m3",
        "g1-m4",
        "g2-m1",
    ]


def test_a_message_made_visible_again_goes_out_alone_behind_the_waiting_groups(broker, clock):
    # test_fifo_message_group_visibility_after_terminate_visibility_timeout
    q = fifo(broker, VisibilityTimeout="30")
    send_all(q, ["g1-m1", "g1-m2", "g2-m1"], clock)
    first = q.receive(2)
    q.change_visibility(first[0].receipt_handle, 0)
    assert texts(q.receive(3)) == ["g2-m1", "g1-m1"]  # g1-m2 is still in flight


def test_concurrent_receivers_never_hold_one_group_twice_and_keep_its_order(broker):
    q = fifo(broker, VisibilityTimeout="60")  # the manual clock never lets a delivery lapse
    groups = ("A", "B", "C")
    per_group = 20
    for i in range(0, per_group, 2):  # batches mixing the groups, as producers would
        q.send_batch([{"body": f"{g}-{j}", "group_id": g} for j in range(i, i + 2) for g in groups])
    lock = threading.Lock()
    holder: dict[str, int] = {}  # group -> the thread holding it
    order: dict[str, list[int]] = {g: [] for g in groups}
    overlaps: list[tuple[str, int, int]] = []

    def consume(me: int) -> None:
        while True:
            messages = q.receive(4)
            with lock:
                if not messages:
                    if sum(map(len, order.values())) == per_group * len(groups):
                        return
                    continue
                for g in {m.group_id for m in messages}:
                    if g in holder:
                        overlaps.append((g, holder[g], me))
                    holder[g] = me
                for m in messages:
                    order[m.group_id].append(int(m.text.split("-")[1]))
                for g in {m.group_id for m in messages}:
                    del holder[g]  # before the deletes that free the groups
            q.delete_batch([m.receipt_handle for m in messages])

    threads = [threading.Thread(target=consume, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []
    assert order == {g: list(range(per_group)) for g in groups}

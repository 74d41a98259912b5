"""Time in the embedded broker: clock steps and the exact edges of SQS's timed rules.

Cases found by a bug hunt; sources are cited per test (Amazon SQS API Reference and Developer
Guide, LocalStack's AWS-recorded snapshots).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import millpond
from millpond.clock import Clock

T0 = 1_700_000_000_000


class SteppingClock(Clock):
    """A wall clock that an NTP correction or a VM restore can step back (ManualClock only
    moves forward)."""

    def __init__(self, now_ms: int) -> None:
        self.ms = now_ms

    def now_ms(self) -> int:
        return self.ms

    def step(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)


@pytest.fixture
def stepping() -> SteppingClock:
    return SteppingClock(T0)


@pytest.fixture
def stepped_broker(data_dir: str, stepping: SteppingClock, impl: str) -> Iterator[millpond.Broker]:
    b = millpond.open(data_dir, durability="os", clock=stepping, core=impl)
    yield b
    b.close()


# -- the system clock steps back while a message is in flight -------------------------------------
# ChangeMessageVisibility refuses only a timeout that would keep the message hidden more than
# 12 hours after its receive (API Reference, ChangeMessageVisibility). After the wall clock
# stepped back (NTP, a VM restored), "now" is before the receive: the hidden time asked for is
# shorter than ever, not past the limit.


@pytest.mark.parametrize("timeout", [0, 60])
def test_change_visibility_after_the_clock_stepped_back_is_not_past_12_hours(
    stepped_broker, stepping, timeout
):
    q = stepped_broker.create_queue("q")
    q.send("a")
    (m,) = q.receive(1, visibility_timeout=30)
    stepping.step(-3600)
    q.change_visibility(m.receipt_handle, timeout)  # a heartbeat, or giving the message back
    assert q.change_visibility_entries([(m.receipt_handle, timeout)]) == [None]


# -- ChangeMessageVisibility through an older receipt handle -------------------------------------
# AWS-validated (LocalStack tests/aws/services/sqs/test_sqs.py,
# test_terminate_visibility_timeout_after_receive): receive with VisibilityTimeout 0 (handle 1),
# receive again with VisibilityTimeout 3, ChangeMessageVisibility(handle 1, 0) answers 200 and
# the message is received again within one second. On a standard queue an older handle re-times
# the message's current delivery, as it deletes it (test_remove_message_with_old_receipt_handle).


def test_an_older_handle_changes_the_visibility_of_the_current_delivery(queue, clock):
    queue.send("test")
    (first,) = queue.receive(1, visibility_timeout=0)
    (second,) = queue.receive(1, visibility_timeout=3)
    queue.change_visibility(first.receipt_handle, 0)
    (third,) = queue.receive(1, visibility_timeout=30)
    assert third.receive_count == 3
    assert third.first_receive_timestamp == first.first_receive_timestamp
    # a heartbeat through an older handle keeps the current delivery hidden
    assert queue.change_visibility_entries([(second.receipt_handle, 60)]) == [None]
    clock.advance(59)
    assert queue.receive(1) == []
    clock.advance(1)
    (fourth,) = queue.receive(1, visibility_timeout=30)
    assert fourth.receive_count == 4
    # the 12 hours count from the current delivery's receive
    clock.advance(1)
    with pytest.raises(millpond.errors.InvalidParameterValue, match="beyond the limit"):
        queue.change_visibility(first.receipt_handle, 43_200)
    queue.delete(fourth.receipt_handle)
    with pytest.raises(millpond.errors.InvalidParameterValue, match="Message does not exist"):
        queue.change_visibility(first.receipt_handle, 0)


def test_an_older_fifo_handle_still_cannot_change_visibility(broker):
    # FIFO queues keep their rule: a handle of an earlier receive has expired
    q = broker.create_queue("q.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    q.send("test", group_id="g")
    (first,) = q.receive(1, visibility_timeout=0)
    q.receive(1, visibility_timeout=3)
    with pytest.raises(millpond.errors.InvalidParameterValue):
        q.change_visibility(first.receipt_handle, 0)


# -- lengthening MessageRetentionPeriod does not bring expired messages back ----------------------
# "Amazon SQS automatically deletes messages that have been in a queue for more than the maximum
# message retention period" (SQS Developer Guide; API Reference, SetQueueAttributes): a message
# past the period in force is gone, whether or not a receive happened to meet it. Raising the
# period afterwards gave it back, unless a read had removed it first.


def retention_queue(broker: millpond.Broker, fifo: bool) -> tuple[millpond.Queue, dict[str, str]]:
    attributes = {"MessageRetentionPeriod": "60"}
    if fifo:
        attributes.update(FifoQueue="true", ContentBasedDeduplication="true")
        return broker.create_queue("r.fifo", attributes), {"group_id": "g"}
    return broker.create_queue("r", attributes), {}


def counts(q: millpond.Queue) -> tuple[str, str]:
    attributes = q.get_attributes()
    return (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    )


@pytest.mark.parametrize("fifo", [False, True])
def test_lengthening_retention_does_not_revive_expired_messages(broker, clock, fifo):
    q, group = retention_queue(broker, fifo)
    q.send("expired", **group)
    clock.advance(61)
    q.set_attributes({"MessageRetentionPeriod": "3600"})
    assert counts(q) == ("0", "0")
    assert q.receive(10) == []
    q.send("kept", **group)
    clock.advance(3000)  # within the new period
    assert [m.text for m in q.receive(10)] == ["kept"]


@pytest.mark.parametrize("fifo", [False, True])
def test_lengthening_retention_does_not_count_expired_in_flight_messages(broker, clock, fifo):
    q, group = retention_queue(broker, fifo)
    q.send("a", **group)
    q.receive(1, visibility_timeout=600)
    clock.advance(61)
    assert counts(q) == ("0", "0")  # gone while in flight
    q.set_attributes({"MessageRetentionPeriod": "3600"})
    assert counts(q) == ("0", "0")
    clock.advance(600)
    assert q.receive(10) == []


# -- PurgeQueue once per 60 s, also after the clock stepped back ----------------------------------
# "Only one PurgeQueue operation on <queue> is allowed every 60 seconds." (AWS-recorded,
# LocalStack's test_successive_purge_calls_fail). The last purge's time is stored; after the wall
# clock stepped back an hour, it lay in the future and every purge was refused for that hour.


def test_purge_is_refused_for_60_seconds_not_for_the_size_of_a_clock_step(stepped_broker, stepping):
    q = stepped_broker.create_queue("q")
    q.purge()
    stepping.step(30)
    with pytest.raises(millpond.errors.PurgeQueueInProgress):
        q.purge()
    stepping.step(-3600)
    q.send("a")
    q.purge()
    assert q.receive(1) == []
    with pytest.raises(millpond.errors.PurgeQueueInProgress):
        q.purge()  # the new purge's 60 s


# -- shortening a FIFO queue's retention frees the groups its in-flight messages held ------------
# A FIFO message that passes its retention period while in flight is gone (SQS deletes it), so the
# messages after it in its group are receivable from then on (_core_fifo's alarms). A shorter
# MessageRetentionPeriod set while it was in flight left its group blocked until its visibility
# timeout ended (up to 12 hours), while GetQueueAttributes counted the next message as visible,
# and that message could expire meanwhile without ever being delivered.


def test_shortening_fifo_retention_frees_the_group_of_an_expired_in_flight_message(broker, clock):
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    q = broker.create_queue("short.fifo", {**attributes, "MessageRetentionPeriod": "3600"})
    q.send("head", group_id="g")
    clock.advance(30)
    q.send("next", group_id="g")
    q.receive(1, visibility_timeout=43_200)
    q.set_attributes({"MessageRetentionPeriod": "60"})
    clock.advance(31)  # the head is 61 s old: gone; the next one 31 s
    assert counts(q) == ("1", "0")
    assert [m.text for m in q.receive(10)] == ["next"]

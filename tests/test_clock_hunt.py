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

"""The daemon's parked long polls, hunted: a send must not wake every poll of its queue (each
woken poll runs a receive: 256 parked consumers cut sequential sends to ~190/s), and waking
fewer must never leave a message waiting while polls sleep (a lost wake-up)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from millpond.queue import Queue
from millpond.server.context import Context
from millpond.server.sqs import long_poll


def _run(
    tmp_path: Path,
    scenario: Callable[[Context, Queue], Awaitable[None]],
    name: str = "herd",
    attributes: dict[str, Any] | None = None,
) -> None:
    ctx = Context(str(tmp_path / "data"), durability="os", workers=2)
    queue = ctx.broker("us-east-1").create_queue(name, attributes)

    async def main() -> None:
        ctx.bind_loop(asyncio.get_running_loop())
        await scenario(ctx, queue)

    try:
        asyncio.run(main())
    finally:
        ctx.close()


def _poll(ctx: Context, queue: Queue, visibility_ms: int = 30_000, **kw: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(long_poll(ctx, queue, 1, visibility_ms, 5, None, **kw))


async def _parked(polls: list[asyncio.Task[Any]]) -> None:
    await asyncio.sleep(0.2)
    assert not any(poll.done() for poll in polls)


async def _first_done(polls: list[asyncio.Task[Any]], timeout: float = 1.0) -> list[Any]:
    done, _ = await asyncio.wait(polls, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    assert done, "a message waits while every poll sleeps"
    return [poll.result() for poll in done]


async def _cancel(polls: list[asyncio.Task[Any]]) -> None:
    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)


async def _send_untold(ctx: Context, queue: Queue, body: bytes) -> None:
    """Send ``body`` with no notice to the long polls, nor a doorbell ring: the test wakes."""
    wakeups = queue._broker._wakeups
    wakeups.notify = lambda queue_id, count=1: None  # type: ignore[method-assign]
    try:
        await ctx.call(queue.send, body)
    finally:
        del wakeups.notify


def _count_receives(queue: Queue) -> list[int]:
    count = [0]
    steps = queue._receive_steps

    def counted(*args: Any) -> Any:
        count[0] += 1
        return steps(*args)

    queue._receive_steps = counted  # type: ignore[method-assign]
    return count


def test_a_send_wakes_a_few_parked_polls_not_every_one(tmp_path: Path) -> None:
    # Every send woke every parked poll of its queue, and each ran a receive transaction.
    async def scenario(ctx: Context, queue: Queue) -> None:
        polls = [_poll(ctx, queue) for _ in range(100)]
        await _parked(polls)
        receives = _count_receives(queue)
        await ctx.call(queue.send, b"one")
        [messages] = await _first_done(polls)
        assert [m.body for m in messages] == [b"one"]
        await asyncio.sleep(0.1)  # the polls woken for nothing look, and park again
        assert receives[0] <= 5, f"{receives[0]} receives for one message"
        await _cancel(polls)

    _run(tmp_path, scenario)


def test_a_burst_of_sends_reaches_as_many_parked_polls(tmp_path: Path) -> None:
    async def scenario(ctx: Context, queue: Queue) -> None:
        polls = [_poll(ctx, queue) for _ in range(30)]
        await _parked(polls)
        sends = [ctx.call(queue.send_batch, [b"b%d" % i for i in range(10)])]
        sends += [ctx.call(queue.send, b"s%d" % i) for i in range(5)]
        await asyncio.gather(*sends)
        deadline = time.monotonic() + 2
        while sum(poll.done() for poll in polls) < 15 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        bodies = sorted(m.body for poll in polls if poll.done() for m in poll.result())
        assert len(bodies) == 15, bodies
        await _cancel(polls)

    _run(tmp_path, scenario)


def test_a_woken_poll_cancelled_passes_its_wake_up_on(tmp_path: Path) -> None:
    # A notice wakes one poll; its client leaves in the same loop iteration: another takes it.
    async def scenario(ctx: Context, queue: Queue) -> None:
        polls = [_poll(ctx, queue) for _ in range(3)]
        await _parked(polls)
        await _send_untold(ctx, queue, b"one")
        assert ctx.notifier is not None
        ctx.notifier._wake(id(queue._broker), queue.queue_id)  # the longest parked ...
        polls[0].cancel()  # ... goes as it wakes
        [messages] = await _first_done(polls[1:])
        assert [m.body for m in messages] == [b"one"]
        await _cancel(polls)

    _run(tmp_path, scenario)


def test_a_woken_poll_cancelled_waiting_for_a_running_place_passes_it_on(
    tmp_path: Path,
) -> None:
    # The native protocol: a woken poll waits for a running place of its connection first.
    places: dict[int, asyncio.Future[None]] = {}

    def parked_on(index: int) -> Callable[[], contextlib.AbstractAsyncContextManager[None]]:
        @contextlib.asynccontextmanager
        async def parked() -> AsyncIterator[None]:
            yield
            if index == 0:  # its connection is busy: it waits, and its client leaves
                places[index] = asyncio.get_running_loop().create_future()
                await places[index]

        return parked

    async def scenario(ctx: Context, queue: Queue) -> None:
        polls = [_poll(ctx, queue, parked=parked_on(i)) for i in range(3)]
        await _parked(polls)
        await _send_untold(ctx, queue, b"one")
        assert ctx.notifier is not None
        ctx.notifier._wake(id(queue._broker), queue.queue_id)  # the longest parked
        for _ in range(100):
            if 0 in places:
                break
            await asyncio.sleep(0.01)
        polls[0].cancel()
        [messages] = await _first_done(polls[1:])
        assert [m.body for m in messages] == [b"one"]
        await _cancel(polls)

    _run(tmp_path, scenario)


def test_a_message_visible_again_wakes_a_poll_after_the_poll_that_saw_it_left(
    tmp_path: Path,
) -> None:
    # Hidden messages show again with no notice. The polls parked before the receive never
    # looked at its visibility; the one that did may be gone when it runs out.
    async def scenario(ctx: Context, queue: Queue) -> None:
        polls = [_poll(ctx, queue, visibility_ms=300) for _ in range(5)]
        await _parked(polls)
        await ctx.call(queue.send, b"one")
        assert [m.body for m in (await _first_done(polls))[0]] == [b"one"]
        # taken for 300 ms; the polls woken after the take learnt when it shows again, and go
        await asyncio.sleep(0.05)
        await _cancel([poll for poll in polls[:-1] if not poll.done()])
        # the longest parked took it: the last one was never woken
        [messages] = await _first_done(polls[-1:])
        assert [m.body for m in messages] == [b"one"]

    _run(tmp_path, scenario)


def test_a_fifo_group_unblocked_by_a_delete_wakes_a_poll(tmp_path: Path) -> None:
    async def scenario(ctx: Context, queue: Queue) -> None:
        polls = [_poll(ctx, queue) for _ in range(4)]
        await _parked(polls)
        entries = [
            {"body": body, "group_id": group, "deduplication_id": body}
            for body, group in (("a1", "a"), ("a2", "a"), ("b1", "b"))
        ]
        await ctx.call(queue.send_batch, entries)
        await asyncio.sleep(0.3)
        done = [poll for poll in polls if poll.done()]
        taken = {m.body: m for poll in done for m in poll.result()}
        assert sorted(taken) == [b"a1", b"b1"]  # a2 waits for a1
        waiting = [poll for poll in polls if not poll.done()]
        await ctx.call(queue.delete, taken[b"a1"].receipt_handle)
        [messages] = await _first_done(waiting)
        assert [m.body for m in messages] == [b"a2"]
        await _cancel(polls)

    _run(tmp_path, scenario, "herd.fifo", {"FifoQueue": "true"})


SEND_ELSEWHERE = """
import sys, millpond
broker = millpond.open(sys.argv[1], durability="os", region="us-east-1")
queue = broker.queue("herd")
for i in range(3):
    queue.send(b"elsewhere %d" % i)
broker.close()
"""


def test_sends_of_another_process_reach_as_many_parked_polls(tmp_path: Path) -> None:
    async def scenario(ctx: Context, queue: Queue) -> None:
        if not queue._broker._wakeups.cross_process:
            pytest.skip("no doorbell file here (not Linux, or no C extension)")
        polls = [_poll(ctx, queue) for _ in range(10)]
        await _parked(polls)
        data = str(tmp_path / "data" / "us-east-1")
        command = [sys.executable, "-c", SEND_ELSEWHERE, data]
        await asyncio.get_running_loop().run_in_executor(None, subprocess.run, command)
        deadline = time.monotonic() + 1
        while sum(poll.done() for poll in polls) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        bodies = sorted(m.body for poll in polls if poll.done() for m in poll.result())
        assert bodies == [b"elsewhere 0", b"elsewhere 1", b"elsewhere 2"]
        await _cancel(polls)

    _run(tmp_path, scenario)


def test_the_doorbell_watcher_stops_quietly_when_its_doorbell_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon shuts down: its brokers close their doorbells while the watcher of parked
    # polls sleeps on one (or pauses between checks). It died on an assert, with "Exception in
    # thread millpond-doorbells" in the daemon's log.
    from millpond.server.context import Notifier
    from millpond.wakeups import Wakeups

    errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    wakeups = Wakeups(str(tmp_path))
    if not wakeups.cross_process:
        pytest.skip("no doorbell file here (not Linux, or no C extension)")

    async def main() -> None:
        notifier = Notifier(asyncio.get_running_loop())
        poll = asyncio.ensure_future(notifier.wait(1, 7, 5.0, lambda: False, wakeups))
        await asyncio.sleep(0.05)  # the watcher sleeps on the doorbell
        watcher = notifier._watcher
        assert watcher is not None
        wakeups.close()
        await asyncio.get_running_loop().run_in_executor(None, watcher.join, 1.0)
        assert not watcher.is_alive()
        await _cancel([poll])

    asyncio.run(main())
    assert [error.exc_value for error in errors] == []


def test_a_ring_after_a_woken_poll_ran_out_of_time_still_wakes_a_parked_poll(
    tmp_path: Path,
) -> None:
    # The doorbell watcher wakes one poll per ring; the next ring must be heard even if that
    # poll ends without parking again (its wait ran out as it waited for a running place).
    from millpond.wakeups import Wakeups

    def slow_place() -> contextlib.AbstractAsyncContextManager[None]:
        @contextlib.asynccontextmanager
        async def parked() -> AsyncIterator[None]:
            yield
            await asyncio.sleep(0.4)  # its connection is busy; its wait runs out meanwhile

        return parked()

    async def scenario(ctx: Context, queue: Queue) -> None:
        theirs = Wakeups(str(tmp_path / "data" / "us-east-1"))  # another process's mapping
        if not theirs.cross_process:
            theirs.close()
            pytest.skip("no doorbell file here (not Linux, or no C extension)")
        short = asyncio.ensure_future(long_poll(ctx, queue, 1, 30_000, 0.3, None, slow_place))
        await asyncio.sleep(0.05)
        polls = [_poll(ctx, queue)]
        await _parked(polls)
        theirs.notify(queue.queue_id)  # a ring with nothing new: wakes the short poll
        assert await asyncio.wait_for(short, 1) == []
        await _send_untold(ctx, queue, b"one")
        theirs.notify(queue.queue_id)  # as the other process that sent it does
        [messages] = await _first_done(polls)
        assert [m.body for m in messages] == [b"one"]
        theirs.close()

    _run(tmp_path, scenario)


def test_sends_in_a_row_keep_the_looks_per_send_bounded(tmp_path: Path) -> None:
    # A woken poll that found nothing looked again whenever a send had committed meanwhile:
    # under a stream of sends those looks went on and on, and more polls joined them at every
    # send (~28 looks per send with 256 consumers parked).
    async def scenario(ctx: Context, queue: Queue) -> None:
        async def consume() -> None:
            while True:
                await long_poll(ctx, queue, 1, 30_000, 5, None)

        consumers = [asyncio.ensure_future(consume()) for _ in range(100)]
        await asyncio.sleep(0.2)
        receives = _count_receives(queue)
        for i in range(200):
            await ctx.call(queue.send, b"%d" % i)
        await asyncio.sleep(0.05)
        assert receives[0] <= 200 * 5, f"{receives[0] / 200} looks per send"
        await _cancel(consumers)

    _run(tmp_path, scenario)


def test_a_send_while_the_only_poll_looks_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The notice of a send that commits while the queue's one poll looks (after its look
    # read the queue) finds no poll parked: it is owed to the poll, which looks again rather
    # than sleep. (The doorbell watcher is kept out: it would notice the send in ~10 ms.)
    from millpond.server import sqs

    monkeypatch.setattr(sqs, "_doorbell_rung", lambda *args: lambda: False)

    async def scenario(ctx: Context, queue: Queue) -> None:
        steps = queue._receive_steps
        looks: list[list[Any]] = []

        def send_during_the_first_look(*args: Any) -> Any:
            result = yield from steps(*args)
            if not looks:
                queue.send(b"one")  # commits now, on the loop: the poll has not parked yet
            looks.append(result[0])
            return result

        queue._receive_steps = send_during_the_first_look  # type: ignore[method-assign]
        poll = _poll(ctx, queue)
        [messages] = await _first_done([poll])
        assert [m.body for m in messages] == [b"one"]
        assert looks[0] == []

    _run(tmp_path, scenario)


def test_consumers_that_come_and_go_leave_no_message_waiting(tmp_path: Path) -> None:
    # A mixed load: sends of 1 to 10 messages from threads, consumers taking 1 to 10 at a
    # time, some leaving mid-poll (their client gone) and new ones arriving.
    import random

    rng = random.Random(7)

    async def scenario(ctx: Context, queue: Queue) -> None:
        received: list[bytes] = []

        async def consume(max_messages: int) -> None:
            while True:
                messages = await long_poll(ctx, queue, max_messages, 30_000, 5, None)
                received.extend(m.body for m in messages)

        consumers = [asyncio.ensure_future(consume(rng.randint(1, 10))) for _ in range(30)]
        await asyncio.sleep(0.1)
        sent = 0
        for round_ in range(40):
            batch = [b"%d-%d" % (round_, i) for i in range(rng.randint(1, 10))]
            sends = [ctx.call(queue.send_batch, batch)]
            if rng.random() < 0.5:
                sends.append(ctx.call(queue.send, b"%d-single" % round_))
            await asyncio.gather(*sends)
            sent += len(batch) + (len(sends) - 1)
            for _ in range(rng.randint(0, 3)):  # clients leave, others come
                gone = consumers.pop(rng.randrange(len(consumers)))
                gone.cancel()
                consumers.append(asyncio.ensure_future(consume(rng.randint(1, 10))))
            await asyncio.sleep(rng.choice([0, 0, 0.002]))
        deadline = time.monotonic() + 1
        while len(received) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(received) == sent == len(set(received))
        await _cancel(consumers)

    _run(tmp_path, scenario)

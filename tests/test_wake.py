"""The one-shot Wake group commit hands off with: the C one (Linux) and the lock stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from millpond import wake

from .interrupts import Interrupt, interrupted_after

IMPLS: list[Any] = [pytest.param((wake.LockWake, wake.lock_wake_all), id="lock")]
try:
    from millpond import _core_c

    if _core_c.WAKE_SUPPORTED:
        IMPLS.append(pytest.param((_core_c.Wake, _core_c.wake_all), id="c"))
except ImportError:
    pass


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> tuple[Callable[[], Any], Callable[[list[Any]], None]]:
    return request.param  # type: ignore[no-any-return]


def _waiter(w: Any, **kwargs: Any) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(w.wait(**kwargs)), daemon=True)
    thread.start()
    return thread, result


def test_a_wake_set_before_the_wait_returns_at_once_and_stays_set(impl: Any) -> None:
    new_wake, _ = impl
    w = new_wake()
    assert not w.is_set()
    w.set()
    w.set()  # a second set changes nothing
    assert w.wait() and w.wait(0) and w.is_set()


def test_a_wait_with_a_timeout_ends_unset(impl: Any) -> None:
    new_wake, _ = impl
    w = new_wake()
    started = time.monotonic()
    assert w.wait(0.05) is False
    assert time.monotonic() - started >= 0.045
    assert not w.is_set()


def test_set_from_another_thread_wakes_the_sleeper(impl: Any) -> None:
    new_wake, _ = impl
    w = new_wake()
    thread, result = _waiter(w)
    time.sleep(0.05)
    assert thread.is_alive()  # still asleep: nothing set it
    w.set()
    thread.join(5)
    assert result == [True]


def test_wake_all_wakes_every_sleeper(impl: Any) -> None:
    new_wake, wake_all = impl
    wakes = [new_wake() for _ in range(5)]
    waiters = [_waiter(w) for w in wakes]
    time.sleep(0.05)
    wake_all(wakes)
    for thread, result in waiters:
        thread.join(5)
        assert result == [True]


def test_wait_sets_then_set_before_it_sleeps(impl: Any) -> None:
    """The last follower of a gather wakes the leader and falls asleep in one call."""
    new_wake, _ = impl
    mine, leader = new_wake(), new_wake()
    thread, result = _waiter(mine, then_set=leader)
    assert leader.wait(5)  # set by the sleeper
    time.sleep(0.02)
    assert thread.is_alive()  # while it sleeps on its own
    mine.set()
    thread.join(5)
    assert result == [True]


def test_a_signal_does_not_cut_a_wait_short(impl: Any) -> None:
    """Ctrl-C while a writer waits for its commit comes once the wait ended, so that a writer
    handed the lead of the next commit is never torn away before it can take it."""
    new_wake, _ = impl
    w = new_wake()
    threading.Timer(0.3, w.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupt), interrupted_after(0.05):
        w.wait()
    assert w.is_set()
    assert time.monotonic() - started >= 0.25

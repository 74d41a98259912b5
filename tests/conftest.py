"""Fixtures shared by the tests: core implementation (c and py), manual clock, brokers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import millpond
from millpond import core


def _implementations() -> list[str]:
    names = ["py"]
    try:
        core.load("c")
    except ImportError:
        if os.environ.get("MILLPOND_REQUIRE_C"):
            raise
    else:
        names.insert(0, "c")
    return names


IMPLEMENTATIONS = _implementations()


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> str:
    """Each test that uses it runs once per core implementation ("c" and "py")."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> millpond.ManualClock:
    return millpond.ManualClock(now_ms=1_700_000_000_000)


@pytest.fixture
def data_dir(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return str(tmp_path / "data")


@pytest.fixture
def broker(data_dir: str, clock: millpond.ManualClock, impl: str) -> Iterator[millpond.Broker]:
    """A broker on a fresh directory, driven by a manual clock, in "os" mode (tests are about
    semantics; durability tests open their own brokers in "fsync" mode)."""
    b = millpond.open(data_dir, durability="os", clock=clock, core=impl)
    yield b
    b.close()


@pytest.fixture
def queue(broker: millpond.Broker) -> millpond.Queue:
    return broker.create_queue("q")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A `millpond serve` process on an ephemeral port ("os" durability), shared by a module."""
    from .daemon import Daemon

    d = Daemon(str(tmp_path_factory.mktemp("daemon") / "data"))
    yield d
    d.stop()

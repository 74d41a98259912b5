"""The conformance suite: the same tests against every backend ``millpond.connect`` reaches.

Backends: ``embedded`` (a data directory), ``native`` (a daemon over millpond's native
protocol), ``daemon-boto3`` (the same daemon through the ``sqs://`` backend, i.e. boto3 with
``endpoint_url``) and ``moto`` (the ``sqs://`` backend against moto's in-process AWS mock). A
backend whose module or peer is not installed is skipped, not passed.

Tests here use only the public API and real time (no ManualClock: remote backends cannot be
driven by one); every test names its queues and topics with the ``name`` fixture, so tests can
share one daemon.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

import millpond
from tests.conformance._limits import (  # noqa: F401 - hooks: skip what a backend cannot do
    pytest_collection_modifyitems,
    pytest_configure,
)
from tests.daemon import Daemon

BACKENDS = ("embedded", "native", "daemon-boto3", "moto")
_counter = itertools.count()


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="session")
def conformance_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the session, serving HTTP and the native protocol."""
    data = str(tmp_path_factory.mktemp("conformance-daemon") / "data")
    daemon = Daemon(data, native=True)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def boto3_session() -> Any:
    """One boto3 Session for the daemon-boto3 brokers (a new one per test costs ~0.1-0.2 s)."""
    _require("boto3")
    import boto3

    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def broker(backend: str, tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    if backend == "embedded":
        b = millpond.connect(tmp_path / "data")
    elif backend == "native":
        _require("millpond.native")
        daemon = request.getfixturevalue("conformance_daemon")
        b = millpond.connect(daemon.native_url)
    elif backend == "daemon-boto3":
        _require("boto3")
        _require("millpond.aws")
        daemon = request.getfixturevalue("conformance_daemon")
        session = request.getfixturevalue("boto3_session")
        b = millpond.connect("sqs://us-east-1", endpoint_url=daemon.url, session=session)
    else:
        _require("moto")
        _require("millpond.aws")
        from moto import mock_aws

        env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        mock = mock_aws()
        mock.start()
        try:
            b = millpond.connect("sqs://us-east-1")  # moto patches sessions made after start()
            yield b
            b.close()
        finally:
            mock.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def name() -> str:
    """A queue/topic name no other test of the session uses (tests may share a daemon)."""
    return f"c{os.getpid()}-{next(_counter)}"

"""The sqs:// backend (millpond.aws): behaviour found wrong in a bug hunt, against moto and a
real millpond daemon (as tests/test_aws_backend.py points the backend at them)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("boto3")

import millpond  # noqa: E402
from millpond.aws import AwsBroker  # noqa: E402

_names = itertools.count()


@pytest.fixture
def name() -> str:
    return f"hunt{os.getpid()}-{next(_names)}"


@pytest.fixture
def moto_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsBroker]:
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with moto.mock_aws(), millpond.connect("sqs://us-east-1") as broker:
        yield broker


@pytest.fixture
def daemon_broker(daemon: Any) -> Iterator[AwsBroker]:
    with millpond.connect(
        "sqs://us-east-1",
        endpoint_url=daemon.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as broker:
        yield broker


@pytest.fixture(params=["moto", "daemon"])
def aws(request: pytest.FixtureRequest) -> AwsBroker:
    """The backend against moto and against the daemon."""
    return request.getfixturevalue(f"{request.param}_broker")  # type: ignore[no-any-return]


# -- subscriptions ------------------------------------------------------------------------------


def test_subscribe_answers_the_owner_as_the_lookups_do(aws: AwsBroker, name: str) -> None:
    """The subscription subscribe() returns has the Owner SNS gives it (as embedded, and as
    broker.subscription() and list_subscriptions() say), not ""."""
    topic = aws.create_topic(name)
    sub = topic.subscribe(aws.create_queue(name))
    looked_up = aws.subscription(sub.arn)
    assert looked_up.owner  # SNS's GetSubscriptionAttributes Owner: the account
    assert (sub.owner, sub.pending) == (looked_up.owner, looked_up.pending)
    assert [(s.arn, s.owner) for s in topic.list_subscriptions()] == [(sub.arn, sub.owner)]

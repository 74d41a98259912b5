"""The ``sqs://`` backend: millpond's Broker API over Amazon SQS and SNS, through boto3.

``millpond.connect("sqs://us-east-1")`` (or ``AwsBroker(region=...)``) gives a broker whose
queues, topics and subscriptions have the embedded broker's methods, arguments, return shapes
and exceptions, for what SQS and SNS can do. boto3 is an optional dependency:
``pip install millpond[aws]``.
"""

from __future__ import annotations

try:
    import boto3  # noqa: F401  (checked here: the message below beats a bare ModuleNotFoundError)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the sqs:// backend (millpond.aws) needs boto3: pip install 'millpond[aws]'"
    ) from exc

from millpond.aws.broker import AwsBroker
from millpond.aws.errors import AwsServiceError
from millpond.aws.queue import AwsFifoQueue, AwsQueue
from millpond.aws.subscription import AwsSubscription
from millpond.aws.topic import AwsTopic

__all__ = [
    "AwsBroker",
    "AwsFifoQueue",
    "AwsQueue",
    "AwsServiceError",
    "AwsSubscription",
    "AwsTopic",
]

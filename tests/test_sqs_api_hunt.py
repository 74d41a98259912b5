"""The SQS API over AWS JSON 1.0, against the daemon, where it differed from Amazon SQS.

Sources, cited per test: AWS documentation (the AWS CLI's documented ``get-queue-attributes``
output) and LocalStack's AWS-validated tests and their recordings
(localstack/localstack tests/aws/services/sqs/test_sqs.py and test_sqs.snapshot.json).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config

from .daemon import Daemon

NO_RETRY = Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def sqs(daemon: Daemon) -> Iterator[Any]:
    yield daemon.client(config=NO_RETRY)


def unique(prefix: str = "hunt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def arn_of(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]  # type: ignore[no-any-return]


def test_redrive_policy_reads_back_as_sqs_writes_it(sqs: Any) -> None:
    """SQS keeps a RedrivePolicy as its own compact JSON, deadLetterTargetArn first and
    maxReceiveCount a number, however it was sent (the AWS docs' own example sends
    ``"maxReceiveCount":"5"`` as a string; the AWS CLI's documented get-queue-attributes output
    is ``{"deadLetterTargetArn":"arn:...:MyDeadLetterQueue","maxReceiveCount":1000}``);
    millpond echoed the text as sent. CreateQueue compares the policies, not their spelling."""
    dlq_arn = arn_of(sqs, sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"])
    sent = f'{{ "maxReceiveCount" : "5", "deadLetterTargetArn" : "{dlq_arn}" }}'
    name = unique()
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": sent})["QueueUrl"]
    canonical = f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":5}}'
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    assert got["Attributes"] == {"RedrivePolicy": canonical}
    again = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
    assert sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": again})["QueueUrl"] == url
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": again})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert got["Attributes"]["RedrivePolicy"] == canonical

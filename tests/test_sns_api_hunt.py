"""The SNS API surface of `millpond serve` against AWS's recorded answers.

Each test names the AWS-validated LocalStack test (tests/aws/services/sns/test_sns.py) whose
snapshot (test_sns.snapshot.json) recorded what Amazon SNS answered for the same calls.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

NO_RETRY = Config(retries={"total_max_attempts": 1}, read_timeout=30)


@pytest.fixture(scope="module")
def sns(daemon: Any) -> Any:
    return daemon.client("sns", config=NO_RETRY)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_of(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_create_topic_again_with_a_subset_or_no_tags_is_the_same_topic(sns):
    # AWS-validated: test_create_duplicate_topic_check_idempotency: a topic created with tags
    # a and b, created again with Tags=[a], then Tags=[] (boto3 sends "Tags=" for an empty
    # list), answers the same ARN each time. millpond refused the empty list: "Invalid
    # parameter: Tags".
    name = unique("tags")
    tags = [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    arn = sns.create_topic(Name=name, Tags=tags)["TopicArn"]
    for again in (tags, [tags[0]], []):
        assert sns.create_topic(Name=name, Tags=again)["TopicArn"] == arn
    assert len(sns.list_tags_for_resource(ResourceArn=arn)["Tags"]) == 2
    fresh = sns.create_topic(Name=unique("no-tags"), Tags=[])["TopicArn"]
    assert sns.list_tags_for_resource(ResourceArn=fresh)["Tags"] == []


@pytest.mark.parametrize("number", ["+1a234", "NAA+15551234567"])
def test_publish_to_a_malformed_phone_number(sns, number):
    # AWS-validated: test_publish_wrong_phone_format ("invalid-number", "wrong-format"): a
    # PhoneNumber that is no E.164 number is "<number> is not valid to publish to".
    assert error_of(sns.publish, PhoneNumber=number, Message="m") == (
        "InvalidParameter",
        f"Invalid parameter: PhoneNumber Reason: {number} is not valid to publish to",
        400,
    )


def test_subscribe_a_malformed_sms_endpoint(sns):
    # AWS-validated: test_publish_wrong_phone_format ("wrong-endpoint"): an sms subscription to
    # what is no phone number is "Invalid SMS endpoint: <endpoint>", without the usual prefix.
    topic = sns.create_topic(Name=unique("sms"))["TopicArn"]
    assert error_of(sns.subscribe, TopicArn=topic, Protocol="sms", Endpoint="NAA+15551234567") == (
        "InvalidParameter",
        "Invalid SMS endpoint: NAA+15551234567",
        400,
    )

"""`millpond serve` speaking SNS (query/XML) to boto3, with SQS and HTTP endpoints behind it.

boto3's SNS client only speaks the query protocol, so its serializer and XML parser are the
oracle for the wire shapes. One daemon serves the module; every test uses its own names.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from millpond.server import sns as sns_codec

from .test_topics import ENVELOPE_KEYS

ACCOUNT = "123456789012"
NO_RETRY = Config(retries={"total_max_attempts": 1}, read_timeout=30)

CONFIRMATION_KEYS = [
    "Type",
    "MessageId",
    "Token",
    "TopicArn",
    "Message",
    "SubscribeURL",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
]


@pytest.fixture(scope="module")
def sns(daemon: Any) -> Any:
    return daemon.client("sns", config=NO_RETRY)


@pytest.fixture(scope="module")
def sqs(daemon: Any) -> Any:
    return daemon.client("sqs", config=NO_RETRY)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_topic(sns: Any, prefix: str = "t", **kwargs: Any) -> str:
    return sns.create_topic(Name=unique(prefix), **kwargs)["TopicArn"]  # type: ignore[no-any-return]


def make_queue(sqs: Any, prefix: str = "q", fifo: bool = False) -> tuple[str, str]:
    """(queue URL, queue ARN) of a new queue."""
    name = unique(prefix) + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def receive(sqs: Any, url: str, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``count`` messages of the queue (deleted), waiting up to ~5 s for them."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while len(out) < count and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kwargs
        ).get("Messages", [])
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        out += got
    return out


def empty(sqs: Any, url: str) -> bool:
    return not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def S(value: str) -> dict[str, Any]:
    return {"DataType": "String", "StringValue": value}


# -- the codec -------------------------------------------------------------------------------------


def test_parse_rebuilds_lists_maps_and_message_attributes():
    form = {
        "Action": "PublishBatch",
        "Version": "2010-03-31",
        "TopicArn": "arn",
        "PublishBatchRequestEntries.member.2.Id": "b",
        "PublishBatchRequestEntries.member.2.Message": "second",
        "PublishBatchRequestEntries.member.1.Id": "a",
        "PublishBatchRequestEntries.member.1.Message": "first",
        "PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Name": "k",
        "PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.DataType": "String",
        "PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.StringValue": "v",
        "Attributes.entry.1.key": "RawMessageDelivery",
        "Attributes.entry.1.value": "true",
        "Tags.member.1.Key": "team",
        "Tags.member.1.Value": "core",
        "TagKeys.member.10": "z",
        "TagKeys.member.2": "y",
    }
    assert sns_codec.parse("PublishBatch", form) == {
        "TopicArn": "arn",
        "PublishBatchRequestEntries": [
            {
                "Id": "a",
                "Message": "first",
                "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
            },
            {"Id": "b", "Message": "second"},
        ],
        "Attributes": {"RawMessageDelivery": "true"},
        "Tags": [{"Key": "team", "Value": "core"}],
        "TagKeys": ["y", "z"],  # numeric order, not text order
    }


def test_raw_query_requests_and_errors(daemon):
    def post(form: dict[str, str]) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode()
        try:
            with urllib.request.urlopen(daemon.url + "/", data, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    status, body = post({"Action": "ListTopics", "Version": "2010-03-31"})
    assert status == 200
    assert body.startswith('<?xml version="1.0"?><ListTopicsResponse xmlns="')
    assert "<ListTopicsResult><Topics>" in body and "<RequestId>" in body
    gone = f"arn:aws:sns:us-east-1:{ACCOUNT}:{unique('gone')}"
    status, body = post({"Action": "GetTopicAttributes", "Version": "2010-03-31", "TopicArn": gone})
    assert status == 404
    assert (
        '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender'
        "</Type><Code>NotFound</Code><Message>Topic does not exist</Message></Error><RequestId>"
    ) in body
    status, body = post({"Action": "NoSuchThing", "Version": "2010-03-31"})
    assert status == 400 and "<Code>InvalidAction</Code>" in body


# -- topics ----------------------------------------------------------------------------------------


def test_topic_lifecycle(sns):
    name = unique("life")
    arn = sns.create_topic(
        Name=name, Attributes={"DisplayName": "Orders"}, Tags=[{"Key": "team", "Value": "core"}]
    )["TopicArn"]
    assert arn == f"arn:aws:sns:us-east-1:{ACCOUNT}:{name}"
    # idempotent with the same attributes and tags; refused with other ones
    assert sns.create_topic(Name=name, Attributes={"DisplayName": "Orders"})["TopicArn"] == arn
    assert sns.create_topic(Name=name, Tags=[{"Key": "team", "Value": "core"}])["TopicArn"] == arn
    assert error_of(sns.create_topic, Name=name, Attributes={"DisplayName": "Other"}) == (
        "InvalidParameter",
        "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
        400,
    )
    assert error_of(sns.create_topic, Name=name, Tags=[{"Key": "team", "Value": "x"}])[1] == (
        "Invalid parameter: Tags Reason: Topic already exists with different tags"
    )
    attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attributes["TopicArn"] == arn
    assert attributes["DisplayName"] == "Orders"
    assert attributes["Owner"] == ACCOUNT
    assert attributes["SubscriptionsConfirmed"] == "0"
    assert attributes["SubscriptionsPending"] == "0"
    assert json.loads(attributes["Policy"])["Statement"][0]["Sid"] == "__default_statement_ID"
    assert "FifoTopic" not in attributes
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="New")
    sns.set_topic_attributes(
        TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue='{"http": {}}'
    )
    attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert (attributes["DisplayName"], attributes["DeliveryPolicy"]) == ("New", '{"http": {}}')
    assert {"TopicArn": arn} in sns.list_topics()["Topics"]
    sns.delete_topic(TopicArn=arn)
    sns.delete_topic(TopicArn=arn)  # deleting twice succeeds
    assert {"TopicArn": arn} not in sns.list_topics()["Topics"]
    code, message, status = error_of(sns.get_topic_attributes, TopicArn=arn)
    assert (code, message, status) == ("NotFound", "Topic does not exist", 404)
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.publish(TopicArn=arn, Message="x")


def test_fifo_topic_attributes(sns):
    name = unique("fifo") + ".fifo"
    arn = sns.create_topic(
        Name=name, Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )["TopicArn"]
    attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attributes["FifoTopic"] == "true"
    assert attributes["ContentBasedDeduplication"] == "true"
    assert attributes["FifoThroughputScope"] == "Topic"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"Name": "bad name"}, "Invalid parameter: Topic Name"),
        (
            {"Name": "nofifo", "Attributes": {"FifoTopic": "true"}},
            "Invalid parameter: Fifo Topic names must end with .fifo and must be made up of only "
            "uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be "
            "between 1 and 256 characters long.",
        ),
        (
            {"Name": "t", "Attributes": {"Colour": "red"}},
            "Invalid parameter: Attributes Reason: Unknown attribute name Colour",
        ),
        (
            {"Name": "t", "Attributes": {"ContentBasedDeduplication": "true"}},
            "Invalid parameter: Attributes Reason: ContentBasedDeduplication: only FIFO topics "
            "have this attribute",
        ),
    ],
)
def test_bad_topics_are_refused(sns, kwargs, message):
    assert error_of(sns.create_topic, **kwargs) == ("InvalidParameter", message, 400)


def test_bad_topic_attributes(sns):
    arn = make_topic(sns)
    assert error_of(
        sns.set_topic_attributes, TopicArn=arn, AttributeName="FifoTopic", AttributeValue="true"
    )[1] == ("Invalid parameter: AttributeName")
    assert error_of(
        sns.set_topic_attributes, TopicArn=arn, AttributeName="Policy", AttributeValue="{"
    )[1] == ("Invalid parameter: Policy: failed to parse JSON.")
    assert error_of(sns.get_topic_attributes, TopicArn="not-an-arn")[:2] == (
        "InvalidParameter",
        "Invalid parameter: TopicArn Reason: An ARN must have at least 6 elements, not 1",
    )
    other_account = arn.replace(ACCOUNT, "999999999999")
    code, message, status = error_of(sns.get_topic_attributes, TopicArn=other_account)
    assert (code, status) == ("AuthorizationError", 403)
    assert message.endswith(f"SNS:GetTopicAttributes on resource: {other_account}")


def test_list_topics_pages_by_100(daemon):
    sns = daemon.client("sns", region="eu-west-2", config=NO_RETRY)  # a region of its own
    names = sorted(f"page-{i:03d}" for i in range(105))
    for name in names:
        sns.create_topic(Name=name)
    first = sns.list_topics()
    assert len(first["Topics"]) == 100 and first["NextToken"]
    second = sns.list_topics(NextToken=first["NextToken"])
    assert "NextToken" not in second
    arns = [t["TopicArn"] for t in first["Topics"] + second["Topics"]]
    assert arns == [f"arn:aws:sns:eu-west-2:{ACCOUNT}:{n}" for n in names]
    # ListSubscriptionsByTopic pages the same way (the queues need not exist)
    topic = arns[0]
    for i in range(101):
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:eu-west-2:{ACCOUNT}:sub-{i:03d}"
        )
    page = sns.list_subscriptions_by_topic(TopicArn=topic)
    rest = sns.list_subscriptions_by_topic(TopicArn=topic, NextToken=page["NextToken"])
    assert len(page["Subscriptions"]) == 100 and len(rest["Subscriptions"]) == 1
    everything = sns.get_paginator("list_subscriptions").paginate()
    assert sum(len(p["Subscriptions"]) for p in everything) == 101
    assert error_of(sns.list_topics, NextToken="%%%")[0] == "InvalidParameter"


# -- subscriptions ---------------------------------------------------------------------------------


def test_subscription_attributes(sns, sqs):
    topic = make_topic(sns)
    _, queue_arn = make_queue(sqs)
    _, dlq_arn = make_queue(sqs, "dlq")
    policy = json.dumps({"kind": ["order"]})
    sub = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"FilterPolicy": policy, "RawMessageDelivery": "True"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    assert sub.startswith(topic + ":")
    again = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    assert again["SubscriptionArn"] == sub  # idempotent
    assert error_of(
        sns.subscribe,
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )[1] == (
        "Invalid parameter: Attributes Reason: Subscription already exists with different "
        "attributes"
    )
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attributes == {
        "SubscriptionArn": sub,
        "TopicArn": topic,
        "Owner": ACCOUNT,
        "SubscriptionPrincipal": f"arn:aws:iam::{ACCOUNT}:root",
        "Protocol": "sqs",
        "Endpoint": queue_arn,
        "PendingConfirmation": "false",
        "ConfirmationWasAuthenticated": "true",
        "RawMessageDelivery": "true",
        "FilterPolicy": policy,
        "FilterPolicyScope": "MessageAttributes",
    }
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn})
    for name, value in [
        ("RawMessageDelivery", "false"),
        ("FilterPolicyScope", "MessageBody"),
        ("RedrivePolicy", redrive),
    ]:
        sns.set_subscription_attributes(
            SubscriptionArn=sub, AttributeName=name, AttributeValue=value
        )
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attributes["RawMessageDelivery"] == "false"
    assert attributes["FilterPolicyScope"] == "MessageBody"
    assert attributes["RedrivePolicy"] == redrive
    sns.set_subscription_attributes(
        SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue=""
    )
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert "FilterPolicy" not in attributes and "FilterPolicyScope" not in attributes
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"] == "1"
    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    entry = {
        "SubscriptionArn": sub,
        "Owner": ACCOUNT,
        "Protocol": "sqs",
        "Endpoint": queue_arn,
        "TopicArn": topic,
    }
    assert listed == [entry]
    assert entry in sns.list_subscriptions()["Subscriptions"]
    sns.unsubscribe(SubscriptionArn=sub)
    sns.unsubscribe(SubscriptionArn=sub)  # twice: fine
    assert error_of(sns.get_subscription_attributes, SubscriptionArn=sub) == (
        "NotFound",
        "Subscription does not exist",
        404,
    )
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_subscription_errors(sns, sqs):
    topic = make_topic(sns)
    queue_url, queue_arn = make_queue(sqs)
    _, fifo_arn = make_queue(sqs, fifo=True)

    def subscribe_error(**kwargs: Any) -> tuple[str, str, int]:
        return error_of(sns.subscribe, TopicArn=kwargs.pop("TopicArn", topic), **kwargs)

    assert subscribe_error(Protocol="sqs", Endpoint=queue_url) == (
        "InvalidParameter",
        "Invalid parameter: SQS endpoint ARN",
        400,
    )
    assert subscribe_error(Protocol="sqs", Endpoint=fifo_arn)[1] == (
        "Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be "
        "subscribed to standard SNS topics"
    )
    assert subscribe_error(Protocol="pigeon", Endpoint="x")[1] == (
        "Invalid parameter: Amazon SNS does not support this protocol string: pigeon"
    )
    assert subscribe_error(Protocol="email", Endpoint="a@example.com")[0] == "InvalidParameter"
    assert subscribe_error(Protocol="http", Endpoint="https://example.com/")[1] == (
        "Invalid parameter: Endpoint must match the specified protocol"
    )
    code, message, status = subscribe_error(
        Protocol="sqs", Endpoint=queue_arn, Attributes={"FilterPolicy": '{"k": "v"}'}
    )
    assert (code, status) == ("InvalidParameter", 400)
    assert message.startswith("Invalid parameter: Attributes Reason: FilterPolicy: ")
    assert subscribe_error(
        Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "maybe"}
    )[1] == (
        "Invalid parameter: Attributes Reason: RawMessageDelivery: Invalid value [maybe]. "
        "Must be true or false."
    )
    gone = f"arn:aws:sns:us-east-1:{ACCOUNT}:{unique('gone')}"
    assert subscribe_error(TopicArn=gone, Protocol="sqs", Endpoint=queue_arn)[::2] == (
        "NotFound",
        404,
    )
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]

    def set_error(name: str, value: str) -> tuple[str, str, int]:
        return error_of(
            sns.set_subscription_attributes,
            SubscriptionArn=sub,
            AttributeName=name,
            AttributeValue=value,
        )

    code, message, _ = set_error("FilterPolicy", '{"price": [{"numeric": [">", "x"]}]}')
    assert code == "InvalidParameter" and message.startswith("Invalid parameter: FilterPolicy: ")
    assert set_error("FilterPolicyScope", "Body")[1] == (
        "Invalid parameter: FilterPolicyScope: Invalid value [Body]. Please use either "
        "MessageBody or MessageAttributes"
    )
    assert set_error("Colour", "red")[1] == "Invalid parameter: AttributeName"
    assert error_of(sns.get_subscription_attributes, SubscriptionArn="nope")[:2] == (
        "InvalidParameter",
        "Invalid parameter: SubscriptionArn Reason: An ARN must have at least 6 elements, not 1",
    )


# -- fan-out to SQS --------------------------------------------------------------------------------


def test_fan_out_with_filter_policies(sns, sqs):
    topic = make_topic(sns)
    (all_url, all_arn), (attr_url, attr_arn), (body_url, body_arn) = (
        make_queue(sqs) for _ in range(3)
    )
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=all_arn)
    attr_sub = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=attr_arn,
        Attributes={
            "FilterPolicy": json.dumps({"kind": ["order"], "price": [{"numeric": [">", 100]}]})
        },
    )["SubscriptionArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=body_arn,
        Attributes={
            "FilterPolicy": json.dumps({"detail": {"state": [{"prefix": "ship"}]}}),
            "FilterPolicyScope": "MessageBody",
        },
    )
    sent = sns.publish(
        TopicArn=topic,
        Message="big order",
        Subject="Order",
        MessageAttributes={
            "kind": S("order"),
            "price": {"DataType": "Number", "StringValue": "150.5"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
    )["MessageId"]
    sns.publish(
        TopicArn=topic,
        Message="small",
        MessageAttributes={"kind": S("order"), "price": {"DataType": "Number", "StringValue": "5"}},
    )
    sns.publish(TopicArn=topic, Message=json.dumps({"detail": {"state": "shipped"}}))
    sns.publish(TopicArn=topic, Message=json.dumps({"detail": {"state": "lost"}}))

    everything = receive(sqs, all_url, 4)
    assert len(everything) == 4
    [attr_message] = receive(sqs, attr_url, 1)
    body = attr_message["Body"]
    envelope = json.loads(body)
    assert list(json.loads(body, object_pairs_hook=dict)) == ENVELOPE_KEYS  # SNS's field order
    assert envelope["Type"] == "Notification"
    assert envelope["MessageId"] == sent
    assert (envelope["TopicArn"], envelope["Subject"], envelope["Message"]) == (
        topic,
        "Order",
        "big order",
    )
    assert envelope["SignatureVersion"] == "1"
    assert envelope["Timestamp"].endswith("Z")
    assert envelope["UnsubscribeURL"].endswith(f"Action=Unsubscribe&SubscriptionArn={attr_sub}")
    assert envelope["MessageAttributes"] == {
        "kind": {"Type": "String", "Value": "order"},
        "price": {"Type": "Number", "Value": "150.5"},
        "blob": {"Type": "Binary", "Value": base64.b64encode(b"\x00\x01\xff").decode()},
    }
    [body_message] = receive(sqs, body_url, 1)
    assert json.loads(json.loads(body_message["Body"])["Message"]) == {
        "detail": {"state": "shipped"}
    }
    assert empty(sqs, attr_url) and empty(sqs, body_url)


XRAY = "Root=1-3152b799-8954dae64eda91bc9a23a7e8;Parent=7fa8c0f79203be72;Sampled=1"


def test_publish_hands_the_x_ray_header_on_to_queues(sns, sqs):
    # AWS-validated: test_publish_sqs_from_sns_with_xray_propagation. A Publish (and here
    # PublishBatch) with X-Amzn-Trace-Id: the SQS messages' AWSTraceHeader is that header, for
    # envelope and raw subscriptions alike.
    def add(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = XRAY

    topic = make_topic(sns)
    url, arn = make_queue(sqs)
    raw_url, raw_arn = make_queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=raw_arn, Attributes={"RawMessageDelivery": "true"}
    )
    for operation in ("Publish", "PublishBatch"):
        sns.meta.events.register(f"before-send.sns.{operation}", add)
    try:
        sns.publish(TargetArn=topic, Message="X-Ray propagation test msg")
        sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{"Id": "1", "Message": "b"}])
    finally:
        for operation in ("Publish", "PublishBatch"):
            sns.meta.events.unregister(f"before-send.sns.{operation}", add)
    sns.publish(TopicArn=topic, Message="untraced")
    for queue_url in (url, raw_url):
        messages = receive(sqs, queue_url, 3, AttributeNames=["SentTimestamp", "AWSTraceHeader"])
        traces = sorted(str(m["Attributes"].get("AWSTraceHeader")) for m in messages)
        assert traces == sorted([XRAY, XRAY, "None"])


def test_raw_delivery_carries_message_attributes(sns, sqs):
    topic = make_topic(sns)
    url, arn = make_queue(sqs)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    sns.publish(
        TopicArn=topic,
        Message="raw body",
        MessageAttributes={
            "s": S("text"),
            "n": {"DataType": "Number", "StringValue": "111"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x02\x03\x04"},
        },
    )
    [message] = receive(sqs, url, 1, MessageAttributeNames=["All"])
    assert message["Body"] == "raw body"
    assert message["MessageAttributes"] == {
        "s": {"DataType": "String", "StringValue": "text"},
        "n": {"DataType": "Number", "StringValue": "111"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x02\x03\x04"},
    }


def test_message_structure_json(sns, sqs):
    topic = make_topic(sns)
    url, arn = make_queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sns.publish(
        TopicArn=topic,
        MessageStructure="json",
        Message=json.dumps({"default": "for all", "sqs": "for queues"}),
    )
    [message] = receive(sqs, url, 1)
    assert json.loads(message["Body"])["Message"] == "for queues"
    assert error_of(
        sns.publish, TopicArn=topic, MessageStructure="json", Message=json.dumps({"sqs": "x"})
    )[1] == ("Invalid parameter: Message Structure - No default entry in JSON message body")


def test_fifo_topic_to_fifo_queue_keeps_group_order(sns, sqs):
    name = unique("orders") + ".fifo"
    topic = sns.create_topic(Name=name, Attributes={"FifoTopic": "true"})["TopicArn"]
    url, arn = make_queue(sqs, fifo=True)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    sequences = []
    for i in range(6):
        group = "a" if i % 2 == 0 else "b"
        result = sns.publish(
            TopicArn=topic,
            Message=f"{group}{i}",
            MessageGroupId=group,
            MessageDeduplicationId=f"d{i}",
        )
        sequences.append(int(result["SequenceNumber"]))
    assert sequences == sorted(sequences) and len(set(sequences)) == 6
    repeat = sns.publish(
        TopicArn=topic, Message="again", MessageGroupId="a", MessageDeduplicationId="d0"
    )
    assert int(repeat["SequenceNumber"]) == sequences[0]  # a duplicate: the first one's
    received = receive(sqs, url, 6, MessageSystemAttributeNames=["MessageGroupId"])
    by_group: dict[str, list[str]] = {}
    for m in received:
        by_group.setdefault(m["Attributes"]["MessageGroupId"], []).append(m["Body"])
    assert by_group == {"a": ["a0", "a2", "a4"], "b": ["b1", "b3", "b5"]}
    assert empty(sqs, url)
    assert error_of(sns.publish, TopicArn=topic, Message="x")[1] == (
        "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"
    )
    assert error_of(sns.publish, TopicArn=topic, Message="x", MessageGroupId="g")[1] == (
        "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly"
    )


def test_fifo_envelope(sns, sqs):
    name = unique("env") + ".fifo"
    topic = sns.create_topic(
        Name=name, Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )["TopicArn"]
    url, arn = make_queue(sqs, fifo=True)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sequence = sns.publish(TopicArn=topic, Message="m", MessageGroupId="g")["SequenceNumber"]
    [message] = receive(sqs, url, 1)
    envelope = json.loads(message["Body"], object_pairs_hook=dict)
    assert list(envelope) == [
        "Type",
        "MessageId",
        "SequenceNumber",
        "TopicArn",
        "Message",
        "Timestamp",
        "UnsubscribeURL",
    ]
    assert envelope["SequenceNumber"] == sequence


# -- publish ---------------------------------------------------------------------------------------


def test_publish_batch(sns, sqs):
    topic = make_topic(sns)
    url, arn = make_queue(sqs)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    result = sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[
            {"Id": "one", "Message": "first", "MessageAttributes": {"k": S("v")}},
            {"Id": "two", "Message": "second", "Subject": "s"},
        ],
    )
    assert [s["Id"] for s in result["Successful"]] == ["one", "two"]
    assert all(len(s["MessageId"]) == 36 for s in result["Successful"])
    assert not result.get("Failed")
    assert sorted(m["Body"] for m in receive(sqs, url, 2)) == ["first", "second"]
    # one bad entry fails the whole request (AWS-recorded), with that entry's error
    for bad, code, text in (
        ({"Id": "bad", "Message": ""}, "InvalidParameter", "Invalid parameter: Empty message"),
        (
            {
                "Id": "attr",
                "Message": "x",
                "MessageAttributes": {"k": {"DataType": "Colour", "StringValue": "red"}},
            },
            "ParameterValueInvalid",
            "The message attribute 'k' has an invalid message attribute type, the set of "
            "supported type prefixes is Binary, Number, and String.",
        ),
    ):
        entries = [{"Id": "fine", "Message": "not published"}, bad]
        error = error_of(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=entries)
        assert error[:2] == (code, text)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)

    def batch_error(entries: list[dict[str, Any]]) -> tuple[str, str, int]:
        return error_of(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=entries)

    assert batch_error([])[0] == "EmptyBatchRequest"
    assert batch_error([{"Id": str(i), "Message": "m"} for i in range(11)])[0] == (
        "TooManyEntriesInBatchRequest"
    )
    assert batch_error([{"Id": "a", "Message": "m"}, {"Id": "a", "Message": "n"}])[0] == (
        "BatchEntryIdsNotDistinct"
    )
    assert batch_error([{"Id": "no spaces", "Message": "m"}])[0] == "InvalidBatchEntryId"
    big = "x" * 200_000
    assert batch_error([{"Id": "a", "Message": big}, {"Id": "b", "Message": big}])[0] == (
        "BatchRequestTooLong"
    )

    fifo = sns.create_topic(Name=unique("batch") + ".fifo", Attributes={"FifoTopic": "true"})[
        "TopicArn"
    ]
    result = sns.publish_batch(
        TopicArn=fifo,
        PublishBatchRequestEntries=[
            {
                "Id": f"e{i}",
                "Message": f"m{i}",
                "MessageGroupId": "g",
                "MessageDeduplicationId": f"d{i}",
            }
            for i in range(3)
        ],
    )
    numbers = [int(s["SequenceNumber"]) for s in result["Successful"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_publish_errors(sns):
    topic = make_topic(sns)
    assert error_of(sns.publish, TopicArn=topic, Message="") == (
        "InvalidParameter",
        "Invalid parameter: Empty message",
        400,
    )
    assert error_of(sns.publish, TopicArn=topic, Message="x" * 262_145)[1] == (
        "Invalid parameter: Message too long"
    )
    assert error_of(sns.publish, TopicArn=topic, Message="x", Subject="a\nb")[1] == (
        "Invalid parameter: Subject"
    )
    assert error_of(
        sns.publish,
        TopicArn=topic,
        Message="x",
        MessageAttributes={"k": {"DataType": "String", "StringValue": ""}},
    ) == (
        "ParameterValueInvalid",
        "The message attribute 'k' must contain non-empty message attribute value for message "
        "attribute type 'String'.",
        400,
    )
    assert error_of(sns.publish, TopicArn=topic, Message="x", MessageDeduplicationId="d")[1] == (
        "Invalid parameter: MessageDeduplicationId Reason: The request includes "
        "MessageDeduplicationId parameter that is not valid for this topic type"
    )
    gone = f"arn:aws:sns:us-east-1:{ACCOUNT}:{unique('gone')}"
    assert error_of(sns.publish, TopicArn=gone, Message="x") == (
        "NotFound",
        "Topic does not exist",
        404,
    )
    assert sns.publish(TargetArn=topic, Message="by TargetArn")["MessageId"]


# -- tags and permissions --------------------------------------------------------------------------


def test_tags(sns):
    topic = make_topic(sns)
    sns.tag_resource(
        ResourceArn=topic, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    )
    sns.tag_resource(ResourceArn=topic, Tags=[{"Key": "a", "Value": "3"}])
    tags = sns.list_tags_for_resource(ResourceArn=topic)["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "3"), ("b", "2")]
    sns.untag_resource(ResourceArn=topic, TagKeys=["a", "nope"])
    assert sns.list_tags_for_resource(ResourceArn=topic)["Tags"] == [{"Key": "b", "Value": "2"}]
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    assert error_of(sns.tag_resource, ResourceArn=topic, Tags=too_many) == (
        "TagLimitExceeded",
        "Could not complete request: tag quota of per resource exceeded",
        400,
    )
    gone = f"arn:aws:sns:us-east-1:{ACCOUNT}:{unique('gone')}"
    assert error_of(sns.list_tags_for_resource, ResourceArn=gone) == (
        "ResourceNotFound",
        "Resource does not exist",
        404,
    )
    with pytest.raises(sns.exceptions.ResourceNotFoundException):
        sns.tag_resource(ResourceArn=gone, Tags=[{"Key": "a", "Value": "1"}])


def test_add_and_remove_permission_go_to_sns_not_sqs(sns, sqs, daemon):
    topic = make_topic(sns)
    sns.add_permission(
        TopicArn=topic,
        Label="publishers",
        AWSAccountId=["111122223333"],
        ActionName=["Publish", "Subscribe"],
    )
    statements = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])[
        "Statement"
    ]
    assert statements[-1] == {
        "Sid": "publishers",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": ["SNS:Publish", "SNS:Subscribe"],
        "Resource": topic,
    }
    assert error_of(
        sns.add_permission,
        TopicArn=topic,
        Label="publishers",
        AWSAccountId=["1"],
        ActionName=["Publish"],
    )[1] == ("Invalid parameter: Statement already exists")
    assert error_of(
        sns.add_permission,
        TopicArn=topic,
        Label="other",
        AWSAccountId=["1"],
        ActionName=["SendMessage"],
    )[1] == ("Invalid parameter: Policy statement action out of service scope!")
    # The same action name on SQS reaches the SQS handler: the versions tell them apart.
    url, _ = make_queue(sqs)
    sqs.add_permission(
        QueueUrl=url, Label="publishers", AWSAccountIds=["111122223333"], Actions=["SendMessage"]
    )
    queue_policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert (
        queue_policy["Statement"][0]["Action"] == "SQS:SendMessage"
    )  # one action: a string, as SQS writes it
    sns.remove_permission(TopicArn=topic, Label="publishers")
    sns.remove_permission(TopicArn=topic, Label="publishers")  # unknown label: no change
    statements = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])[
        "Statement"
    ]
    assert [s["Sid"] for s in statements] == ["__default_statement_ID"]
    sqs.remove_permission(QueueUrl=url, Label="publishers")
    # A form AddPermission with SNS's Version is answered by SNS, whatever its parameters.
    form = {
        "Action": "AddPermission",
        "Version": "2010-03-31",
        "QueueUrl": url,
        "Label": "x",
        "AWSAccountId.member.1": "1",
        "ActionName.member.1": "Publish",
    }
    request = urllib.request.Request(daemon.url + "/", urllib.parse.urlencode(form).encode())
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    body = info.value.read().decode()
    assert info.value.code == 400
    assert "sns.amazonaws.com/doc/2010-03-31/" in body
    assert "Invalid parameter: TopicArn Reason: no value for required parameter" in body


# -- HTTP/S endpoints ------------------------------------------------------------------------------


class Endpoint:
    """A tiny HTTP server on 127.0.0.1 recording POSTs; answers with ``statuses`` in turn."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        self.statuses: list[int] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = endpoint.statuses.pop(0) if endpoint.statuses else 200
                endpoint.posts.put((self.path, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 10) -> tuple[str, dict[str, str], bytes]:
        return self.posts.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def confirmation(endpoint: Endpoint, path: str) -> dict[str, Any]:
    got_path, headers, body = endpoint.next()
    assert got_path == path
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    message = json.loads(body)
    assert headers["x-amz-sns-message-id"] == message["MessageId"]
    assert headers["x-amz-sns-topic-arn"] == message["TopicArn"]
    return message  # type: ignore[no-any-return]


def test_http_subscription_is_confirmed_then_notified(sns, endpoint):
    topic = make_topic(sns)
    url = endpoint.url + "/hook"
    pending = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url)
    assert pending["SubscriptionArn"] == "pending confirmation"

    path, headers, body = endpoint.next()
    assert path == "/hook"
    message = json.loads(body, object_pairs_hook=dict)
    assert list(message) == CONFIRMATION_KEYS
    assert message["Type"] == "SubscriptionConfirmation"
    assert message["TopicArn"] == topic
    assert message["Message"].startswith(f"You have chosen to subscribe to the topic {topic}.")
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert headers["x-amz-sns-message-id"] == message["MessageId"]
    assert headers["x-amz-sns-topic-arn"] == topic
    assert headers["content-type"] == "text/plain; charset=UTF-8"
    assert headers["user-agent"] == "Amazon Simple Notification Service Agent"

    [listed] = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert (listed["SubscriptionArn"], listed["Protocol"], listed["Endpoint"]) == (
        "PendingConfirmation",
        "http",
        url,
    )
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert (attributes["SubscriptionsPending"], attributes["SubscriptionsConfirmed"]) == ("1", "0")
    sns.publish(TopicArn=topic, Message="before confirmation")  # not delivered
    assert error_of(sns.confirm_subscription, TopicArn=topic, Token="0" * 128)[1] == (
        "Invalid parameter: Token"
    )

    # the SubscribeURL points at the daemon: a plain GET confirms
    with urllib.request.urlopen(message["SubscribeURL"], timeout=10) as r:
        answer = r.read().decode()
    assert "<ConfirmSubscriptionResult><SubscriptionArn>" in answer
    sub = answer.split("<SubscriptionArn>")[1].split("</SubscriptionArn>")[0]
    assert sub.startswith(topic + ":")
    again = sns.confirm_subscription(TopicArn=topic, Token=message["Token"])  # idempotent
    assert again["SubscriptionArn"] == sub
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attributes["PendingConfirmation"] == "false"
    assert attributes["Protocol"] == "http" and attributes["Endpoint"] == url

    sent = sns.publish(
        TopicArn=topic, Message="hello", Subject="Hi", MessageAttributes={"k": S("v")}
    )["MessageId"]
    path, headers, body = endpoint.next()
    envelope = json.loads(body, object_pairs_hook=dict)
    assert list(envelope) == ENVELOPE_KEYS
    assert (envelope["Type"], envelope["MessageId"], envelope["Message"]) == (
        "Notification",
        sent,
        "hello",
    )
    assert envelope["MessageAttributes"] == {"k": {"Type": "String", "Value": "v"}}
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["x-amz-sns-message-id"] == sent
    assert headers["x-amz-sns-topic-arn"] == topic
    assert headers["x-amz-sns-subscription-arn"] == sub
    assert endpoint.posts.empty()  # the message published before confirmation never came


def test_http_raw_delivery_filter_policy_and_confirm_action(sns, endpoint):
    topic = make_topic(sns)
    url = endpoint.url + "/raw"
    sub = sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=url,
        ReturnSubscriptionArn=True,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"k": ["yes"]})},
    )["SubscriptionArn"]
    assert sub.startswith(topic + ":")  # ReturnSubscriptionArn: the ARN even while pending
    token = confirmation(endpoint, "/raw")["Token"]
    assert sns.confirm_subscription(TopicArn=topic, Token=token)["SubscriptionArn"] == sub
    sns.publish(TopicArn=topic, Message="filtered out", MessageAttributes={"k": S("no")})
    sns.publish(TopicArn=topic, Message="plain body", MessageAttributes={"k": S("yes")})
    path, headers, body = endpoint.next()
    assert (path, body) == ("/raw", b"plain body")
    assert headers["x-amz-sns-rawdelivery"] == "true"
    assert headers["x-amz-sns-subscription-arn"] == sub
    time.sleep(0.3)
    assert endpoint.posts.empty()


def test_http_delivery_is_retried(sns, endpoint):
    topic = make_topic(sns)
    url = endpoint.url + "/flaky"
    sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=url,
        Attributes={
            "DeliveryPolicy": json.dumps(
                {"healthyRetryPolicy": {"minDelayTarget": 1, "numRetries": 2}}
            )
        },
    )
    token = confirmation(endpoint, "/flaky")["Token"]
    sns.confirm_subscription(TopicArn=topic, Token=token)
    endpoint.statuses = [503]
    sent = sns.publish(TopicArn=topic, Message="again and again")["MessageId"]
    _, first, _ = endpoint.next()
    started = time.monotonic()
    _, second, body = endpoint.next()
    assert time.monotonic() - started >= 0.8  # minDelayTarget 1 s
    assert first["x-amz-sns-message-id"] == second["x-amz-sns-message-id"] == sent
    assert json.loads(body)["Message"] == "again and again"
    time.sleep(0.3)
    assert endpoint.posts.empty()  # 200 the second time: done


def test_http_client_error_goes_to_the_dead_letter_queue(sns, sqs, endpoint):
    topic = make_topic(sns)
    dlq_url, dlq_arn = make_queue(sqs, "dlq")
    url = endpoint.url + "/gone"
    sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=url,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})},
    )
    sns.confirm_subscription(TopicArn=topic, Token=confirmation(endpoint, "/gone")["Token"])
    endpoint.statuses = [404]  # a client error: not retried
    sns.publish(TopicArn=topic, Message="nobody home")
    endpoint.next()
    [message] = receive(sqs, dlq_url, 1)
    assert json.loads(message["Body"])["Message"] == "nobody home"
    time.sleep(0.3)
    assert endpoint.posts.empty()


def test_http_redirect_is_not_retried(sns, sqs, endpoint):
    # "Amazon SNS considers all 5XX errors and 429 (too many requests sent) errors as
    # retryable. [...] All other errors are considered as permanent failures and retries will
    # not be attempted." (Amazon SNS message delivery retries): a 3xx is not followed or retried.
    topic = make_topic(sns)
    dlq_url, dlq_arn = make_queue(sqs, "dlq")
    url = endpoint.url + "/moved"
    sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=url,
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn}),
            "DeliveryPolicy": json.dumps(
                {"healthyRetryPolicy": {"minDelayTarget": 1, "numRetries": 2}}
            ),
        },
    )
    sns.confirm_subscription(TopicArn=topic, Token=confirmation(endpoint, "/moved")["Token"])
    endpoint.statuses = [301]
    sns.publish(TopicArn=topic, Message="moved away")
    endpoint.next()
    [message] = receive(sqs, dlq_url, 1)
    assert json.loads(message["Body"])["Message"] == "moved away"
    time.sleep(1.5)  # a retry would have come after minDelayTarget (1 s)
    assert endpoint.posts.empty()


def test_http_no_delay_retries_come_at_once(sns, endpoint):
    # The HTTP/S delivery policy's phases: numNoDelayRetries retries "immediately, with no
    # delay between them", then the others after minDelayTarget (Amazon SNS message delivery
    # retries, "Creating an HTTP/S delivery policy").
    topic = make_topic(sns)
    url = endpoint.url + "/busy"
    policy = {"minDelayTarget": 2, "maxDelayTarget": 2, "numRetries": 3, "numNoDelayRetries": 2}
    sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=url,
        Attributes={"DeliveryPolicy": json.dumps({"healthyRetryPolicy": policy})},
    )
    sns.confirm_subscription(TopicArn=topic, Token=confirmation(endpoint, "/busy")["Token"])
    endpoint.statuses = [503, 503, 503]
    sns.publish(TopicArn=topic, Message="try hard")
    endpoint.next()
    started = time.monotonic()
    endpoint.next()
    endpoint.next()
    assert time.monotonic() - started < 1.5  # two retries without delay
    endpoint.next()
    assert time.monotonic() - started >= 1.8  # the third after minDelayTarget (2 s)


def test_unsubscribed_http_endpoints_get_nothing(sns, endpoint):
    topic = make_topic(sns)
    url = endpoint.url + "/bye"
    sub = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url, ReturnSubscriptionArn=True)[
        "SubscriptionArn"
    ]
    sns.confirm_subscription(TopicArn=topic, Token=confirmation(endpoint, "/bye")["Token"])
    sns.unsubscribe(SubscriptionArn=sub)
    sns.publish(TopicArn=topic, Message="after unsubscribe")
    # what the endpoint gets is SNS's UnsubscribeConfirmation, then nothing
    path, headers, body = endpoint.next()
    assert path == "/bye"
    assert headers["x-amz-sns-message-type"] == "UnsubscribeConfirmation"
    assert headers["x-amz-sns-subscription-arn"] == sub
    message = json.loads(body)
    assert message["Type"] == "UnsubscribeConfirmation" and message["TopicArn"] == topic
    time.sleep(0.5)
    assert endpoint.posts.empty()
    # its SubscribeURL (fetched unsigned, as SNS's) restores the subscription
    assert unsigned_get(message["SubscribeURL"])[0] == 200
    sns.publish(TopicArn=topic, Message="restored")
    assert json.loads(endpoint.next()[2])["Message"] == "restored"


# -- found in review: SNS URLs, delivery policies, confirmation errors ---------------------------


def unsigned_get(url: str) -> tuple[int, str]:
    """An unsigned GET, as a subscriber fetching a URL from an SNS message makes it."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def confirmed_http_subscription(
    sns: Any, endpoint: Endpoint, path: str, topic: str | None = None, **kwargs: Any
) -> tuple[str, str, dict[str, Any]]:
    """(topic ARN, subscription ARN, the SubscriptionConfirmation message)."""
    topic = topic or make_topic(sns)
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url + path, **kwargs)
    message = confirmation(endpoint, path)
    sub = sns.confirm_subscription(TopicArn=topic, Token=message["Token"])["SubscriptionArn"]
    return topic, sub, message


def test_the_unsubscribe_url_in_messages_points_at_the_daemon_and_works(sns, sqs, endpoint):
    # Subscribed through the daemon, a subscription's messages carry an UnsubscribeURL at the
    # daemon (the address the client used, as the SubscribeURL), and an unsigned GET of it
    # unsubscribes: for queue and HTTP subscriptions alike.
    topic, http_sub, message = confirmed_http_subscription(sns, endpoint, "/u0")
    service_url = message["SubscribeURL"].split("/?", 1)[0]
    url, queue_arn = make_queue(sqs)
    queue_sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    sns.publish(TopicArn=topic, Message="hi")
    posted = json.loads(endpoint.next()[2])
    (received,) = receive(sqs, url, 1)
    queued = json.loads(received["Body"])
    for envelope, sub in ((posted, http_sub), (queued, queue_sub)):
        assert envelope["UnsubscribeURL"] == (
            f"{service_url}/?Action=Unsubscribe&SubscriptionArn={sub}"
        )
        status, body = unsigned_get(envelope["UnsubscribeURL"])
        assert status == 200, body
        assert error_of(sns.get_subscription_attributes, SubscriptionArn=sub)[0] == "NotFound"


def test_unsubscribe_url_as_aws_writes_it_unsubscribes(sns, endpoint, daemon):
    # AWS-validated: an unsigned GET of <service>/?Action=Unsubscribe&SubscriptionArn=<arn>
    # answers UnsubscribeResponse (200) and removes the subscription. No Version parameter.
    _, sub, _ = confirmed_http_subscription(sns, endpoint, "/u2")
    query = urllib.parse.urlencode({"Action": "Unsubscribe", "SubscriptionArn": sub})
    status, body = unsigned_get(f"{daemon.url}/?{query}")
    assert status == 200, body
    assert "<UnsubscribeResponse" in body
    assert error_of(sns.get_subscription_attributes, SubscriptionArn=sub)[0] == "NotFound"


def test_unsigned_unsubscribe_of_a_subscription_in_another_region(daemon, endpoint):
    # ConfirmSubscription already takes the region from the ARN for unsigned GETs; the
    # unsigned Unsubscribe does not, so a non-default-region subscription cannot be removed
    # through its URL (Version added here so that only the region handling is tested).
    sns_eu = daemon.client("sns", region="eu-west-3", config=NO_RETRY)
    _, sub, _ = confirmed_http_subscription(sns_eu, endpoint, "/u3")
    query = urllib.parse.urlencode(
        {"Action": "Unsubscribe", "SubscriptionArn": sub, "Version": "2010-03-31"}
    )
    status, body = unsigned_get(f"{daemon.url}/?{query}")
    assert status == 200, body
    assert error_of(sns_eu.get_subscription_attributes, SubscriptionArn=sub)[0] == "NotFound"


def test_unsigned_requests_do_not_create_regions(daemon):
    # An unsigned ConfirmSubscription or Unsubscribe takes its region from the ARN; one naming
    # a region without data answers as for a missing topic and creates no data directory
    # (unsigned requests are anyone's, also on a daemon that checks signatures).
    region = "ap-southeast-7"
    topic = f"arn:aws:sns:{region}:{ACCOUNT}:{unique('nowhere')}"
    confirm = urllib.parse.urlencode(
        {
            "Action": "ConfirmSubscription",
            "TopicArn": topic,
            "Token": TOKEN,
            "Version": "2010-03-31",
        }
    )
    status, body = unsigned_get(f"{daemon.url}/?{confirm}")
    assert status == 400 and "<Code>InvalidParameter</Code>" in body, body
    unsubscribe = urllib.parse.urlencode(
        {"Action": "Unsubscribe", "SubscriptionArn": f"{topic}:{uuid.uuid4()}"}
    )
    status, body = unsigned_get(f"{daemon.url}/?{unsubscribe}")
    assert status == 200 and "<UnsubscribeResponse" in body, body
    assert region not in os.listdir(daemon.data_dir)


# delivery policies: the Content-Type of POSTs and EffectiveDeliveryPolicy


def set_topic_delivery_policy(sns: Any, topic: str, http: dict[str, Any]) -> None:
    policy = {"http": {"disableSubscriptionOverrides": False, **http}}
    sns.set_topic_attributes(
        TopicArn=topic, AttributeName="DeliveryPolicy", AttributeValue=json.dumps(policy)
    )


def test_subscription_request_policy_sets_the_content_type(sns, endpoint):
    # AWS-validated (test_subscribe_external_http_endpoint_content_type[True]): a subscription
    # DeliveryPolicy {"requestPolicy": {"headerContentType": "text/csv"}} -> the Notification
    # POST has Content-Type: text/csv (the confirmation stays text/plain; charset=UTF-8).
    policy = json.dumps({"requestPolicy": {"headerContentType": "text/csv"}})
    topic, _, _ = confirmed_http_subscription(
        sns, endpoint, "/c1", Attributes={"DeliveryPolicy": policy}
    )
    sns.publish(TopicArn=topic, Message="a,b")
    _, headers, _ = endpoint.next()
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["content-type"] == "text/csv"


def test_topic_default_request_policy_sets_the_content_type(sns, endpoint):
    # AWS-validated (test_subscribe_external_http_endpoint_content_type[False]): topic
    # DeliveryPolicy {"http": {"defaultRequestPolicy": {"headerContentType": "application/json"}}}
    # -> Notification POSTs carry Content-Type: application/json.
    topic = make_topic(sns)
    set_topic_delivery_policy(
        sns, topic, {"defaultRequestPolicy": {"headerContentType": "application/json"}}
    )
    confirmed_http_subscription(sns, endpoint, "/c2", topic=topic)
    sns.publish(TopicArn=topic, Message="{}")
    _, headers, _ = endpoint.next()
    assert headers["content-type"] == "application/json"


def test_topic_effective_delivery_policy_reflects_the_delivery_policy(sns):
    # AWS-validated (test_topic_delivery_policy_crud "get-topic-attrs-after-update").
    topic = make_topic(sns)
    set_topic_delivery_policy(
        sns,
        topic,
        {"defaultHealthyRetryPolicy": {"minDelayTarget": 5, "maxDelayTarget": 6, "numRetries": 1}},
    )
    effective = json.loads(
        sns.get_topic_attributes(TopicArn=topic)["Attributes"]["EffectiveDeliveryPolicy"]
    )
    assert effective["http"]["defaultHealthyRetryPolicy"] == {
        "minDelayTarget": 5,
        "maxDelayTarget": 6,
        "numRetries": 1,
        "numMaxDelayRetries": 0,
        "numNoDelayRetries": 0,
        "numMinDelayRetries": 0,
        "backoffFunction": "linear",
    }


def test_subscription_effective_delivery_policy_has_the_subscription_shape(sns, endpoint):
    # AWS-validated (test_subscribe_external_http_endpoint_content_type "sub-attrs"): an HTTP
    # subscription's EffectiveDeliveryPolicy is {"healthyRetryPolicy": {...}, "sicklyRetryPolicy",
    # "throttlePolicy", "requestPolicy", "guaranteed"}, not the topic's {"http": {...}} shape.
    topic = make_topic(sns)
    sub = sns.subscribe(
        TopicArn=topic,
        Protocol="http",
        Endpoint=endpoint.url + "/e1",
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    effective = json.loads(
        sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"][
            "EffectiveDeliveryPolicy"
        ]
    )
    assert "http" not in effective
    assert effective["healthyRetryPolicy"]["numRetries"] == 3
    assert effective["healthyRetryPolicy"]["minDelayTarget"] == 20


# ConfirmSubscription errors

TOKEN = "51b2ff3edb475b7d91550e0ab6edf0c1de2a34e6ebaf6c2262a001bcb7e051c43aa00022ceecce70bd2a67" + (
    "b2042da8d8eb47fef7a4e4e942d23e7fa56146b9ee35da040b4b8af564cc4184a7391c834cb75d75c22981f7"
)


def test_confirm_subscription_on_unknown_topic_is_invalid_parameter_not_not_found(sns):
    # AWS-validated (test_sns_confirm_subscription_wrong_token "topic-not-exists"):
    # InvalidParameter, "Invalid parameter: Token", HTTP 400 -- never NotFound 404.
    gone = f"arn:aws:sns:us-east-1:{ACCOUNT}:{unique('gone')}"
    code, message, status = error_of(sns.confirm_subscription, TopicArn=gone, Token=TOKEN)
    assert (code, message, status) == ("InvalidParameter", "Invalid parameter: Token", 400)


def test_subscribe_url_with_another_region_is_invalid_topic(sns, endpoint, daemon):
    # AWS-validated (test_subscribe_external_http_endpoint "different-region-arn-confirm"):
    # the SubscribeURL with the topic ARN's region changed -> 400 InvalidParameter
    # "Invalid parameter: Topic". (millpond serves every region on one host, so only the
    # code and status are required here: AWS never answers ConfirmSubscription with 404.)
    topic = make_topic(sns)
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url + "/r1")
    token = confirmation(endpoint, "/r1")["Token"]
    other = topic.replace(":us-east-1:", ":eu-central-1:")
    query = urllib.parse.urlencode(
        {
            "Action": "ConfirmSubscription",
            "TopicArn": other,
            "Token": token,
            "Version": "2010-03-31",
        }
    )
    status, body = unsigned_get(f"{daemon.url}/?{query}")
    assert status == 400, body
    assert "<Code>InvalidParameter</Code>" in body


# -- found by fuzzing the wire: odd input must still get a well-formed, truthful reply ----------


def raw_sns(daemon: Any, form: list[tuple[str, str]]) -> tuple[int, str]:
    """A form-encoded SNS query request as is (no botocore validation in the way)."""
    data = urllib.parse.urlencode([("Version", "2010-03-31"), *form]).encode()
    try:
        with urllib.request.urlopen(daemon.url + "/", data, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_replies_are_well_formed_xml_whatever_characters_were_sent(daemon, sns):
    # XML 1.0 cannot carry most control characters, not even as &#x1;. A DisplayName (or tag,
    # or an error message quoting the input) holding one made the reply unparsable.
    import xml.etree.ElementTree as ET

    topic = make_topic(sns)
    status, body = raw_sns(
        daemon,
        [
            ("Action", "SetTopicAttributes"),
            ("TopicArn", topic),
            ("AttributeName", "DisplayName"),
            ("AttributeValue", "a\x01b\x00"),
        ],
    )
    assert status == 200, body
    status, body = raw_sns(daemon, [("Action", "GetTopicAttributes"), ("TopicArn", topic)])
    assert status == 200
    entries = ET.fromstring(body).iter("{http://sns.amazonaws.com/doc/2010-03-31/}entry")
    attributes = {e[0].text: e[1].text for e in entries}
    assert attributes["DisplayName"] == "a\ufffdb\ufffd"
    status, body = raw_sns(
        daemon, [("Action", "Subscribe"), ("TopicArn", topic), ("Protocol", "\x01")]
    )
    assert status == 400
    assert ET.fromstring(body).find(".//{*}Code").text == "InvalidParameter"


def test_permissions_on_a_policy_whose_statement_is_not_a_list(sns):
    # A Policy set with "Statement": 5 (any JSON object is taken) made AddPermission and
    # RemovePermission fail on an internal TypeError ("invalid type or shape: 'int' object is
    # not iterable"), though their parameters were right.
    topic = make_topic(sns)
    sns.set_topic_attributes(
        TopicArn=topic, AttributeName="Policy", AttributeValue='{"Statement": 5}'
    )
    sns.add_permission(
        TopicArn=topic, Label="pub", AWSAccountId=["111122223333"], ActionName=["Publish"]
    )
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["pub"]
    sns.remove_permission(TopicArn=topic, Label="pub")
    sns.remove_permission(TopicArn=topic, Label="never-added")


def test_publish_batch_entries_are_read_by_their_wire_names_only(daemon, sns, sqs):
    # PublishBatchRequestEntries.member.N.{Id, Message, ...}: the embedded API's keyword names
    # ("id", "message", "subject", ...) are no SNS members. An entry given only as those has no
    # Id, so the batch fails (and delivers nothing) instead of publishing it.
    topic = make_topic(sns)
    url, arn = make_queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    entries = "PublishBatchRequestEntries.member"
    status, body = raw_sns(
        daemon,
        [
            ("Action", "PublishBatch"),
            ("TopicArn", topic),
            (f"{entries}.1.Id", "a"),
            (f"{entries}.1.Message", "first"),
            (f"{entries}.2.id", "b"),
            (f"{entries}.2.message", "second"),
        ],
    )
    assert status == 400, body
    assert "<Code>InvalidBatchEntryId</Code>" in body
    assert empty(sqs, url)


def test_a_content_type_with_line_breaks_never_reaches_the_request(sns, endpoint):
    # headerContentType is copied into the POST's Content-Type header: a CR LF in it wrote
    # headers of its own (X-Injected) into the request. Such a value is not a header value:
    # the POST carries the default Content-Type.
    topic = make_topic(sns)
    set_topic_delivery_policy(
        sns, topic, {"defaultRequestPolicy": {"headerContentType": "text/plain\r\nX-Injected: 1"}}
    )
    confirmed_http_subscription(sns, endpoint, "/crlf", topic=topic)
    sns.publish(TopicArn=topic, Message="hi")
    _, headers, _ = endpoint.next()
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert "x-injected" not in headers
    assert headers["content-type"] == "text/plain; charset=UTF-8"


@pytest.mark.parametrize("action", ["SetTopicAttributes", "SetSubscriptionAttributes"])
@pytest.mark.parametrize("name_key", ["AttributeName.x", "AttributeName.member.1"])
def test_an_attribute_name_that_is_not_a_string_is_invalid(daemon, sns, sqs, action, name_key):
    # AttributeName.x=... (a structure) reached a dict lookup: "invalid type or shape:
    # unhashable type: 'dict'" instead of SNS's "Invalid parameter: AttributeName".
    topic = make_topic(sns)
    _, arn = make_queue(sqs)
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
    target = ("TopicArn", topic) if action == "SetTopicAttributes" else ("SubscriptionArn", sub)
    status, body = raw_sns(
        daemon,
        [("Action", action), target, (name_key, "RawMessageDelivery"), ("AttributeValue", "x")],
    )
    assert status == 400
    assert "<Code>InvalidParameter</Code><Message>Invalid parameter: AttributeName<" in body


def test_http_endpoints_with_control_or_non_ascii_characters_are_refused(sns):
    # A URL cannot hold control characters (RFC 3986); one in the path was stored and then
    # written into the POST's request line (and listed as U+FFFD in XML replies). Nor
    # non-ASCII ones: such a subscription was stored, and each POST to it failed to encode its
    # request line, was retried as if the endpoint were down, and never arrived.
    topic = make_topic(sns)
    for url in ("http://127.0.0.1:9/a\x01b", "http://127.0.0.1:9/\x7f", "http://127.0.0.1:9/café"):
        code, message, status = error_of(
            sns.subscribe, TopicArn=topic, Protocol="http", Endpoint=url
        )
        assert (code, message, status) == ("InvalidParameter", "Invalid parameter: Endpoint", 400)
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_a_deeply_dotted_parameter_is_ignored_not_an_internal_error(daemon):
    # "a.a.a....b" (1000 levels) made the codec's nested rebuild recurse past Python's limit:
    # 500 InternalError. No SNS member is nested that deep: it is an unknown parameter, which
    # SNS ignores.
    status, body = raw_sns(daemon, [("Action", "ListTopics"), ("a." * 1000 + "b", "x")])
    assert status == 200, body
    assert "<ListTopicsResult>" in body


def test_malformed_arns_name_their_element_count(sns):
    # AWS-validated: test_publish_wrong_arn_format, test_create_topic_with_attributes,
    # test_subscribe_with_invalid_topic: an ARN of fewer than 6 elements says how many it has;
    # an empty TopicArn is such an ARN (1 element), not a missing parameter.
    def reason(count: int) -> str:
        return f"Reason: An ARN must have at least 6 elements, not {count}"

    for arn, count in (("randomstring", 1), ("randomstring:1", 2), ("", 1)):
        assert error_of(sns.publish, TopicArn=arn, Message="m") == (
            "InvalidParameter",
            f"Invalid parameter: TopicArn {reason(count)}",
            400,
        )
    assert error_of(sns.get_topic_attributes, TopicArn="test-topic")[1] == (
        f"Invalid parameter: TopicArn {reason(1)}"
    )
    endpoint = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"
    for arn, count in (("randomstring", 1), ("arn:aws:sns:us-east-1:random", 5)):
        assert error_of(sns.subscribe, TopicArn=arn, Protocol="sqs", Endpoint=endpoint)[1] == (
            f"Invalid parameter: TopicArn {reason(count)}"
        )


def test_malformed_subscription_arns(sns):
    # AWS-validated: test_unsubscribe_wrong_arn_format: fewer than 6 elements name their count;
    # a topic's ARN (6 elements, no subscription id) is "Invalid parameter: SubscriptionId".
    for arn, message in (
        ("randomstring", "SubscriptionArn Reason: An ARN must have at least 6 elements, not 1"),
        (
            "arn:aws:sns:us-east-1:random",
            "SubscriptionArn Reason: An ARN must have at least 6 elements, not 5",
        ),
        (f"arn:aws:sns:us-east-1:{ACCOUNT}:random", "SubscriptionId"),
        ("", "SubscriptionArn Reason: no value for required parameter"),
    ):
        assert error_of(sns.unsubscribe, SubscriptionArn=arn) == (
            "InvalidParameter",
            f"Invalid parameter: {message}",
            400,
        )


def test_publish_to_a_platform_endpoint_target_arn(sns):
    # AWS-validated: test_publish_non_existent_target: a TargetArn naming a (mobile push)
    # endpoint that does not exist is InvalidParameter 400, not a missing topic.
    make_topic(sns)
    target = f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/APNS/abcdef/0f7d5971-aa8b-4bd5-b585"
    assert error_of(sns.publish, TargetArn=target, Message="push") == (
        "InvalidParameter",
        "Invalid parameter: TargetArn Reason: No endpoint found for the target arn specified",
        400,
    )


def test_batch_entry_without_attribute_data_type_names_the_entry(daemon):
    # AWS-validated: test_empty_or_wrong_message_attributes ("batch-fully_missing_data_type"):
    # the ValidationError's path starts at the entry, 'publishBatchRequestEntries.N.member.'.
    loose = daemon.client(
        "sns", config=Config(retries={"total_max_attempts": 1}, parameter_validation=False)
    )
    topic = make_topic(loose)
    attributes = {"attr1": {"StringValue": "x"}}
    entries = [
        {"Id": "1", "Message": "ok"},
        {"Id": "2", "Message": "m", "MessageAttributes": attributes},
    ]
    assert error_of(loose.publish_batch, TopicArn=topic, PublishBatchRequestEntries=entries) == (
        "ValidationError",
        "1 validation error detected: Value null at 'publishBatchRequestEntries.2.member."
        "messageAttributes.attr1.member.dataType' failed to satisfy constraint: Member must not "
        "be null",
        400,
    )
    assert error_of(loose.publish, TopicArn=topic, Message="m", MessageAttributes=attributes)[
        1
    ] == (
        "1 validation error detected: Value null at 'messageAttributes.attr1.member.dataType' "
        "failed to satisfy constraint: Member must not be null"
    )


def test_topic_attributes_list_signature_version_only_once_set(sns):
    # AWS-validated: test_create_topic_test_arn, test_topic_get_attributes_with_fifo_false:
    # a new standard topic's attributes are these, without SignatureVersion;
    # test_create_topic_with_attributes: one set ("2") is listed.
    arn = make_topic(sns)
    assert sorted(sns.get_topic_attributes(TopicArn=arn)["Attributes"]) == [
        "DisplayName",
        "EffectiveDeliveryPolicy",
        "Owner",
        "Policy",
        "SubscriptionsConfirmed",
        "SubscriptionsDeleted",
        "SubscriptionsPending",
        "TopicArn",
    ]
    signed = make_topic(sns, Attributes={"SignatureVersion": "2"})
    assert sns.get_topic_attributes(TopicArn=signed)["Attributes"]["SignatureVersion"] == "2"

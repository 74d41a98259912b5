"""SNS topics (issue 4): fan-out to queues, filter policies, envelope, raw delivery, FIFO topics.

Every test runs on both cores (the ``impl`` fixture behind ``broker``); time comes from the
manual clock, so the envelope's Timestamp is known to the millisecond.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import millpond
from millpond import errors, sns_envelope, topic
from millpond.message_attributes import message_attributes_size
from millpond.sns_envelope import (
    InvalidParameter,
    ParameterValueInvalid,
    ValidationError,
    iso_timestamp,
    signature,
    string_to_sign,
)

from .storage_probe import meta_keys

ARN = "arn:aws:sns:us-east-1:123456789012"
QARN = "arn:aws:sqs:us-east-1:123456789012"
ENVELOPE_KEYS = [
    "Type",
    "MessageId",
    "TopicArn",
    "Subject",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
    "UnsubscribeURL",
    "MessageAttributes",
]


def S(value: str) -> dict[str, Any]:
    return {"DataType": "String", "StringValue": value}


def N(value: str) -> dict[str, Any]:
    return {"DataType": "Number", "StringValue": value}


def SA(values: list[Any]) -> dict[str, Any]:
    return {"DataType": "String.Array", "StringValue": json.dumps(values)}


def B(value: bytes) -> dict[str, Any]:
    return {"DataType": "Binary", "BinaryValue": value}


def drain(q: millpond.Queue) -> list[millpond.Message]:
    """Every visible message of the queue (received, then deleted)."""
    out: list[millpond.Message] = []
    while True:
        batch = q.receive(10)
        if not batch:
            return out
        out += batch
        q.delete_batch([m.receipt_handle for m in batch])


def bodies(q: millpond.Queue) -> list[bytes]:
    return [m.body for m in drain(q)]


def envelopes(q: millpond.Queue) -> list[dict[str, Any]]:
    return [json.loads(body) for body in bodies(q)]


def ordered_keys(body: bytes) -> list[str]:
    return list(json.loads(body, object_pairs_hook=lambda pairs: dict(pairs)).keys())


# -- topics ---------------------------------------------------------------------------------------


def test_new_topic_has_the_sns_attributes(broker):
    t = broker.create_topic("orders")
    assert (t.name, t.arn) == ("orders", f"{ARN}:orders")
    attrs = t.get_attributes()
    policy = json.loads(attrs.pop("Policy"))
    assert attrs == {
        "TopicArn": f"{ARN}:orders",
        "Owner": "123456789012",
        "DisplayName": "",
        "EffectiveDeliveryPolicy": (
            '{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":20,"maxDelayTarget":20,'
            '"numRetries":3,"numMaxDelayRetries":0,"numNoDelayRetries":0,'
            '"numMinDelayRetries":0,"backoffFunction":"linear"},'
            '"disableSubscriptionOverrides":false,'
            '"defaultRequestPolicy":{"headerContentType":"text/plain; charset=UTF-8"}}}'
        ),
        # AWS-validated: test_create_topic_test_arn: no SignatureVersion until one is set
        "SubscriptionsConfirmed": "0",
        "SubscriptionsPending": "0",
        "SubscriptionsDeleted": "0",
    }
    statement = policy["Statement"][0]
    assert policy["Id"] == "__default_policy_ID"
    assert statement["Sid"] == "__default_statement_ID"
    assert statement["Resource"] == f"{ARN}:orders"
    assert statement["Condition"] == {"StringEquals": {"AWS:SourceOwner": "123456789012"}}
    assert "SNS:Publish" in statement["Action"] and len(statement["Action"]) == 8


def test_create_topic_is_idempotent_unless_an_attribute_differs(broker):
    t = broker.create_topic("orders", {"DisplayName": "Orders"})
    assert broker.create_topic("orders", {"DisplayName": "Orders"}) is t
    assert broker.create_topic("orders") is t
    assert broker.create_topic("orders", {"SignatureVersion": "1"}) is t  # the default
    with pytest.raises(InvalidParameter) as info:
        broker.create_topic("orders", {"DisplayName": "Other"})
    assert str(info.value) == (
        "Invalid parameter: Attributes Reason: Topic already exists with different attributes"
    )
    assert info.value.code == "InvalidParameter"
    with pytest.raises(InvalidParameter, match="different attributes"):
        broker.create_topic("orders", {"SignatureVersion": "2"})
    assert broker.list_topics() == ["orders"]


@pytest.mark.parametrize(
    "name, attributes",
    [
        ("", None),
        ("a" * 257, None),
        ("a b", None),
        ("a:b", None),
        ("orders.fifo", None),  # a FIFO name needs FifoTopic=true
        ("orders", {"FifoTopic": "true"}),  # FifoTopic=true needs the .fifo suffix
        ("a" * 252 + ".fifo", {"FifoTopic": "true"}),  # 257 characters with the suffix
        ("orders", {"FifoTopic": "yes"}),
        ("orders", {"NoSuchAttribute": "1"}),
        ("orders", {"ContentBasedDeduplication": "true"}),  # FIFO topics only
        ("orders", {"SignatureVersion": "3"}),
        ("orders", {"Policy": "not json"}),
        ("orders", {"TracingConfig": "Sometimes"}),
        ("orders", {"SQSSuccessFeedbackSampleRate": "101"}),
        ("orders", {"SQSSuccessFeedbackSampleRate": "\u00b2"}),  # a digit, not 0-9
        ("orders", {"HTTPSuccessFeedbackSampleRate": "\u0663"}),  # Arabic-Indic three
    ],
)
def test_invalid_topics_are_refused(broker, name, attributes):
    with pytest.raises(InvalidParameter, match="^Invalid parameter: "):
        broker.create_topic(name, attributes)
    assert broker.list_topics() == []


def test_topic_name_limits(broker):
    long_name = "a" * 256
    assert broker.create_topic(long_name).name == long_name
    assert broker.create_topic("A-b_9").arn == f"{ARN}:A-b_9"
    fifo = broker.create_topic("x" * 251 + ".fifo", {"FifoTopic": "true"})  # 256 in all
    assert fifo.fifo
    assert broker.list_topics() == sorted(["A-b_9", long_name, "x" * 251 + ".fifo"])


def test_fifo_topic_attributes(broker):
    t = broker.create_topic("orders.fifo", {"FifoTopic": True, "ContentBasedDeduplication": True})
    attrs = t.get_attributes()
    assert attrs["FifoTopic"] == "true"
    assert attrs["ContentBasedDeduplication"] == "true"
    assert attrs["FifoThroughputScope"] == "Topic"
    plain = broker.create_topic("plain", {"FifoTopic": "false"})
    assert "FifoTopic" not in plain.get_attributes()  # SNS does not store FifoTopic=false
    t.set_attributes({"ContentBasedDeduplication": "false", "FifoThroughputScope": "MessageGroup"})
    assert t.get_attributes()["ContentBasedDeduplication"] == "false"
    assert t.get_attributes()["FifoThroughputScope"] == "MessageGroup"
    with pytest.raises(InvalidParameter, match="different attributes"):
        broker.create_topic(
            "orders.fifo", {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
        )


def test_set_topic_attributes(broker):
    t = broker.create_topic("orders")
    t.set_attributes({"DisplayName": "Orders", "DeliveryPolicy": {"http": {}}})
    attrs = t.get_attributes()
    assert attrs["DisplayName"] == "Orders"
    assert json.loads(attrs["DeliveryPolicy"]) == {"http": {}}
    with pytest.raises(InvalidParameter, match="^Invalid parameter: AttributeName$"):
        t.set_attributes({"FifoTopic": "true"})
    with pytest.raises(InvalidParameter, match="^Invalid parameter: AttributeName$"):
        t.set_attributes({"Bogus": "1"})
    with pytest.raises(InvalidParameter, match="SignatureVersion"):
        t.set_attributes({"SignatureVersion": "9"})
    with pytest.raises(InvalidParameter, match="ContentBasedDeduplication"):
        t.set_attributes({"ContentBasedDeduplication": "true"})
    assert t.get_attributes()["DisplayName"] == "Orders"  # the refused calls changed nothing


def test_topic_by_name_or_arn_and_missing_topics(broker):
    t = broker.create_topic("orders")
    assert broker.topic("orders") is t
    assert broker.topic(f"{ARN}:orders") is t
    with pytest.raises(errors.TopicNotFound, match="Topic does not exist"):
        broker.topic("nope")
    with pytest.raises(errors.TopicNotFound):
        broker.topic("arn:aws:sns:eu-west-1:123456789012:orders")
    assert errors.TopicNotFound.code == "NotFound"


def test_delete_topic_removes_its_subscriptions(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q, filter_policy={"k": ["v"]})
    other = broker.create_topic("other")
    kept = other.subscribe(q)
    broker.delete_topic("orders")
    assert broker.list_topics() == ["other"]
    assert [s.arn for s in broker._topics.list_subscriptions()] == [kept.arn]
    with pytest.raises(errors.TopicNotFound):
        sub.get_attributes()
    with pytest.raises(errors.TopicNotFound):
        t.publish("x")
    with pytest.raises(errors.TopicNotFound):
        broker.topic("orders")
    broker.delete_topic("orders")  # idempotent, as SNS
    again = broker.create_topic("orders")
    assert again.list_subscriptions() == []
    again.publish("x", attributes={"k": S("v")})
    assert bodies(q) == []  # the old subscription is gone for good
    other.publish("y")
    assert [e["Message"] for e in envelopes(q)] == ["y"]


# -- subscriptions --------------------------------------------------------------------------------


def test_subscription_attributes(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q)
    assert sub.arn.startswith(f"{ARN}:orders:") and len(sub.arn.rsplit(":", 1)[1]) == 36
    assert sub.get_attributes() == {
        "SubscriptionArn": sub.arn,
        "TopicArn": f"{ARN}:orders",
        "Owner": "123456789012",
        "SubscriptionPrincipal": "arn:aws:iam::123456789012:root",
        "Protocol": "sqs",
        "Endpoint": f"{QARN}:q",
        "PendingConfirmation": "false",
        "ConfirmationWasAuthenticated": "true",
        "RawMessageDelivery": "false",
    }
    sub.set_attributes(
        {
            "FilterPolicy": '{"k": ["v"]}',
            "RawMessageDelivery": "TRUE",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": f"{QARN}:dlq"}),
        }
    )
    attrs = sub.get_attributes()
    assert attrs["FilterPolicy"] == '{"k": ["v"]}'  # as given
    assert attrs["FilterPolicyScope"] == "MessageAttributes"
    assert attrs["RawMessageDelivery"] == "true"
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": f"{QARN}:dlq"}
    assert t.get_attributes()["SubscriptionsConfirmed"] == "1"
    assert broker._topics.subscription(sub.arn) == sub
    assert t.subscription(sub.arn).endpoint == f"{QARN}:q"


def test_subscribe_is_idempotent_unless_an_attribute_differs(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q, filter_policy={"k": ["v"]}, raw_message_delivery=True)
    # the same attributes (policy as parsed, not as spelled), or none given: the same one
    assert t.subscribe(q, filter_policy='{ "k" : [ "v" ] }', raw_message_delivery="true") == sub
    assert t.subscribe(f"{QARN}:q") == sub
    assert t.subscribe("q", filter_policy_scope="MessageAttributes") == sub
    for different in (
        {"filter_policy": {"k": ["w"]}},
        {"raw_message_delivery": False},
        {"filter_policy_scope": "MessageBody"},
    ):
        with pytest.raises(InvalidParameter) as info:
            t.subscribe(q, **different)
        assert str(info.value) == (
            "Invalid parameter: Attributes Reason: Subscription already exists with different "
            "attributes"
        )
    assert len(t.list_subscriptions()) == 1


def test_subscribe_endpoints(broker):
    t = broker.create_topic("orders")
    q = broker.create_queue("q")
    assert t.subscribe(f"{QARN}:q").endpoint == q.arn
    later = t.subscribe("not-yet")  # like SNS, the queue need not exist yet
    assert later.endpoint == f"{QARN}:not-yet"
    for bad in ("arn:aws:sqs:us-east-1:123456789012", "https://sqs.example/q", "a b", 5):
        with pytest.raises(InvalidParameter, match="SQS endpoint ARN"):
            t.subscribe(bad)
    with pytest.raises(InvalidParameter, match="region and account"):
        t.subscribe("arn:aws:sqs:eu-west-1:123456789012:q")


def test_fifo_queues_and_standard_topics_do_not_mix(broker):
    fifo_queue = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    standard = broker.create_topic("orders")
    with pytest.raises(InvalidParameter) as info:
        standard.subscribe(fifo_queue)
    assert "FIFO SQS Queues can not be subscribed to standard SNS topics" in str(info.value)
    with pytest.raises(InvalidParameter, match="FIFO SQS Queues can not be subscribed"):
        standard.subscribe(f"{QARN}:other.fifo")
    fifo_topic = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    assert fifo_topic.subscribe(fifo_queue).endpoint == fifo_queue.arn
    assert standard.list_subscriptions() == []


def test_a_fifo_topic_delivers_to_standard_queues_too(broker, clock):
    # "Amazon SNS FIFO topics support delivery to both Amazon SQS standard and FIFO queues"
    # (SNS Developer Guide, fifo-message-delivery.html): millpond refused standard queues.
    plain = broker.create_queue("plain")
    fifo_queue = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    t = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    sub = t.subscribe(plain)
    t.subscribe(fifo_queue)
    assert sub.endpoint == plain.arn
    first = t.publish_message("a", group_id="g1", deduplication_id="d1")
    t.publish("a again", group_id="g1", deduplication_id="d1")  # the topic drops it
    (got,) = drain(plain)
    envelope = json.loads(got.body)
    assert envelope["Message"] == "a"
    assert envelope["SequenceNumber"] == first["SequenceNumber"]
    # no MessageGroupId in a standard queue (AWS-recorded: LocalStack's
    # test_fifo_topic_to_regular_sqs), where a standard topic's is kept (fair queues)
    assert got.group_id is None
    assert [json.loads(m.body)["MessageId"] for m in drain(fifo_queue)] == [first["MessageId"]]
    dlq = broker.create_queue("plain-dlq")  # a standard dead-letter queue (AWS-recorded)
    sub.set_attributes({"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})})


@pytest.mark.parametrize(
    "attributes, message",
    [
        (
            {"RawMessageDelivery": "maybe"},
            "Invalid parameter: {where}RawMessageDelivery: Invalid value [maybe]. "
            "Must be true or false.",
        ),
        (
            {"FilterPolicyScope": "Body"},
            "Invalid parameter: {where}FilterPolicyScope: Invalid value [Body]. "
            "Please use either MessageBody or MessageAttributes",
        ),
        ({"Protocol": "http"}, "Invalid parameter: {where}AttributeName"),
        (
            {"FilterPolicy": '{"k": [{"suffix": 5}]}'},
            "Invalid parameter: {where}FilterPolicy: suffix match pattern must be a string",
        ),
        (
            {"FilterPolicy": '{"a": {"b": ["x"]}}'},
            # as AWS answered it (no "FilterPolicy: " before this reason)
            "Invalid parameter: {where}Filter policy scope MessageAttributes does not support "
            "nested filter policy",
        ),
        (
            {"FilterPolicy": json.dumps({f"k{i}": ["v"] for i in range(6)})},
            "Invalid parameter: {where}FilterPolicy: Filter policy can not have more than 5 keys",
        ),
        ({"RedrivePolicy": "{"}, "Invalid parameter: {where}RedrivePolicy: failed to parse JSON."),
        (
            {"RedrivePolicy": '{"deadLetterTargetArn": "nope"}'},
            "Invalid parameter: {where}RedrivePolicy: deadLetterTargetArn is an invalid arn",
        ),
    ],
)
def test_subscription_attribute_errors(broker, attributes, message):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    # InvalidParameter, or InvalidFilterPolicy for policies: both SNS's InvalidParameter code
    with pytest.raises(errors.InvalidInputError) as info:
        t.subscribe(q, attributes=attributes)
    assert str(info.value) == message.format(where="Attributes Reason: ")
    assert info.value.code == "InvalidParameter"
    assert t.list_subscriptions() == []
    sub = t.subscribe(q)
    with pytest.raises(errors.InvalidInputError) as info:
        sub.set_attributes(attributes)
    assert str(info.value) == message.format(where="")
    assert sub.get_attributes()["RawMessageDelivery"] == "false"  # nothing changed


def test_scope_change_revalidates_the_policy(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q, filter_policy={"a": {"b": ["x"]}}, filter_policy_scope="MessageBody")
    with pytest.raises(errors.InvalidFilterPolicy) as info:
        sub.set_attributes({"FilterPolicyScope": "MessageAttributes"})
    assert str(info.value) == (
        "Invalid parameter: Filter policy scope MessageAttributes does not support nested "
        "filter policy"
    )
    assert sub.get_attributes()["FilterPolicyScope"] == "MessageBody"
    t.publish(json.dumps({"a": {"b": "x"}}))
    t.publish(json.dumps({"a": {"b": "y"}}))
    assert [json.loads(e["Message"]) for e in envelopes(q)] == [{"a": {"b": "x"}}]


def test_filter_policy_can_be_replaced_and_removed(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q, filter_policy={"k": ["a"]})
    t.publish("1", attributes={"k": S("b")})
    sub.set_attributes({"FilterPolicy": {"k": ["b"]}})
    t.publish("2", attributes={"k": S("b")})
    t.publish("3", attributes={"k": S("a")})
    sub.set_attributes({"FilterPolicy": ""})
    assert "FilterPolicy" not in sub.get_attributes()
    assert "FilterPolicyScope" not in sub.get_attributes()
    t.publish("4")
    assert [e["Message"] for e in envelopes(q)] == ["2", "4"]


def test_filter_policy_limit_per_topic(broker, monkeypatch):
    monkeypatch.setattr(topic, "MAX_FILTER_POLICIES", 2)
    t = broker.create_topic("orders")
    subs = [t.subscribe(broker.create_queue(f"q{i}"), filter_policy={"k": ["v"]}) for i in range(2)]
    plain = t.subscribe(broker.create_queue("plain"))
    with pytest.raises(topic.FilterPolicyLimitExceeded) as info:
        t.subscribe(broker.create_queue("q2"), filter_policy={"k": ["v"]})
    assert info.value.code == "FilterPolicyLimitExceeded"
    with pytest.raises(topic.FilterPolicyLimitExceeded):
        plain.set_attributes({"FilterPolicy": {"k": ["v"]}})
    subs[0].set_attributes({"FilterPolicy": {"k": ["w"]}})  # replacing one is fine
    assert len(t.list_subscriptions()) == 3


def test_unsubscribe_stops_delivery(broker):
    q1, q2 = broker.create_queue("q1"), broker.create_queue("q2")
    t = broker.create_topic("orders")
    s1, s2 = t.subscribe(q1), t.subscribe(q2)
    t.publish("before")
    s1.unsubscribe()
    s1.unsubscribe()  # twice is fine
    t.publish("after")
    assert [e["Message"] for e in envelopes(q1)] == ["before"]
    assert [e["Message"] for e in envelopes(q2)] == ["before", "after"]
    assert t.list_subscriptions() == [s2]
    with pytest.raises(errors.TopicNotFound, match="Subscription does not exist"):
        s1.get_attributes()
    with pytest.raises(errors.TopicNotFound):
        broker._topics.subscription(s1.arn)
    assert t.subscribe(q1) != s1  # subscribing again makes a new subscription


def test_list_subscriptions(broker):
    a, b = broker.create_topic("a"), broker.create_topic("b")
    q1, q2 = broker.create_queue("q1"), broker.create_queue("q2")
    subs = {a.subscribe(q1), a.subscribe(q2), b.subscribe(q1)}
    assert set(a.list_subscriptions()) | set(b.list_subscriptions()) == subs
    assert {s.endpoint for s in a.list_subscriptions()} == {q1.arn, q2.arn}
    assert set(broker._topics.list_subscriptions()) == subs
    assert all(s.protocol == "sqs" and s.owner == "123456789012" for s in subs)


# -- filter policies through real publishes -------------------------------------------------------

A, BODY = "MessageAttributes", "MessageBody"
P27 = {
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency"]},
        {"namespace": ["AWS/EC2", "AWS/ES"]},
    ],
    "detail": {
        "scope": ["Service"],
        "$or": [{"source": ["aws.cloudwatch"]}, {"type": ["CloudWatch Alarm State Change"]}],
    },
}
P26 = {
    "detail": {
        "$or": [
            {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]},
            {"sourceIPAddressV6": [{"cidr": "2001:db8:1234:1a00::/64"}]},
        ]
    }
}

# (policy, scope, message attributes or body document, delivered?)
VECTORS = [
    # exact strings (vectors 1-6)
    ({"ci": ["rugby", "tennis"]}, A, {"ci": S("rugby")}, True),
    ({"ci": ["rugby", "tennis"]}, A, {"ci": S("baseball")}, False),
    ({"ci": ["rugby", "tennis"]}, A, {"ci": SA(["rugby", "tennis"])}, True),
    ({"ci": ["rugby", "tennis"]}, BODY, {"ci": "rugby"}, True),
    ({"store": ["value1"]}, A, {"store": SA(["value1", "value2"])}, True),
    ({"store": ["value1"]}, A, {"store": SA(["value2", "value3"])}, False),
    # prefix, suffix, equals-ignore-case (7-9)
    ({"ci": [{"prefix": "bas"}]}, A, {"ci": S("basketball")}, True),
    ({"ci": [{"prefix": "bas"}]}, A, {"ci": S("rugby")}, False),
    ({"ci": [{"prefix": "bas"}]}, BODY, {"ci": "baseball"}, True),
    ({"k": [{"suffix": "ball"}]}, BODY, {"k": "baseball"}, True),
    ({"k": [{"suffix": "ball"}]}, BODY, {"k": "rugby"}, False),
    ({"k": [{"suffix": "ball"}]}, A, {"k": S("football")}, True),
    ({"k": [{"equals-ignore-case": "RUGBY"}]}, A, {"k": S("rugby")}, True),
    ({"k": [{"equals-ignore-case": "RUGBY"}]}, A, {"k": S("rugby7")}, False),
    # anything-but (10-17)
    ({"ci": [{"anything-but": ["rugby", "tennis"]}]}, A, {"ci": S("baseball")}, True),
    ({"ci": [{"anything-but": ["rugby", "tennis"]}]}, A, {"ci": S("rugby")}, False),
    ({"ci": [{"anything-but": ["rugby", "tennis"]}]}, A, {"ci": SA(["rugby", "baseball"])}, True),
    ({"ci": [{"anything-but": ["rugby", "tennis"]}]}, BODY, {"ci": ["rugby"]}, False),
    ({"price": [{"anything-but": [100, 500]}]}, A, {"price": N("101")}, True),
    ({"price": [{"anything-but": [100, 500]}]}, A, {"price": N("100.1")}, True),
    ({"price": [{"anything-but": [100, 500]}]}, A, {"price": N("100")}, False),
    ({"price": [{"anything-but": [100, 500]}]}, BODY, {"price": [100, 50]}, True),
    ({"event": [{"anything-but": {"prefix": "order-"}}]}, A, {"event": S("data-entry")}, True),
    ({"event": [{"anything-but": {"prefix": "order-"}}]}, A, {"event": S("order-cancel")}, False),
    ({"event": [{"anything-but": {"prefix": "order-"}}]}, BODY, {"event": "order_number"}, True),
    ({"attr1": [None, {"anything-but": "whatever"}]}, A, {"other": S("x")}, False),
    # numeric (18-22)
    ({"price_usd": [{"numeric": ["=", 301.5]}]}, A, {"price_usd": N("301.5")}, True),
    ({"price_usd": [{"numeric": ["=", 301.5]}]}, BODY, {"price_usd": 3.015e2}, True),
    ({"attr1": [{"numeric": [">", 0, "<=", 100]}]}, A, {"attr1": N("99")}, True),
    ({"attr1": [{"numeric": [">", 0, "<=", 100]}]}, A, {"attr1": N("111")}, False),
    ({"p": [{"numeric": [">", 0, "<=", 150]}]}, BODY, {"p": 150}, True),
    ({"p": [{"numeric": [">", 0, "<=", 150]}]}, BODY, {"p": 0}, False),
    ({"p": [{"numeric": ["<", 0]}]}, BODY, {"p": -1}, True),
    ({"p": [{"numeric": [">", 1]}]}, BODY, {"p": "5"}, False),
    # exists (23-24)
    ({"store": [{"exists": True}]}, A, {"store": S("x")}, True),
    ({"store": [{"exists": True}]}, A, {"other": S("x")}, False),
    ({"store": [{"exists": False}]}, A, {"def": S("x")}, True),
    ({"store": [{"exists": False}]}, A, {"store": S("x")}, False),
    ({"store": [{"exists": False}]}, BODY, {"other": 1}, True),
    # cidr (25-26)
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, A, {"ip": S("10.0.0.255")}, True),
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, A, {"ip": S("10.1.1.0")}, False),
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, BODY, {"ip": "10.0.0.0"}, True),
    (P26, BODY, {"detail": {"sourceIPAddress": "10.0.0.255"}}, True),
    (P26, BODY, {"detail": {"sourceIPAddress": "10.0.0.256"}}, False),
    (P26, BODY, {"detail": {"sourceIPAddressV6": "2001:0db8:1234:1a00:0000:0000:0000:0000"}}, True),
    # $or and nesting (27-33)
    (
        P27,
        BODY,
        {
            "metricName": "CPUUtilization",
            "detail": {"scope": "Service", "source": "aws.cloudwatch"},
        },
        True,
    ),  # noqa: E501
    (
        P27,
        BODY,
        {"namespace": "AWS/ES", "detail": {"scope": "Service", "source": "aws.cloudwatch"}},
        True,
    ),  # noqa: E501
    (P27, BODY, {"metricName": "CPUUtilization", "detail": {"scope": "Service"}}, False),
    (P27, BODY, {"metricName": "CPUUtilization", "scope": "Service"}, False),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, A, {"b": S("2")}, True),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, A, {"a": S("2")}, False),
    (
        {"headers": {"route-to": ["queue1"]}},
        BODY,
        {"headers": {"route-to": ["queue1", "queue2"]}},
        True,
    ),  # noqa: E501
    ({"headers": {"route-to": ["queue1"]}}, BODY, {"headers": {"route-to": ["queue3"]}}, False),
    ({"object.nested": ["string.value"]}, BODY, {"object": {"nested": "string.value"}}, True),
    ({"object.nested": ["string.value"]}, BODY, {"object.nested": "string.value"}, True),
    ({"object.nested": ["string.value"]}, BODY, {"object": {"nested": "test-auto"}}, False),
    # typing (34, 37)
    ({"k": ["v"]}, BODY, "not json", False),
    ({"k": ["v"]}, BODY, [1, 2], False),
    ({"bin": ["x"]}, A, {"bin": B(b"x")}, False),
    ({"k": ["v"]}, A, {"k": S("v"), "other": N("1")}, True),  # keys not in the policy: ignored
    ({"a": ["1"], "b": ["2"]}, A, {"a": S("1")}, False),  # keys are ANDed
]


@pytest.mark.parametrize("policy, scope, payload, delivered", VECTORS)
def test_filter_policy_vectors(broker, policy, scope, payload, delivered):
    filtered, everything = broker.create_queue("filtered"), broker.create_queue("everything")
    t = broker.create_topic("t")
    t.subscribe(filtered, filter_policy=policy, filter_policy_scope=scope)
    t.subscribe(everything)
    if scope == BODY:
        message = payload if isinstance(payload, str) else json.dumps(payload)
        t.publish(message, attributes={"ignored": S("in body scope")})
    else:
        t.publish("hello", attributes=payload)
    assert len(bodies(everything)) == 1  # the publish happened
    assert len(bodies(filtered)) == int(delivered)


def test_an_empty_body_policy_delivers_every_message(broker):
    # {} matches everything, in either scope: setting it is how SNS users stop filtering, and
    # bodies that are not JSON objects must get through too.
    t = broker.create_topic("orders")
    q = broker.create_queue("q")
    sub = t.subscribe(q, filter_policy={"k": ["v"]}, filter_policy_scope="MessageBody")
    t.publish("plain text")
    assert bodies(q) == []
    sub.set_attributes({"FilterPolicy": "{}"})
    for message in ("plain text", "[1, 2]", '{"k": "other"}'):
        t.publish(message)
    assert [envelope["Message"] for envelope in envelopes(q)] == [
        "plain text",
        "[1, 2]",
        '{"k": "other"}',
    ]


def test_body_scope_ignores_attributes_and_attribute_scope_ignores_the_body(broker):
    by_body, by_attrs = broker.create_queue("body"), broker.create_queue("attrs")
    t = broker.create_topic("t")
    t.subscribe(by_body, filter_policy={"k": ["v"]}, filter_policy_scope="MessageBody")
    t.subscribe(by_attrs, filter_policy={"k": ["v"]})
    t.publish(json.dumps({"k": "v"}), attributes={"k": S("w")})
    t.publish(json.dumps({"k": "w"}), attributes={"k": S("v")})
    assert [json.loads(e["Message"]) for e in envelopes(by_body)] == [{"k": "v"}]
    assert [json.loads(e["Message"]) for e in envelopes(by_attrs)] == [{"k": "w"}]


def test_policies_are_compiled_once_per_change_never_per_publish(broker, monkeypatch):
    compiled: list[Any] = []
    real = topic.compile_policy

    def counting(policy: Any, scope: str = "MessageAttributes") -> Any:
        compiled.append(policy)
        return real(policy, scope)

    monkeypatch.setattr(topic, "compile_policy", counting)
    t = broker.create_topic("t")
    subs = [
        t.subscribe(broker.create_queue(f"q{i}"), filter_policy={"k": [str(i)]}) for i in range(3)
    ]
    assert len(compiled) == 3
    for i in range(20):
        t.publish("m", attributes={"k": S(str(i % 3))})
    assert len(compiled) == 3  # the publishes compiled nothing
    subs[0].set_attributes({"FilterPolicy": {"k": ["x"]}})
    t.publish("m", attributes={"k": S("x")})
    assert len(compiled) == 4  # only the changed subscription
    assert len(bodies(broker.queue("q0"))) == 7 + 1


# -- the envelope ---------------------------------------------------------------------------------


def test_envelope_fields_and_order(broker, clock):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q)
    attributes = {
        "s": S("x"),
        "n": N("1.50"),
        "b": B(b"\x00\x01\xff"),
        "a": SA(["x", 1, True, None]),
    }
    message_id = t.publish("hello", subject="Greetings", attributes=attributes)
    (m,) = drain(q)
    assert ordered_keys(m.body) == ENVELOPE_KEYS
    e = json.loads(m.body)
    timestamp = iso_timestamp(clock.now_ms())
    assert e["Type"] == "Notification"
    assert e["MessageId"] == message_id and m.message_id != message_id  # SNS id vs SQS id
    assert e["TopicArn"] == f"{ARN}:orders"
    assert e["Subject"] == "Greetings"
    assert e["Message"] == "hello"
    assert e["Timestamp"] == timestamp == "2023-11-14T22:13:20.000Z"
    assert e["SignatureVersion"] == "1"
    text = string_to_sign("hello", message_id, "Greetings", timestamp, f"{ARN}:orders")
    assert e["Signature"] == signature(broker._topics._signing_key, text, "1")
    expected_mac = hmac.new(broker._topics._signing_key, text.encode(), hashlib.sha1).digest()
    assert base64.b64decode(e["Signature"]) == expected_mac
    assert e["SigningCertURL"].startswith(
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-"
    )
    assert e["SigningCertURL"].endswith(".pem")
    assert e["UnsubscribeURL"] == (
        f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={sub.arn}"
    )
    assert e["MessageAttributes"] == {
        "s": {"Type": "String", "Value": "x"},
        "n": {"Type": "Number", "Value": "1.50"},  # Number stays the string given
        "b": {"Type": "Binary", "Value": "AAH/"},
        "a": {"Type": "String.Array", "Value": '["x", 1, true, null]'},
    }
    assert list(e["MessageAttributes"]) == ["s", "n", "b", "a"]  # the published order
    assert m.attributes == {}  # an envelope carries the attributes inside, not as SQS ones


def test_message_id_is_the_uuid4_of_its_random_bytes(monkeypatch):
    # message_id() sets the version and variant digits as uuid.UUID(version=4) sets their bits
    import os
    import uuid

    for raw in [bytes(16), b"\xff" * 16, *(os.urandom(16) for _ in range(200))]:
        monkeypatch.setattr(sns_envelope.os, "urandom", lambda n, raw=raw: raw)
        assert sns_envelope.message_id() == str(uuid.UUID(bytes=raw, version=4))


def test_envelope_without_subject_or_attributes(broker, clock):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    clock.advance(1.234)
    t.publish("plain")
    (m,) = drain(q)
    assert ordered_keys(m.body) == [
        k for k in ENVELOPE_KEYS if k not in ("Subject", "MessageAttributes")
    ]
    assert json.loads(m.body)["Timestamp"] == "2023-11-14T22:13:21.234Z"


def test_envelope_layout_is_the_one_sns_sends(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    sub = t.subscribe(q)
    message_id = t.publish("hi", attributes={"k": S("v")})
    (body,) = bodies(q)
    assert body.startswith(
        b'{\n  "Type" : "Notification",\n  "MessageId" : "' + message_id.encode() + b'",\n'
        b'  "TopicArn" : "arn:aws:sns:us-east-1:123456789012:orders",\n'
        b'  "Message" : "hi",\n  "Timestamp" : "'
    )
    assert body.endswith(
        b"SubscriptionArn=" + sub.arn.encode() + b'",\n'
        b'  "MessageAttributes" : {\n    "k" : {"Type":"String","Value":"v"}\n  }\n}'
    )


def test_each_subscription_gets_its_own_unsubscribe_url(broker):
    q1, q2 = broker.create_queue("q1"), broker.create_queue("q2")
    t = broker.create_topic("orders")
    s1, s2 = t.subscribe(q1), t.subscribe(q2)
    t.publish("x")
    (e1,), (e2,) = envelopes(q1), envelopes(q2)
    assert e1["UnsubscribeURL"].endswith(s1.arn) and e2["UnsubscribeURL"].endswith(s2.arn)
    del e1["UnsubscribeURL"], e2["UnsubscribeURL"]
    assert e1 == e2


@pytest.mark.parametrize(
    "message",
    ['quote " backslash \\ slash /', "line\nbreak\ttab\x01", "ünïcødé ✓ 🚀", "odd \ufffe\uffff"],
)
def test_envelope_escapes_the_message(broker, message):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    t.publish(message, subject="ünï ✓")
    (body,) = bodies(q)
    e = json.loads(body)
    assert (e["Message"], e["Subject"]) == (message, "ünï ✓")
    assert "ü".encode() in body  # UTF-8 as is, not \\u escapes
    assert "\ufffe".encode() not in body  # SQS refuses U+FFFE/U+FFFF raw: escaped


def test_signature_version_2(broker, clock):
    q = broker.create_queue("q")
    t = broker.create_topic("orders", {"SignatureVersion": "2"})
    t.subscribe(q)
    message_id = t.publish("x")
    (e,) = envelopes(q)
    assert e["SignatureVersion"] == "2"
    text = string_to_sign("x", message_id, None, iso_timestamp(clock.now_ms()), t.arn)
    assert (
        base64.b64decode(e["Signature"])
        == hmac.new(broker._topics._signing_key, text.encode(), hashlib.sha256).digest()
    )


def test_long_messages_are_signed_the_same_way(broker, clock):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    message = "m" * 100_000  # hashed before the write transaction
    message_id = t.publish(message, subject="s")
    (e,) = envelopes(q)
    text = string_to_sign(message, message_id, "s", iso_timestamp(clock.now_ms()), t.arn)
    assert e["Signature"] == signature(broker._topics._signing_key, text)


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("key", [b"", b"k" * 32, b"k" * 64, b"k" * 65, b"k" * 200])
def test_the_envelope_signature_is_the_hmac_of_any_key(version, key):
    # The envelope's HMAC starts from pads of the key hashed once per topic (RFC 2104):
    # keys shorter and longer than the hash's block give hmac's result all the same.
    form = sns_envelope.NotificationForm(
        topic_arn=f"{ARN}:t", region="us-east-1", fifo=False, signature_version=version, key=key
    )
    note = sns_envelope.Notification(
        form, message_id="id", message="m\u00e9", subject="s", attributes=None
    )
    for _ in range(2):  # common() may run twice (a re-run op): the same bytes
        e = json.loads(note.common(1_700_000_000_000) + b"url" + note.tail)
        text = string_to_sign("m\u00e9", "id", "s", "2023-11-14T22:13:20.000Z", f"{ARN}:t")
        assert e["Signature"] == signature(key, text, version)


def test_a_message_holding_the_field_names_is_signed_whole(broker, clock):
    # The signed text is cut where the Timestamp goes: the message's own "Timestamp\n" (the
    # string-to-sign's field separator) must not be taken for it.
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    message = "Timestamp\n2020-01-01\nTopicArn\nx"
    message_id = t.publish(message)
    (e,) = envelopes(q)
    text = string_to_sign(message, message_id, None, iso_timestamp(clock.now_ms()), t.arn)
    assert e["Signature"] == signature(broker._topics._signing_key, text)


def test_message_structure_json(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    t.publish(json.dumps({"default": "for all", "sqs": "for sqs"}), message_structure="json")
    t.publish(json.dumps({"default": "for all", "email": "mail"}), message_structure="json")
    assert [e["Message"] for e in envelopes(q)] == ["for sqs", "for all"]
    with pytest.raises(InvalidParameter, match="No default entry"):
        t.publish(json.dumps({"sqs": "x"}), message_structure="json")
    with pytest.raises(InvalidParameter, match="failed to parse"):
        t.publish("nope", message_structure="json")


# -- raw delivery ---------------------------------------------------------------------------------


def test_raw_delivery_passes_body_and_attributes(broker):
    raw, wrapped = broker.create_queue("raw"), broker.create_queue("wrapped")
    t = broker.create_topic("orders")
    t.subscribe(raw, raw_message_delivery=True)
    t.subscribe(wrapped)
    attributes = {
        "s": S("x"),
        "n": N("0099.50"),
        "b": B(b"\x00\x01"),
        "a": SA(["x", 1]),
        "c": {"DataType": "Number.int", "StringValue": "7"},
    }
    t.publish('{"raw": true}', subject="not in raw", attributes=attributes)
    (m,) = drain(raw)
    assert m.body == b'{"raw": true}'
    assert m.attributes == {
        "s": S("x"),
        "n": N("0099.50"),  # Number stays the string given
        "b": B(b"\x00\x01"),
        "a": SA(["x", 1]),  # String.Array keeps its type (a String with a custom label)
        "c": {"DataType": "Number.int", "StringValue": "7"},
    }
    assert m.md5_of_message_attributes is not None
    assert len(envelopes(wrapped)) == 1


def test_raw_delivery_carries_at_most_10_attributes(broker):
    raw, wrapped, dlq = (
        broker.create_queue("raw"),
        broker.create_queue("wrapped"),
        broker.create_queue("dlq"),
    )
    t = broker.create_topic("orders")
    skipped = t.subscribe(raw, raw_message_delivery=True)
    t.subscribe(wrapped)
    attributes = {f"a{i}": S(str(i)) for i in range(11)}
    t.publish("eleven", attributes=attributes)
    assert bodies(raw) == []  # SQS could not take 11 attributes: skipped, the rest delivered
    assert skipped.undelivered == 1
    (e,) = envelopes(wrapped)
    assert len(e["MessageAttributes"]) == 11
    skipped.set_attributes({"RedrivePolicy": {"deadLetterTargetArn": dlq.arn}})
    t.publish("eleven again", attributes=attributes)
    (m,) = drain(dlq)  # the subscription's dead-letter queue gets it, without the attributes
    assert (m.body, m.attributes) == (b"eleven again", {})
    t.publish("ten", attributes={f"a{i}": S(str(i)) for i in range(10)})
    (m,) = drain(raw)
    assert m.body == b"ten" and len(m.attributes) == 10


# -- publish validation ---------------------------------------------------------------------------

LIMIT = 262_144


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"message": ""}, InvalidParameter, "Invalid parameter: Empty message"),
        ({"message": None}, InvalidParameter, "Invalid parameter: Message"),
        ({"message": "x" * (LIMIT + 1)}, InvalidParameter, "Invalid parameter: Message too long"),
        (
            {"message": "x" * (LIMIT - 5), "attributes": {"k": S("vvvvv")}},
            InvalidParameter,
            "Invalid parameter: Message too long",
        ),
        ({"message": "é" * (LIMIT // 2 + 1)}, InvalidParameter, "Message too long"),  # bytes
        ({"message": "x", "subject": "s" * 100}, InvalidParameter, "Invalid parameter: Subject"),
        ({"message": "x", "subject": "a\nb"}, InvalidParameter, "Invalid parameter: Subject"),
        ({"message": "x", "subject": ""}, InvalidParameter, "Invalid parameter: Subject"),
        (
            {"message": "x", "attributes": {"k": {"DataType": "Str", "StringValue": "v"}}},
            ParameterValueInvalid,
            "The message attribute 'k' has an invalid message attribute type, the set of "
            "supported type prefixes is Binary, Number, and String.",
        ),
        (
            {"message": "x", "attributes": {"k": {"DataType": "String"}}},
            ParameterValueInvalid,
            "The message attribute 'k' must contain non-empty message attribute value for "
            "message attribute type 'String'.",
        ),
        (
            {"message": "x", "attributes": {"k": S("")}},
            ParameterValueInvalid,
            "must contain non-empty message attribute value",
        ),
        (
            {"message": "x", "attributes": {"k": {"DataType": "Binary", "StringValue": "v"}}},
            ParameterValueInvalid,
            "The message attribute 'k' with type 'Binary' must use field 'Binary'.",
        ),
        (
            {"message": "x", "attributes": {".k": S("v")}},
            ParameterValueInvalid,
            "Invalid message attribute name starting with character '.' was found.",
        ),
        ({"message": "x", "attributes": {"k.": S("v")}}, ParameterValueInvalid, "ending with"),
        ({"message": "x", "attributes": {"a..b": S("v")}}, ParameterValueInvalid, "successive"),
        ({"message": "x", "attributes": {"k§": S("v")}}, ParameterValueInvalid, "#xA7"),
        ({"message": "x", "attributes": {"AWS.k": S("v")}}, ParameterValueInvalid, "reserved"),
        ({"message": "x", "attributes": {"k" * 257: S("v")}}, ParameterValueInvalid, "256"),
        ({"message": "x", "attributes": {"k": N("abc")}}, ParameterValueInvalid, "number"),
        ({"message": "x", "attributes": {"k": N("1000000000.5")}}, ParameterValueInvalid, "range"),
        ({"message": "x", "attributes": {"k": N("-1e10")}}, ParameterValueInvalid, "range"),
        (
            {"message": "x", "attributes": {"k": {"DataType": "String.Array", "StringValue": "x"}}},
            ParameterValueInvalid,
            "String.Array",
        ),
        ({"message": "x", "attributes": {"k": SA([{"a": 1}])}}, ParameterValueInvalid, "array"),
        (
            {"message": "x", "attributes": {"k": {"DataType": "Binary", "BinaryValue": "str"}}},
            ParameterValueInvalid,
            "bytes",
        ),
        ({"message": "x", "attributes": {"k": S("a\x00b")}}, ParameterValueInvalid, "character"),
        (
            {"message": "x", "attributes": {"k": {"StringValue": "v"}}},
            ValidationError,
            "Value null at 'messageAttributes.k.member.dataType'",
        ),
        (
            {"message": "x", "deduplication_id": "d"},
            InvalidParameter,
            "MessageDeduplicationId parameter that is not valid for this topic type",
        ),
        ({"message": "x", "group_id": "a b"}, InvalidParameter, "MessageGroupId"),
    ],
)
def test_publish_validation(broker, kwargs, error, message):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    kwargs = dict(kwargs)
    with pytest.raises(error) as info:
        t.publish(kwargs.pop("message"), **kwargs)
    assert message in str(info.value)
    assert bodies(q) == []  # a refused publish stores nothing


def test_publish_limits_are_inclusive(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q, raw_message_delivery=True)
    t.publish("x" * LIMIT)
    t.publish("x" * (LIMIT - 8), attributes={"k": S("v")})  # 8 = "k" + "String" + "v"
    t.publish("x", subject="s" * 99, attributes={"n": N("-1000000000"), "m": N("1e9")})
    assert [len(b) for b in bodies(q)] == [LIMIT, LIMIT - 8, 1]
    with pytest.raises(InvalidParameter, match="too long"):
        t.publish("x" * (LIMIT - 7), attributes={"k": S("v")})


def test_publish_size_counts_attributes_of_every_kind(broker):
    # plain attributes (the fast check) and the others (the full one) count their UTF-8 bytes
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q, raw_message_delivery=True)
    attributes = {
        "k": S("v"),  # 1 + 6 + 1
        "a.b": S("é"),  # 3 + 6 + 2
        "n": N("+1"),  # 1 + 6 + 2
        "bin": {"DataType": "Binary", "BinaryValue": b"xy"},  # 3 + 6 + 2
    }
    t.publish("x" * (LIMIT - 39), attributes=attributes)
    (m,) = drain(q)
    assert m.attributes["a.b"] == S("é") and m.attributes["n"] == N("+1")
    with pytest.raises(InvalidParameter, match="too long"):
        t.publish("x" * (LIMIT - 38), attributes=attributes)


@pytest.mark.parametrize(
    "attributes",
    [
        {"k": S("v"), "n": N("-42.50"), "id_1": S("a b/c")},
        {"q": S('say "hi"'), "back": S("a\\b"), "tab": S("a\tb")},
        {"a.b": S("\u00e9"), "n": N("1e-3"), "big": N("123456789.5e0")},
        {"bin": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}, "lbl": N("7")},
        {"k": {"DataType": "String.label", "StringValue": "x"}, "x-y": S("v")},
        {"arr": {"DataType": "String.Array", "StringValue": '["a", 1]'}},
    ],
)
def test_issue_4_the_envelope_attributes_made_while_checking_them(attributes):
    # checked_attributes writes the envelope's MessageAttributes block as it checks them (one
    # pass): the same text attributes_json makes of the checked attributes
    checked, size, block = sns_envelope.checked_attributes(attributes)
    assert checked == sns_envelope.check_attributes(attributes)
    assert block == sns_envelope.attributes_json(checked)
    assert size == sum(message_attributes_size({name: a}) for name, a in checked.items())
    assert json.loads("{" + block[1:] + "}")["MessageAttributes"] == {
        name: {
            "Type": a["DataType"],
            "Value": a.get("StringValue") or base64.b64encode(a["BinaryValue"]).decode(),
        }
        for name, a in checked.items()
    }


def test_standard_topics_take_a_group_id(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    t.publish("fair", group_id="tenant-1")  # forwarded to fair queues, no error
    assert [e["Message"] for e in envelopes(q)] == ["fair"]


def test_publish_to_a_topic_without_subscriptions(broker):
    t = broker.create_topic("orders")
    assert len(t.publish("nobody listens")) == 36


# -- publish_batch --------------------------------------------------------------------------------


def test_publish_batch_results(broker):
    q, odd = broker.create_queue("q"), broker.create_queue("odd")
    t = broker.create_topic("orders")
    t.subscribe(q)
    t.subscribe(odd, filter_policy={"n": [{"numeric": [">", 1]}]})
    commits = broker._storage.commits
    results = t.publish_batch(
        [
            {"Id": "a", "Message": "one", "MessageAttributes": {"n": N("1")}},
            {"id": "c", "message": "three", "attributes": {"n": N("3")}, "subject": "s"},
        ]
    )
    assert broker._storage.commits == commits + 1  # every delivery in one transaction
    assert [r["Id"] for r in results] == ["a", "c"]
    assert all(set(r) == {"Id", "MessageId"} for r in results)
    got = envelopes(q)
    assert [(e["Message"], e["MessageId"]) for e in got] == [
        ("one", results[0]["MessageId"]),
        ("three", results[1]["MessageId"]),
    ]
    assert got[1]["Subject"] == "s"
    assert [e["Message"] for e in envelopes(odd)] == ["three"]


@pytest.mark.parametrize(
    ("bad", "error", "text"),
    [
        ({"Id": "b", "Message": ""}, InvalidParameter, "Invalid parameter: Empty message"),
        (
            {"Id": "b", "Message": "x", "MessageAttributes": {"n": {"DataType": "X"}}},
            errors.InvalidParameterValue,
            "invalid message attribute type",
        ),
    ],
)
def test_one_bad_batch_entry_fails_the_whole_batch(broker, bad, error, text):
    # As SNS (AWS-recorded): the request fails with the entry's error, nothing is published.
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    with pytest.raises(error, match=text):
        t.publish_batch([{"Id": "a", "Message": "fine"}, bad])
    assert bodies(q) == []


@pytest.mark.parametrize(
    "entries, code, message",
    [
        ([], "EmptyBatchRequest", "The batch request doesn't contain any entries."),
        (
            [{"Id": str(i), "Message": "x"} for i in range(11)],
            "TooManyEntriesInBatchRequest",
            "The batch request contains more entries than permissible.",
        ),
        (
            [{"Id": "a", "Message": "x"}, {"Id": "a", "Message": "y"}],
            "BatchEntryIdsNotDistinct",
            "Two or more batch entries in the request have the same Id.",
        ),
        (
            [{"Id": "a.b", "Message": "x"}],
            "InvalidBatchEntryId",
            "The Id of a batch entry in a batch request doesn't abide by the specification.",
        ),
        ([{"Message": "x"}], "InvalidBatchEntryId", "doesn't abide"),
        (
            [{"Id": str(i), "Message": "x" * 30_000} for i in range(9)],
            "BatchRequestTooLong",
            "The length of all the messages put together is more than the limit.",
        ),
    ],
)
def test_publish_batch_errors(broker, entries, code, message):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    with pytest.raises(errors.BatchError) as info:
        t.publish_batch(entries)
    assert info.value.code == code and message in str(info.value)
    assert bodies(q) == []


# -- atomic fan-out -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [RuntimeError("disk on fire"), errors.InvalidParameterValue("x")]
)
def test_fan_out_is_all_or_nothing(broker, monkeypatch, failure):
    queues = [broker.create_queue(f"q{i}") for i in range(3)]
    t = broker.create_topic("orders")
    for q in queues:
        t.subscribe(q)
    t.publish("first")
    core = broker._core
    real = core.send_envelopes
    calls: list[int] = []

    def fails_after_the_first(txn: Any, dbs: Any, now_ms: int, env_id: int, targets: Any,
                              *shared: Any) -> Any:  # fmt: skip
        calls.append(len(targets))
        real(txn, dbs, now_ms, env_id, targets[:1], *shared)  # one delivery is written ...
        raise failure  # ... then the publish fails

    monkeypatch.setattr(core, "send_envelopes", fails_after_the_first)
    with pytest.raises(type(failure)):
        t.publish("second")
    assert calls == [3]
    monkeypatch.setattr(core, "send_envelopes", real)
    t.publish("third")
    for q in queues:
        assert [e["Message"] for e in envelopes(q)] == ["first", "third"]


def test_fan_out_is_one_transaction(broker):
    queues = [broker.create_queue(f"q{i}") for i in range(5)]
    t = broker.create_topic("orders")
    for q in queues:
        t.subscribe(q)
    commits = broker._storage.commits
    t.publish("x")
    assert broker._storage.commits == commits + 1
    assert all(len(bodies(q)) == 1 for q in queues)


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    import millpond

    broker = millpond.open(sys.argv[1], durability=sys.argv[2], core=sys.argv[3])
    t = broker.topic("orders")
    t.publish("committed")
    real = broker._core.send_envelopes

    def crash_after_the_first(txn, dbs, now_ms, env_id, targets, *shared):
        real(txn, dbs, now_ms, env_id, targets[:1], *shared)
        os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction: one delivery written

    broker._core.send_envelopes = crash_after_the_first
    t.publish("never")
    """
)


@pytest.mark.parametrize("durability", ["os", "fsync"])
def test_fan_out_is_all_or_nothing_across_a_crash(data_dir, clock, impl, durability):
    with millpond.open(data_dir, durability=durability, clock=clock, core=impl) as b:
        t = b.create_topic("orders")
        for i in range(3):
            t.subscribe(b.create_queue(f"q{i}"))
    done = subprocess.run(
        [sys.executable, "-c", CRASHER, data_dir, durability, impl],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    # the child sent on the system clock: read on it too (the manual one is in 2023)
    with millpond.open(data_dir, durability=durability, core=impl) as b:
        for i in range(3):
            assert [e["Message"] for e in envelopes(b.queue(f"q{i}"))] == ["committed"]


# -- undeliverable subscriptions ------------------------------------------------------------------


def test_a_deleted_queue_is_skipped(broker):
    q1, q2, q3 = (broker.create_queue(f"q{i}") for i in range(1, 4))
    t = broker.create_topic("orders")
    subs = [t.subscribe(q) for q in (q1, q2, q3)]
    broker.delete_queue("q2")
    t.publish("x")
    assert [len(bodies(q)) for q in (q1, q3)] == [1, 1]
    assert [s.undelivered for s in subs] == [0, 1, 0]
    # SNS delivers to the queue ARN: a queue made again under the name gets the messages
    q2 = broker.create_queue("q2")
    t.publish("y")
    assert [e["Message"] for e in envelopes(q2)] == ["y"]


def test_undeliverable_messages_go_to_the_subscription_dead_letter_queue(broker):
    dlq = broker.create_queue("dlq")
    t = broker.create_topic("orders")
    sub = t.subscribe(
        "gone", attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})}
    )
    t.publish("lost?", attributes={"k": S("v")})
    (e,) = envelopes(dlq)  # the envelope the queue would have had
    assert e["Message"] == "lost?"
    assert e["UnsubscribeURL"].endswith(sub.arn)
    assert sub.undelivered == 0


def test_a_standard_topic_subscription_refuses_a_fifo_dead_letter_queue(broker):
    # SNS: standard topic subscriptions use standard dead-letter queues. A FIFO one would take
    # no envelope (no MessageGroupId), and the failed move would undo the whole publish.
    t = broker.create_topic("orders")
    dlq = broker.create_queue("dlq.fifo", {"FifoQueue": "true"})
    redrive = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})}
    with pytest.raises(InvalidParameter, match="standard queue as DLQ"):
        t.subscribe("gone", attributes=redrive)
    sub = t.subscribe(broker.create_queue("q"))
    with pytest.raises(InvalidParameter, match="standard queue as DLQ"):
        sub.set_attributes(redrive)
    assert "RedrivePolicy" not in sub.get_attributes()


def test_a_raw_refusal_goes_to_the_dead_letter_queue_without_the_refused_attributes(broker):
    # 1e-200 is a valid SNS Number but not an SQS one: the raw subscription cannot take it.
    # The dead-letter copy goes without the attributes (SQS would refuse them), and the other
    # subscriptions get the message: the refusal must not undo the publish (FIFO queues check
    # attributes again).
    for suffix, topic_attributes in (("", {}), (".fifo", {"FifoTopic": "true"})):
        fifo = {"FifoQueue": "true"} if suffix else {}
        t = broker.create_topic(
            "t" + suffix,
            {**topic_attributes, **({"ContentBasedDeduplication": "true"} if suffix else {})},
        )
        raw_q = broker.create_queue("raw" + suffix, fifo)
        other = broker.create_queue("other" + suffix, fifo)
        dlq = broker.create_queue("dlq" + suffix, fifo)
        redrive = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})}
        t.subscribe(raw_q, raw_message_delivery=True, attributes=redrive)
        t.subscribe(other)
        attrs = {"n": {"DataType": "Number", "StringValue": "1e-200"}}
        with pytest.raises(errors.InvalidParameterValue):
            dlq.send("direct", attributes=attrs, group_id="g" if suffix else None)
        t.publish("hello", attributes=attrs, group_id="g" if suffix else None)
        assert [e["Message"] for e in envelopes(other)] == ["hello"]
        assert bodies(raw_q) == []
        (dead,) = drain(dlq)
        assert (dead.body, dead.attributes) == (b"hello", {})


def test_a_message_too_large_for_the_queue_is_skipped(broker):
    small = broker.create_queue("small", {"MaximumMessageSize": "1024"})
    big = broker.create_queue("big")
    t = broker.create_topic("orders")
    small_sub = t.subscribe(small)
    t.subscribe(big)
    t.publish("x" * 600)  # 600 bytes fit, the envelope around them does not
    assert bodies(small) == [] and len(bodies(big)) == 1
    assert small_sub.undelivered == 1
    t.publish("short")
    assert len(bodies(small)) == 1


def test_issue_4_a_publish_follows_the_queue_changes_made_since_the_last_one(
    broker, clock, monkeypatch
):
    # A standard topic's fan-out plan (fan_out.Plan) is made once and holds until the broker
    # replaces its _queues_token: on a queue's attribute change, deletion or (re)creation.
    monkeypatch.setattr(broker, "_refresh_definitions", lambda: None)  # (it replaces it too)
    q, other = broker.create_queue("q"), broker.create_queue("other")
    t = broker.create_topic("orders")
    sub = t.subscribe(q)
    t.subscribe(other)

    def planned() -> set[int]:
        assert t._state is not None and t._state._plan is not None
        return {id(queue) for queue in t._state._plan.queues}

    t.publish("first")
    q.set_attributes({"DelaySeconds": "5"})
    t.publish("delayed")
    assert [e["Message"] for e in envelopes(q)] == ["first"]
    clock.advance(5)
    assert [e["Message"] for e in envelopes(q)] == ["delayed"]
    q.set_attributes({"DelaySeconds": "0"})
    t.publish("x" * 600)
    assert len(bodies(q)) == 1
    q.set_attributes({"MaximumMessageSize": "1024"})
    t.publish("x" * 600)  # the envelope around it is too big for q now
    assert bodies(q) == [] and sub.undelivered == 1
    broker.delete_queue("q")
    t.publish("lost")
    assert sub.undelivered == 2 and planned() == {id(other)}
    q = broker.create_queue("q")
    t.publish("again")
    t.publish("and again")
    assert [e["Message"] for e in envelopes(q)] == ["again", "and again"]
    assert q.counters["sent"] == 2 and planned() == {id(q), id(other)}
    assert len(bodies(other)) == 7


def test_concurrent_publishes_and_subscription_changes(broker):
    queues = [broker.create_queue(f"q{i}") for i in range(3)]
    t = broker.create_topic("orders")
    for q in queues:
        t.subscribe(q)
    late, churn = broker.create_queue("late"), broker.create_queue("churn")
    failures: list[BaseException] = []

    def publisher(n: int) -> None:
        try:
            for i in range(50):
                t.publish(f"{n}-{i}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    t.subscribe(late)
    for _ in range(5):
        t.subscribe(churn).unsubscribe()
    for thread in threads:
        thread.join(60)
    assert failures == []
    for q in queues:  # every publish reached every queue subscribed all along, exactly once
        got = sorted(e["Message"] for e in envelopes(q))
        assert got == sorted(f"{n}-{i}" for n in range(4) for i in range(50))
    assert len(bodies(late)) <= 200 and len(bodies(churn)) <= 200


def test_publish_wakes_a_long_poll(broker):
    q = broker.create_queue("q")
    t = broker.create_topic("orders")
    t.subscribe(q)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.extend(q.receive(1, wait_seconds=10)))
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    t.publish("wake up")
    waiter.join(10)
    assert len(got) == 1 and time.monotonic() - started < 5


@pytest.mark.parametrize("doorbell", [True, False], ids=["doorbell", "condition"])
def test_notify_many_wakes_each_queue_as_notify_does(tmp_path, monkeypatch, doorbell):
    # A publish wakes the queues it wrote to in one call (Wakeups.notify_many): each queue's
    # long polls and listeners hear of one message, as from notify(queue_id); no other queue.
    from millpond import wakeups as wakeups_module

    if not doorbell:
        monkeypatch.setattr(wakeups_module, "_doorbell_class", lambda: None)
    wakeups = wakeups_module.Wakeups(str(tmp_path))
    try:
        if doorbell and not wakeups.cross_process:
            pytest.skip("no doorbell file here (not Linux, or no C extension)")
        heard: list[tuple[int | None, int]] = []
        wakeups.add_listener(lambda queue_id, count: heard.append((queue_id, count)))
        before = {queue_id: wakeups.generation(queue_id) for queue_id in (3, 4, 5)}
        any_before = wakeups.any_generation() if doorbell else 0
        wakeups.notify_many({3, 5})
        assert sorted(heard) == [(3, 1), (5, 1)]
        moved = {q for q, generation in before.items() if wakeups.generation(q) != generation}
        assert moved == {3, 5}
        if doorbell:  # the slot that rings with every queue's (the daemon's watcher sleeps on)
            assert wakeups.any_generation() != any_before
    finally:
        wakeups.close()


# -- restart and other processes ------------------------------------------------------------------


def test_restart_keeps_topics_subscriptions_and_policies(data_dir, clock, impl):
    with millpond.open(data_dir, durability="os", clock=clock, core=impl) as b:
        dlq = b.create_queue("dlq")
        hot, raw = b.create_queue("hot"), b.create_queue("raw")
        t = b.create_topic("orders", {"DisplayName": "Orders"})
        b.create_topic("other.fifo", {"FifoTopic": "true", "ContentBasedDeduplication": "true"})
        s1 = t.subscribe(hot, filter_policy={"temp": [{"numeric": [">", 30]}]})
        s2 = t.subscribe(
            raw,
            filter_policy={"temp": [{"exists": True}]},
            raw_message_delivery=True,
            attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})},
        )
        before = {s.arn: s.get_attributes() for s in (s1, s2)}
        topic_before = t.get_attributes()
    with millpond.open(data_dir, durability="os", clock=clock, core=impl) as b:
        assert b.list_topics() == ["orders", "other.fifo"]
        t = b.topic("orders")
        assert t.get_attributes() == topic_before
        assert {s.arn: s.get_attributes() for s in t.list_subscriptions()} == before
        assert b.topic("other.fifo").get_attributes()["ContentBasedDeduplication"] == "true"
        t.publish("31", attributes={"temp": N("31")})
        t.publish("29", attributes={"temp": N("29")})
        t.publish("none")
        assert [e["Message"] for e in envelopes(b.queue("hot"))] == ["31"]
        assert bodies(b.queue("raw")) == [b"31", b"29"]  # still raw
        b.delete_queue("raw")
        t.publish("to dlq", attributes={"temp": N("1")})
        assert bodies(b.queue("dlq")) == [b"to dlq"]  # the redrive policy survived too


CHANGER = textwrap.dedent(
    """
    import sys
    import millpond

    with millpond.open(sys.argv[1], durability="os", core=sys.argv[2]) as broker:
        t = broker.topic("orders")
        t.subscribe(broker.create_queue("theirs"))
        (mine,) = [s for s in t.list_subscriptions() if s.queue_name == "mine"]
        mine.set_attributes({"FilterPolicy": '{"k": ["only"]}'})
    """
)


def test_changes_made_by_another_process_apply_at_the_next_publish(broker, data_dir, impl):
    mine = broker.create_queue("mine")
    t = broker.create_topic("orders")
    t.subscribe(mine)
    t.publish("warm the cache")
    assert len(bodies(mine)) == 1
    done = subprocess.run(
        [sys.executable, "-c", CHANGER, data_dir, impl], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    t.publish("after", attributes={"k": S("other")})
    assert bodies(mine) == []  # the new policy, set elsewhere, applies here at once
    assert [e["Message"] for e in envelopes(broker.queue("theirs"))] == ["after"]


# -- FIFO topics ----------------------------------------------------------------------------------


def test_fifo_topic_publish_rules(broker):
    t = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    with pytest.raises(InvalidParameter) as info:
        t.publish("x")
    assert str(info.value) == (
        "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"
    )
    with pytest.raises(InvalidParameter) as info:
        t.publish("x", group_id="g")
    assert str(info.value) == (
        "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or "
        "MessageDeduplicationId provided explicitly"
    )
    with pytest.raises(InvalidParameter, match="MessageDeduplicationId"):
        t.publish("x", group_id="g", deduplication_id="x" * 129)
    assert len(t.publish("x", group_id="g", deduplication_id="d")) == 36


def test_fifo_topic_envelope_and_sequence_numbers(broker):
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    t = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    sub = t.subscribe(q)
    results = t.publish_batch(
        [
            {"Id": "1", "Message": "a", "MessageGroupId": "g1", "MessageDeduplicationId": "d1"},
            {"Id": "2", "Message": "b", "MessageGroupId": "g1", "MessageDeduplicationId": "d2"},
        ]
    )
    numbers = [int(r["SequenceNumber"]) for r in results]
    assert numbers[0] < numbers[1] and len(results[0]["SequenceNumber"]) == 20
    got = drain(q)
    assert [m.group_id for m in got] == ["g1", "g1"]
    assert [m.deduplication_id for m in got] == ["d1", "d2"]
    assert ordered_keys(got[0].body) == [
        "Type",
        "MessageId",
        "SequenceNumber",
        "TopicArn",
        "Message",
        "Timestamp",
        "UnsubscribeURL",
    ]
    e = json.loads(got[0].body)
    assert (e["SequenceNumber"], e["MessageId"]) == (
        results[0]["SequenceNumber"],
        results[0]["MessageId"],
    )
    assert e["UnsubscribeURL"].endswith(sub.arn)


def test_fifo_topic_deduplicates_for_five_minutes(broker, clock):
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    t = broker.create_topic(
        "orders.fifo", {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )
    t.subscribe(q)
    first = t.publish("same body", group_id="g")
    assert t.publish("same body", group_id="other-group") == first  # scope Topic
    assert t.publish("same body", group_id="g", deduplication_id="explicit") != first
    clock.advance(301)
    third = t.publish("same body", group_id="g")
    assert third != first
    got = [json.loads(m.body)["MessageId"] for m in drain(q)]
    assert got == [first, got[1], third]  # first, the explicit id, the one after 5 minutes
    t.set_attributes({"FifoThroughputScope": "MessageGroup"})
    a = t.publish("scoped", group_id="g1")
    assert t.publish("scoped", group_id="g2") != a  # per group now
    assert t.publish("scoped", group_id="g1") == a


def test_fifo_topic_raw_delivery_keeps_group_order(broker):
    q = broker.create_queue("jobs.fifo", {"FifoQueue": "true"})
    t = broker.create_topic(
        "orders.fifo", {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )
    t.subscribe(q, raw_message_delivery=True)
    for i in range(5):
        t.publish(f"m{i}", group_id="g", attributes={"i": N(str(i))})
    got = drain(q)
    assert [m.text for m in got] == [f"m{i}" for i in range(5)]
    assert [m.attributes["i"]["StringValue"] for m in got] == [str(i) for i in range(5)]


def test_fifo_dedup_entries_expire_from_storage(broker, clock):
    t = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    for i in range(20):
        t.publish("x", group_id="g", deduplication_id=f"d{i}")
    clock.advance(301)
    for i in range(20):
        t.publish("y", group_id="g", deduplication_id=f"e{i}")

    # the expired ids were swept by later publishes
    assert meta_keys(broker, b"td:orders.fifo\x00") == 20


def test_topic_keys_stay_out_of_queue_listings(broker):
    t = broker.create_topic("orders")
    t.subscribe(broker.create_queue("q"))
    assert broker.list_queues() == ["q"]
    assert broker.list_dead_letter_source_queues("q") == []


# -- HTTP/S subscriptions (the outbox the daemon drains) ------------------------------------------


HOOK = "https://example.com/hook"


def confirm(broker: millpond.Broker, t: millpond.Topic) -> millpond.Subscription:
    """Take the pending SubscriptionConfirmation from the outbox and confirm with its token."""
    (delivery,) = broker._topics.http.take()
    assert delivery.message_type == "SubscriptionConfirmation"
    broker._topics.http.delivered(delivery)
    return t.confirm_subscription(json.loads(delivery.body)["Token"])


def test_http_subscription_is_pending_until_confirmed(broker, clock):
    t = broker.create_topic("orders")
    sub = t.subscribe(HOOK, protocol="https", service_url="http://localhost:9324")
    assert (sub.protocol, sub.endpoint, sub.queue_name, sub.pending) == ("https", HOOK, "", True)
    attrs = sub.get_attributes()
    assert (attrs["Protocol"], attrs["PendingConfirmation"]) == ("https", "true")
    assert attrs["ConfirmationWasAuthenticated"] == "false"
    assert t.get_attributes()["SubscriptionsPending"] == "1"
    outbox = broker._topics.http
    (delivery,) = outbox.take()
    assert outbox.take() == []  # leased
    assert delivery.url == HOOK
    headers = dict(delivery.headers)
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert headers["x-amz-sns-topic-arn"] == t.arn
    assert "x-amz-sns-subscription-arn" not in headers
    body = json.loads(delivery.body)
    assert headers["x-amz-sns-message-id"] == body["MessageId"]
    assert body["Timestamp"] == iso_timestamp(clock.now_ms())
    assert body["SubscribeURL"] == (
        "http://localhost:9324/?Action=ConfirmSubscription&TopicArn="
        f"arn:aws:sns:us-east-1:123456789012:orders&Token={body['Token']}"
    )  # as SNS writes it (AWS-recorded): the ARN as is, no Version
    text = (
        f"Message\n{body['Message']}\nMessageId\n{body['MessageId']}\nSubscribeURL\n"
        f"{body['SubscribeURL']}\nTimestamp\n{body['Timestamp']}\nToken\n{body['Token']}\n"
        f"TopicArn\n{t.arn}\nType\nSubscriptionConfirmation\n"
    )
    assert body["Signature"] == signature(broker._topics._signing_key, text, "1")
    outbox.delivered(delivery)
    t.publish("before")  # a pending subscription gets nothing
    assert outbox.next_due_ms() is None
    # SNS's recorded texts: a hex token (as its tokens are) that names nothing, and any other
    with pytest.raises(InvalidParameter, match="^Invalid parameter: Token$"):
        t.confirm_subscription("0" * 128)
    with pytest.raises(InvalidParameter, match="^Invalid token$"):
        t.confirm_subscription("randomtoken")
    confirmed = t.confirm_subscription(body["Token"], authenticate_on_unsubscribe="true")
    assert confirmed == sub and not confirmed.pending
    assert t.confirm_subscription(body["Token"]) == sub  # again: the same subscription
    assert sub.get_attributes()["ConfirmationWasAuthenticated"] == "true"
    message_id = t.publish("after", subject="S", attributes={"k": S("v")})
    (delivery,) = outbox.take()
    headers = dict(delivery.headers)
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["x-amz-sns-subscription-arn"] == sub.arn
    assert headers["x-amz-sns-message-id"] == message_id
    envelope = json.loads(delivery.body)
    assert (envelope["Message"], envelope["Subject"]) == ("after", "S")
    assert envelope["UnsubscribeURL"].endswith(sub.arn)
    assert ordered_keys(delivery.body) == ENVELOPE_KEYS


def test_http_raw_delivery_and_message_structure(broker):
    t = broker.create_topic("orders")
    t.subscribe(HOOK, protocol="https", raw_message_delivery=True)
    confirm(broker, t)
    t.publish(json.dumps({"default": "d", "https": "for the web"}), message_structure="json")
    t.publish("plain", attributes={"k": S("v")})
    deliveries = broker._topics.http.take()
    assert sorted(d.body for d in deliveries) == [b"for the web", b"plain"]
    assert all(dict(d.headers)["x-amz-sns-rawdelivery"] == "true" for d in deliveries)


def test_http_failures_are_retried_then_dead_lettered(broker, clock):
    dlq = broker.create_queue("dlq")
    t = broker.create_topic("orders")
    sub = t.subscribe(
        HOOK,
        protocol="https",
        attributes={
            "DeliveryPolicy": json.dumps({"healthyRetryPolicy": {"numRetries": 1}}),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn}),
        },
    )
    confirm(broker, t)
    t.publish("m")
    outbox = broker._topics.http
    (delivery,) = outbox.take()
    assert delivery.attempt == 1
    outbox.failed(delivery, reason="HTTP 500")
    assert outbox.take() == []  # not due yet: 20 s (minDelayTarget's default)
    clock.advance(20)
    (delivery,) = outbox.take()
    assert delivery.attempt == 2
    outbox.failed(delivery, reason="HTTP 500")  # numRetries 1: given up
    assert outbox.next_due_ms() is None
    assert [json.loads(b)["Message"] for b in bodies(dlq)] == ["m"]
    # without a dead-letter queue the message is counted as undelivered
    sub.set_attributes({"RedrivePolicy": None})  # removes it
    t.publish("lost")
    (delivery,) = outbox.take()
    outbox.failed(delivery, permanent=True, reason="HTTP 404")
    assert sub.undelivered == 1 and bodies(dlq) == []


def test_a_raw_http_delivery_given_up_on_is_dead_lettered_with_its_attributes(broker, clock):
    # As a raw queue subscription's dead-letter copy (the reference: AWS-recorded DLQ copies
    # carry the original attributes); the POST itself does not send them. They were lost.
    dlq = broker.create_queue("dlq")
    t = broker.create_topic("orders")
    t.subscribe(
        HOOK,
        protocol="https",
        raw_message_delivery=True,
        attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})},
    )
    confirm(broker, t)
    blob = {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    t.publish("m", attributes={"k": S("v"), "b": blob})
    outbox = broker._topics.http
    (delivery,) = outbox.take()
    outbox.failed(delivery, permanent=True, reason="HTTP 404")
    (m,) = dlq.receive(1)
    assert m.body == b"m"
    assert m.attributes == {"k": S("v"), "b": blob}


def test_http_leases_run_out_and_unsubscribed_entries_are_dropped(broker, clock):
    t = broker.create_topic("orders")
    sub = t.subscribe(HOOK, protocol="https")
    confirm(broker, t)
    t.publish("m")
    outbox = broker._topics.http
    assert len(outbox.take(lease_ms=5_000)) == 1  # taken, never settled (a crash)
    clock.advance(5)
    (again,) = outbox.take()
    assert json.loads(again.body)["Message"] == "m"
    outbox.failed(again)
    sub.unsubscribe()
    clock.advance(60)
    # the retried Notification is dropped (the endpoint is no longer subscribed); what goes
    # out is the UnsubscribeConfirmation
    (goodbye,) = outbox.take()
    assert goodbye.message_type == "UnsubscribeConfirmation"
    outbox.delivered(goodbye)
    assert outbox.next_due_ms() is None


def test_an_unsubscribe_confirmation_restores_the_subscription(broker, clock):
    t = broker.create_topic("orders")
    sub = t.subscribe(HOOK, protocol="https", attributes={"RawMessageDelivery": "true"})
    confirm(broker, t)
    sub.unsubscribe()
    outbox = broker._topics.http
    (goodbye,) = outbox.take()
    outbox.delivered(goodbye)
    assert dict(goodbye.headers)["x-amz-sns-subscription-arn"] == sub.arn
    message = json.loads(goodbye.body)
    assert message["Type"] == "UnsubscribeConfirmation"
    assert message["Message"].startswith(f"You have chosen to deactivate subscription {sub.arn}.")
    assert t.list_subscriptions() == []
    t.publish("while unsubscribed")
    assert outbox.take() == []
    restored = t.confirm_subscription(message["Token"])  # what its SubscribeURL does
    assert restored.arn == sub.arn and not restored.pending
    assert restored.get_attributes()["RawMessageDelivery"] == "true"  # as it was
    t.publish("back")
    (delivery,) = outbox.take()
    assert delivery.body == b"back"
    clock.advance(3 * 24 * 3600)  # a token of an older unsubscribe has run out
    restored.unsubscribe()
    (goodbye,) = outbox.take()
    outbox.delivered(goodbye)
    clock.advance(3 * 24 * 3600)
    with pytest.raises(InvalidParameter, match="^Invalid parameter: Token$"):
        t.confirm_subscription(json.loads(goodbye.body)["Token"])


def test_http_subscription_rules(broker, clock):
    t = broker.create_topic("orders")
    with pytest.raises(InvalidParameter, match="Endpoint must match the specified protocol"):
        t.subscribe("http://example.com/", protocol="https")
    with pytest.raises(InvalidParameter, match="does not support this protocol string: x"):
        t.subscribe("x", protocol="x")
    with pytest.raises(InvalidParameter, match="not email"):
        t.subscribe("a@example.com", protocol="email")
    with pytest.raises(InvalidParameter, match="^Invalid parameter: Endpoint$"):
        t.subscribe("https://", protocol="https")
    fifo = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    with pytest.raises(InvalidParameter, match="FIFO topics deliver to SQS queues only"):
        fifo.subscribe(HOOK, protocol="https")
    sub = t.subscribe(HOOK, protocol="https")
    broker._topics.http.delivered(broker._topics.http.take()[0])
    clock.advance(2 * 24 * 3600 - 1)
    assert t.subscribe(HOOK, protocol="https") == sub  # asks again; the token lives 2 days more
    (delivery,) = broker._topics.http.take()
    token = json.loads(delivery.body)["Token"]
    clock.advance(2 * 24 * 3600 + 1)
    with pytest.raises(InvalidParameter, match="^Invalid parameter: Token$"):
        t.confirm_subscription(token)  # expired
    assert t.list_subscriptions() == []  # SNS deletes unconfirmed subscriptions after 48 hours


def test_http_retry_delays_merge_the_policies():
    from millpond.topic_attributes import (
        http_retry_delays_ms,
        subscription_effective_delivery_policy,
    )

    assert http_retry_delays_ms(None, None) == [20_000] * 3
    topic_policy = json.dumps({"http": {"defaultHealthyRetryPolicy": {"numRetries": 5}}})
    assert http_retry_delays_ms(None, topic_policy) == [20_000] * 5
    sub_policy = json.dumps({"healthyRetryPolicy": {"minDelayTarget": 2, "numRetries": 0}})
    assert http_retry_delays_ms(sub_policy, topic_policy) == []
    # minDelayTarget at least 1 s; the backoff rises to the default maxDelayTarget of 20 s
    zero = '{"healthyRetryPolicy": {"minDelayTarget": 0}}'
    assert http_retry_delays_ms(zero, None) == [1_000, 10_500, 20_000]
    # member by member, as EffectiveDeliveryPolicy shows it: the topic's delay stays when the
    # subscription sets only its number of retries
    topic_delay = json.dumps({"http": {"defaultHealthyRetryPolicy": {"minDelayTarget": 5}}})
    own = '{"healthyRetryPolicy": {"numRetries": 1}}'
    assert http_retry_delays_ms(own, topic_delay) == [5_000]
    effective = json.loads(subscription_effective_delivery_policy(own, topic_delay))
    retry = effective["healthyRetryPolicy"]
    assert (retry["numRetries"], retry["minDelayTarget"]) == (1, 5)


# -- tags, permissions, Publish's answer ----------------------------------------------------------


def test_topic_tags(broker):
    # broker.create_topic takes no tags (yet): the registry does
    t = broker._topics.create("orders", tags={"team": "core"})
    assert broker._topics.create("orders", tags=[{"Key": "team", "Value": "core"}]) is t
    with pytest.raises(InvalidParameter, match="Topic already exists with different tags"):
        broker._topics.create("orders", tags={"team": "other"})
    t.tag({"env": "prod", "team": "edge"})
    assert t.tags() == {"team": "edge", "env": "prod"}
    t.untag(["team", "absent"])
    assert t.tags() == {"env": "prod"}
    with pytest.raises(errors.InvalidInputError) as info:
        t.tag({f"k{i}": "v" for i in range(50)})
    assert info.value.code == "TagLimitExceeded"
    with pytest.raises(InvalidParameter, match="Duplicated keys"):
        t.tag([{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}])
    with pytest.raises(InvalidParameter, match="reserved"):
        t.tag({"aws:x": "1"})
    t.delete()
    with pytest.raises(errors.TopicNotFound):
        t.tags()
    assert broker.create_topic("orders").tags() == {}  # deleted with the topic


def test_topic_permissions(broker):
    t = broker.create_topic("orders")
    t.add_permission("friends", ["111122223333", "444455556666"], ["Publish"])
    policy = json.loads(t.get_attributes()["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["__default_statement_ID", "friends"]
    assert policy["Statement"][1]["Principal"] == {
        "AWS": ["arn:aws:iam::111122223333:root", "arn:aws:iam::444455556666:root"]
    }
    assert policy["Statement"][1]["Action"] == "SNS:Publish"
    with pytest.raises(InvalidParameter, match="Statement already exists"):
        t.add_permission("friends", ["1"], ["Subscribe"])
    with pytest.raises(InvalidParameter, match="out of service scope"):
        t.add_permission("other", ["1"], ["SendMessage"])
    t.remove_permission("absent")
    t.remove_permission("friends")
    policy = json.loads(t.get_attributes()["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["__default_statement_ID"]


def test_publish_message_answers_as_sns_publish(broker):
    t = broker.create_topic("plain")
    assert set(t.publish_message("m")) == {"MessageId"}
    fifo = broker.create_topic("orders.fifo", {"FifoTopic": "true"})
    first = fifo.publish_message("m", group_id="g", deduplication_id="d")
    second = fifo.publish_message("n", group_id="g", deduplication_id="e")
    assert int(second["SequenceNumber"]) > int(first["SequenceNumber"])
    assert fifo.publish_message("m", group_id="g", deduplication_id="d") == first


def test_split_modules_keep_the_public_names():
    from millpond import fan_out, subscription, topic_attributes

    assert topic.Subscription is subscription.Subscription is millpond.Subscription
    assert topic.FilterPolicyLimitExceeded is subscription.FilterPolicyLimitExceeded
    assert topic.deliver_to_queue is fan_out.deliver_to_queue
    assert issubclass(topic.Topic, topic_attributes.TopicSettings)


def test_group_id_on_a_standard_topic_reaches_fair_queues(broker):
    topic = broker.create_topic("fair")
    queue = broker.create_queue("fair-q")
    topic.subscribe(queue, raw_message_delivery=True)
    topic.publish("for tenant 7", group_id="tenant-7")
    (message,) = queue.receive()
    assert message.text == "for tenant 7" and message.group_id == "tenant-7"


def test_publish_trace_header_becomes_the_aws_trace_header(broker):
    # SNS hands a publish's X-Ray trace header on to SQS subscribers as AWSTraceHeader
    # (AWS-validated: test_publish_sqs_from_sns_with_xray_propagation); FIFO queues included.
    t = broker.create_topic(
        "traced.fifo", {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )
    q = broker.create_queue("traced.fifo", {"FifoQueue": "true"})
    t.subscribe(q)
    plain_topic, plain = broker.create_topic("traced"), broker.create_queue("plain")
    plain_topic.subscribe(plain, raw_message_delivery=True)
    t.publish("m", group_id="g", trace_header="Root=1-abc")
    plain_topic.publish_batch([{"Id": "1", "Message": "x"}], trace_header="Root=1-def")
    assert [m.trace_header for m in q.receive(10)] == ["Root=1-abc"]
    assert [m.trace_header for m in plain.receive(10)] == ["Root=1-def"]
    for bad in ("", "a\x00b", 5):
        with pytest.raises(InvalidParameter, match="AWSTraceHeader"):
            plain_topic.publish("y", trace_header=bad)
    assert plain.receive(10, visibility_timeout=0) == []  # refused ones delivered nothing


def test_http_retry_delays_follow_the_delivery_policy_phases():
    # SNS's four phases (Amazon SNS message delivery retries, "Creating an HTTP/S delivery
    # policy"): numNoDelayRetries at once, numMinDelayRetries after minDelayTarget, the backoff
    # phase from minDelayTarget up to maxDelayTarget, numMaxDelayRetries after maxDelayTarget.
    from millpond.topic_attributes import http_retry_delays_ms

    assert http_retry_delays_ms(None, None) == [20_000, 20_000, 20_000]
    policy = {
        "minDelayTarget": 1,
        "maxDelayTarget": 9,
        "numRetries": 8,
        "numNoDelayRetries": 2,
        "numMinDelayRetries": 1,
        "numMaxDelayRetries": 2,
        "backoffFunction": "linear",
    }
    delays = http_retry_delays_ms(json.dumps({"healthyRetryPolicy": policy}), None)
    assert delays == [0, 0, 1_000, 1_000, 5_000, 9_000, 9_000, 9_000]
    topic = json.dumps({"http": {"defaultHealthyRetryPolicy": {**policy, "numRetries": 2}}})
    assert http_retry_delays_ms(None, topic) == [0, 0]  # the phases fill numRetries in order


def test_subscriptions_with_the_same_filter_policy_each_get_the_message(broker):
    # a policy shared by subscriptions is matched once per message: each still gets its copy,
    # and the same text with another scope (or another text) is matched on its own
    policy = {"kind": ["order"]}
    t = broker.create_topic("orders")
    same = [broker.create_queue(f"same{i}") for i in range(3)]
    for q in same:
        t.subscribe(q, filter_policy=policy)
    in_body = broker.create_queue("in_body")
    t.subscribe(in_body, filter_policy=policy, filter_policy_scope="MessageBody")
    other = broker.create_queue("other")
    t.subscribe(other, filter_policy={"kind": ["refund"]})
    t.publish('{"kind": "refund"}', attributes={"kind": S("order")})
    t.publish_batch(
        [
            {"Id": "a", "Message": '{"kind": "order"}', "MessageAttributes": {"kind": S("x")}},
            {"Id": "b", "Message": "m", "MessageAttributes": {"kind": S("order")}},
        ]
    )
    for q in same:
        assert [json.loads(b)["Message"] for b in bodies(q)] == ['{"kind": "refund"}', "m"]
    assert [json.loads(b)["Message"] for b in bodies(in_body)] == ['{"kind": "order"}']
    assert bodies(other) == []


def test_issue_4_a_filtered_publish_picks_its_planned_queues(broker):
    # A filtered one-message publish takes the queues of the topic's fan_out.Plan that its
    # verdicts keep (and only their "sent" metrics), the raw and unknown ones on their own path.
    t = broker.create_topic("orders")
    dlq = broker.create_queue("dlq")
    redrive = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})}
    yes, no = {"kind": ["order"]}, {"kind": ["refund"]}
    names = ["all", "yes", "no", "raw_yes", "raw_no", "yes2"]
    queues = {name: broker.create_queue(name) for name in names}
    for name, policy in zip(names, [None, yes, no, yes, no, yes]):
        t.subscribe(queues[name], filter_policy=policy, raw_message_delivery="raw" in name)
    gone = t.subscribe("gone", filter_policy=yes, attributes=redrive)
    t.subscribe("gone_too", filter_policy=no, attributes=redrive)
    for i in range(2):  # the second one with the plan made by the first
        t.publish(f"m{i}", attributes={"kind": S("order")})
    t.publish("r", attributes={"kind": S("refund")})
    got = {name: [m.body for m in drain(q)] for name, q in queues.items()}
    envelope_bodies = {
        name: [json.loads(b)["Message"] for b in got[name]] for name in names if "raw" not in name
    }
    assert envelope_bodies["all"] == ["m0", "m1", "r"]
    assert envelope_bodies["yes"] == envelope_bodies["yes2"] == ["m0", "m1"]
    assert envelope_bodies["no"] == ["r"]
    assert got["raw_yes"] == [b"m0", b"m1"] and got["raw_no"] == [b"r"]
    assert [json.loads(b)["Message"] for b in bodies(dlq)] == ["m0", "m1", "r"]
    assert gone.undelivered == 0
    sent = {name: queues[name].counters["sent"] for name in names}
    assert sent == {"all": 3, "yes": 2, "no": 1, "raw_yes": 2, "raw_no": 1, "yes2": 2}
    counters = t.counters
    assert (counters["delivered"], counters["filtered_out"], counters["failed"]) == (11, 10, 3)

"""SQS over the query protocol as older clients send it, against the daemon.

boto 2 (API 2012-11-05, the Python SDK before boto3, and the request shapes kombu's own async
SQS connection still copies) sends some lists and maps without an index: ``AttributeName=All``
(GetQueueAttributes), ``Attribute.Name`` / ``Attribute.Value`` (SetQueueAttributes),
``AWSAccountId`` / ``ActionName`` (AddPermission). boto's integration tests ran these against
Amazon SQS (tests/integration/sqs/test_connection.py: ``q.get_attributes()`` holds
ApproximateNumberOfMessages and VisibilityTimeout, ``get_attributes('VisibilityTimeout')`` only
that one, ``set_timeout(45)`` then reads back 45).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .test_server_sqs import raw_query, xml_text

ACCOUNT = "123456789012"


def _call(daemon: Any, action: str, **params: str) -> bytes:
    status, _, body = raw_query(daemon, {"Action": action, "Version": "2012-11-05", **params})
    assert status == 200, body
    return body


def _queue(daemon: Any) -> str:
    name = f"hunt-{uuid.uuid4().hex[:12]}"
    return xml_text(_call(daemon, "CreateQueue", QueueName=name), "QueueUrl")[0]


def _attributes(body: bytes) -> dict[str, str]:
    return dict(
        re.findall(r"<Attribute><Name>(.*?)</Name><Value>(.*?)</Value></Attribute>", body.decode())
    )


def test_unindexed_list_and_map_members_as_boto2_sends_them(daemon: Any) -> None:
    url = _queue(daemon)
    _call(daemon, "SendMessage", QueueUrl=url, MessageBody="one")
    every = _attributes(_call(daemon, "GetQueueAttributes", QueueUrl=url, AttributeName="All"))
    assert every["ApproximateNumberOfMessages"] == "1"
    assert every["VisibilityTimeout"] == "30"
    one = _call(daemon, "GetQueueAttributes", QueueUrl=url, AttributeName="VisibilityTimeout")
    assert _attributes(one) == {"VisibilityTimeout": "30"}
    # SetQueueAttributes with an unindexed map entry: was MissingParameter ("Attributes")
    _call(
        daemon,
        "SetQueueAttributes",
        QueueUrl=url,
        **{"Attribute.Name": "VisibilityTimeout", "Attribute.Value": "45"},
    )
    indexed = {"AttributeName.1": "VisibilityTimeout"}
    assert _attributes(_call(daemon, "GetQueueAttributes", QueueUrl=url, **indexed)) == {
        "VisibilityTimeout": "45"
    }
    received = _call(daemon, "ReceiveMessage", QueueUrl=url, AttributeName="All")
    assert xml_text(received, "Body") == ["one"]
    assert _attributes(received)["ApproximateReceiveCount"] == "1"
    _call(
        daemon,
        "AddPermission",
        QueueUrl=url,
        Label="boto2",
        AWSAccountId=ACCOUNT,
        ActionName="SendMessage",
    )
    policy = _attributes(_call(daemon, "GetQueueAttributes", QueueUrl=url, AttributeName="Policy"))
    assert "boto2" in policy["Policy"] and "SQS:SendMessage" in policy["Policy"]


def test_query_responses_carry_the_request_id_header(daemon: Any) -> None:
    # The JSON protocol sent x-amzn-requestid, the query protocol only the XML's RequestId: the
    # Go SDK v1 takes a query response's request id from the header alone (empty here).
    for version, action in (("2012-11-05", "ListQueues"), ("2010-03-31", "ListTopics")):
        for params in ({}, {"NoSuchParameter": "x", "Action": "NoSuchAction"}):
            status, headers, body = raw_query(
                daemon, {"Action": action, "Version": version, **params}
            )
            assert status == (200 if not params else 400), body
            (in_xml,) = xml_text(body, "RequestId")
            assert headers.get("x-amzn-requestid") == in_xml

"""The query/XML side of the daemon (SQS and SNS), against what AWS answered.

Evidence: LocalStack's AWS-validated query-API tests (tests/aws/services/sqs/test_sqs.py,
class TestSqsQueryApi), which send raw, signed query requests to Amazon SQS and check its XML.
"""

from __future__ import annotations

import uuid
from typing import Any

from .test_server_sqs import raw, raw_query, xml_text

ACCOUNT = "123456789012"
SQS = {"Version": "2012-11-05"}


def _queue(daemon: Any) -> tuple[str, str]:
    """(name, URL path) of a new queue."""
    name = f"query-{uuid.uuid4().hex[:12]}"
    status, _, body = raw_query(daemon, {"Action": "CreateQueue", "QueueName": name, **SQS})
    assert status == 200, body
    return name, f"/{ACCOUNT}/{name}"


def _invalid_action(status: int, body: bytes, action: str) -> None:
    assert status == 400, body
    text = body.decode()
    assert "<Type>Sender</Type><Code>InvalidAction</Code>" in text
    assert f"<Message>The action {action} is not valid for this endpoint.</Message>" in text


def test_an_action_sqs_does_not_have_is_not_valid_for_this_endpoint(daemon: Any) -> None:
    # AWS-validated (test_invalid_action_raises_exception): "The action FooBar is not valid for
    # this endpoint."; millpond said "The action or operation requested is invalid: FooBar".
    _, path = _queue(daemon)
    for where, method in (("/", "POST"), (path, "GET")):
        status, _, body = raw_query(daemon, {"Action": "FooBar", **SQS}, where, method)
        _invalid_action(status, body, "FooBar")


def test_create_queue_and_list_queues_are_refused_at_a_queue_url(daemon: Any) -> None:
    # AWS-validated (test_get_create_queue_fails, test_get_list_queues_fails): a queue's URL
    # takes the queue's own actions, not CreateQueue or ListQueues (400 InvalidAction). millpond
    # created the queue and listed every queue.
    name, path = _queue(daemon)
    other = f"query-{uuid.uuid4().hex[:12]}"
    status, _, body = raw_query(
        daemon, {"Action": "CreateQueue", "QueueName": other, **SQS}, path, "GET"
    )
    _invalid_action(status, body, "CreateQueue")
    status, _, body = raw_query(daemon, {"Action": "GetQueueUrl", "QueueName": other, **SQS})
    assert status == 400 and b"NonExistentQueue" in body, body  # nothing was created
    status, _, body = raw_query(daemon, {"Action": "ListQueues", **SQS}, path, "POST")
    _invalid_action(status, body, "ListQueues")
    # GetQueueUrl is taken at a queue's URL, even for another queue (AWS-validated:
    # test_get_queue_url_work_for_different_queue); the endpoint still takes both actions
    _, second = _queue(daemon)
    status, _, body = raw_query(
        daemon, {"Action": "GetQueueUrl", "QueueName": name, **SQS}, second, "GET"
    )
    assert status == 200 and xml_text(body, "QueueUrl")[0].endswith(path), body
    for endpoint in ("/", "/sqs/api"):  # the endpoint, maybe behind a proxy's path prefix
        status, _, body = raw_query(
            daemon, {"Action": "ListQueues", "QueueNamePrefix": name, **SQS}, endpoint
        )
        assert status == 200 and [u.endswith(path) for u in xml_text(body, "QueueUrl")] == [True]


def test_an_empty_result_is_one_empty_element(daemon: Any) -> None:
    # AWS-validated (test_get_send_and_receive_messages): a receive from an empty queue answers
    # "<ReceiveMessageResult/>"; millpond wrote "<ReceiveMessageResult></ReceiveMessageResult>",
    # which clients that read SQS's XML as text (scripts, the test itself) did not recognise.
    _, path = _queue(daemon)
    status, _, body = raw_query(daemon, {"Action": "ReceiveMessage", **SQS}, path, "GET")
    assert status == 200 and b"<ReceiveMessageResult/><ResponseMetadata>" in body, body
    status, _, body = raw_query(daemon, {"Action": "ListQueues", "QueueNamePrefix": "none-", **SQS})
    assert status == 200 and b"<ListQueuesResult/>" in body, body
    status, _, body = raw_query(daemon, {"Action": "SendMessage", "MessageBody": "m", **SQS}, path)
    assert status == 200, body
    status, _, body = raw_query(daemon, {"Action": "ReceiveMessage", **SQS}, path, "GET")
    assert xml_text(body, "Body") == ["m"] and b"<ReceiveMessageResult><Message>" in body


def test_a_get_with_no_parameters_is_an_unknown_operation(daemon: Any) -> None:
    # AWS-validated (test_get_without_query_returns_unknown_operation, and ..._json_format_...
    # with Accept: application/json): a GET of a queue's URL with no query answers 404
    # "<UnknownOperationException/>", AWS's front end's answer to a request naming no operation
    # (the JS SDK v2 reads it as code UnknownOperation). millpond answered 400 MissingAction.
    _, path = _queue(daemon)
    for where, headers in ((path, {}), (path, {"Accept": "application/json"}), ("/", {})):
        status, got, body = raw(daemon, "GET", where, b"", headers)
        assert (status, body) == (404, b"<UnknownOperationException/>\n"), body
        assert got.get("x-amzn-requestid")
    # parameters but no Action: still MissingAction
    status, _, body = raw_query(daemon, {**SQS}, path, "GET")
    assert status == 400 and b"<Code>MissingAction</Code>" in body, body

"""The sqs:// backend (millpond.aws) against moto and a real millpond daemon.

What the conformance suite does not cover: the error mapping itself, the queue Policy a
subscription grants, FIFO batch details, received system attributes, dead-letter queues by
RedrivePolicy, connect() URL options, close, and the ImportError without boto3.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("boto3")

from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, ParamValidationError  # noqa: E402

import millpond  # noqa: E402
from millpond import errors  # noqa: E402
from millpond.aws import AwsBroker, AwsFifoQueue, AwsServiceError, AwsTopic  # noqa: E402
from millpond.aws.errors import (  # noqa: E402
    from_batch_failure,
    from_client_error,
    from_code,
    from_param_error,
)
from millpond.aws.policy import allow_topic  # noqa: E402
from millpond.sns_envelope import (  # noqa: E402
    InvalidParameter,
    ParameterValueInvalid,
    PublishBatchEmpty,
    PublishBatchEntryIdInvalid,
    PublishBatchIdsNotDistinct,
    PublishBatchTooLong,
    PublishBatchTooManyEntries,
    TagLimitExceeded,
    ValidationError,
)
from millpond.subscription import FilterPolicyLimitExceeded  # noqa: E402

_names = itertools.count()


@pytest.fixture
def name() -> str:
    return f"aws{os.getpid()}-{next(_names)}"


@pytest.fixture
def moto_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsBroker]:
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with moto.mock_aws(), millpond.connect("sqs://us-east-1") as broker:
        yield broker


def _daemon_broker(daemon: Any, **options: Any) -> AwsBroker:
    broker: AwsBroker = millpond.connect(
        "sqs://us-east-1",
        endpoint_url=daemon.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        **options,
    )
    return broker


@pytest.fixture
def daemon_broker(daemon: Any) -> Iterator[AwsBroker]:
    with _daemon_broker(daemon) as broker:
        yield broker


@pytest.fixture(params=["moto", "daemon"])
def aws(request: pytest.FixtureRequest) -> AwsBroker:
    """The backend against moto and against the daemon."""
    return request.getfixturevalue(f"{request.param}_broker")  # type: ignore[no-any-return]


def _drain(queue: Any, count: int, wait: float = 5.0, **kwargs: Any) -> list[Any]:
    deadline = time.monotonic() + wait
    got: list[Any] = []
    while len(got) < count and time.monotonic() < deadline:
        got += queue.receive(min(10, count - len(got)), wait_seconds=1, **kwargs)
    return got


def _in_threads(work: Any, items: list[Any]) -> None:
    """``work(item)`` for each item, each in its own thread, all started at once; re-raises
    the first exception a thread met."""
    start = threading.Barrier(len(items))
    failures: list[BaseException] = []

    def run(item: Any) -> None:
        start.wait()
        try:
            work(item)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


# -- the error mapping on its own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "code", "message", "expected"),
    [
        ("sqs", "AWS.SimpleQueueService.NonExistentQueue", "", errors.QueueDoesNotExist),
        ("sqs", "QueueDoesNotExist", "", errors.QueueDoesNotExist),  # JSON shape name
        ("sqs", "com.amazonaws.sqs#QueueDoesNotExist", "", errors.QueueDoesNotExist),
        ("sqs", "QueueAlreadyExists", "", errors.QueueAlreadyExists),
        ("sqs", "QueueNameExists", "", errors.QueueAlreadyExists),
        ("sqs", "AWS.SimpleQueueService.PurgeQueueInProgress", "", errors.PurgeQueueInProgress),
        ("sqs", "ReceiptHandleIsInvalid", "", errors.ReceiptHandleIsInvalid),
        ("sqs", "InvalidAttributeName", "", errors.InvalidAttributeName),
        ("sqs", "InvalidAttributeValue", "", errors.InvalidAttributeValue),
        ("sqs", "InvalidMessageContents", "", errors.InvalidMessageContents),
        ("sqs", "MissingParameter", "", errors.MissingParameter),
        ("sqs", "InvalidParameterValue", "bad", errors.InvalidParameterValue),
        (
            "sqs",
            "InvalidParameterValue",
            "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes.",
            errors.MessageTooLong,
        ),
        (
            "sqs",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "",
            errors.TooManyEntriesInBatchRequest,
        ),
        ("sqs", "AWS.SimpleQueueService.EmptyBatchRequest", "", errors.EmptyBatchRequest),
        ("sqs", "ResourceNotFoundException", "", errors.ResourceNotFound),
        ("sqs", "AWS.SimpleQueueService.MessageNotInflight", "", errors.MessageNotInflight),
        ("sqs", "InvalidIdFormat", "", errors.ReceiptHandleIsInvalid),
        ("sqs", "InvalidParameterValueException", "x", errors.InvalidParameterValue),
        ("sqs", "MissingRequiredParameterException", "", errors.MissingParameter),
        (
            "sqs",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "",
            errors.BatchEntryIdsNotDistinct,
        ),
        ("sqs", "AWS.SimpleQueueService.BatchRequestTooLong", "", errors.BatchRequestTooLong),
        ("sqs", "AWS.SimpleQueueService.InvalidBatchEntryId", "", errors.InvalidBatchEntryId),
        ("sns", "ParameterValueInvalid", "", ParameterValueInvalid),
        ("sns", "ValidationError", "", ValidationError),
        ("sns", "TagLimitExceeded", "", TagLimitExceeded),
        ("sns", "ResourceNotFound", "", errors.TopicNotFound),
        ("sns", "TooManyEntriesInBatchRequest", "", PublishBatchTooManyEntries),
        ("sns", "BatchEntryIdsNotDistinct", "", PublishBatchIdsNotDistinct),
        ("sns", "InvalidBatchEntryId", "", PublishBatchEntryIdInvalid),
        ("sns", "BatchRequestTooLong", "", PublishBatchTooLong),
        ("sns", "NotFound", "Topic does not exist", errors.TopicNotFound),
        ("sns", "InvalidParameter", "Invalid parameter: TopicArn", InvalidParameter),
        (
            "sns",
            "InvalidParameter",
            "Invalid parameter: FilterPolicy: Value of < must be numeric",
            errors.InvalidFilterPolicy,
        ),
        ("sns", "FilterPolicyLimitExceeded", "", FilterPolicyLimitExceeded),
        ("sns", "EmptyBatchRequest", "", PublishBatchEmpty),
    ],
)
def test_error_codes_map_to_millpond_classes(
    service: str, code: str, message: str, expected: type[Exception]
) -> None:
    exc = from_code(service, code, message)
    assert type(exc) is expected
    assert str(exc) == message


# Every other code /work/shared/reference/sqs-sns.md lists (SQS 1.7, SNS 2.1): no millpond
# class stands for it, so the error keeps AWS's code.
_UNMAPPED = [
    ("sqs", "AWS.SimpleQueueService.QueueDeletedRecently"),
    ("sqs", "QueueDeletedRecently"),
    ("sqs", "OverLimit"),  # in-flight or tag limits: not StorageFull, a data directory's limit
    ("sqs", "RequestThrottled"),
    ("sqs", "InvalidSecurity"),
    ("sqs", "InvalidAddress"),
    ("sqs", "AWS.SimpleQueueService.UnsupportedOperation"),
    ("sqs", "KmsAccessDenied"),
    *(
        ("sns", code)
        for code in (
            "AuthorizationError",
            "InternalError",
            "Throttled",
            "TopicLimitExceeded",
            "SubscriptionLimitExceeded",
            "StaleTag",
            "TagPolicy",
            "ConcurrentAccess",
            "InvalidSecurity",
            "InvalidState",
            "ReplayLimitExceeded",
            "EndpointDisabled",
            "KMSDisabled",
        )
    ),
]


@pytest.mark.parametrize(("service", "code"), _UNMAPPED)
def test_codes_without_a_class_keep_their_code(service: str, code: str) -> None:
    exc = from_code(service, code, "m", 403)
    assert type(exc) is AwsServiceError and (exc.code, exc.http_status) == (code, 403)


def test_unknown_code_keeps_what_aws_sent() -> None:
    exc = from_client_error(
        "sqs",
        ClientError(
            {
                "Error": {"Code": "ThrottlingException", "Message": "slow down", "Type": "Sender"},
                "ResponseMetadata": {"HTTPStatusCode": 429},
            },
            "SendMessage",
        ),
    )
    assert isinstance(exc, AwsServiceError) and isinstance(exc, errors.MillpondError)
    assert (exc.code, exc.http_status, exc.sender_fault) == ("ThrottlingException", 429, True)
    assert "slow down" in str(exc)


def test_client_side_validation_maps_to_invalid_input() -> None:
    bad_type = ParamValidationError(report="Invalid type for parameter MaxNumberOfMessages")
    missing = ParamValidationError(report="Missing required parameter in input: QueueUrl")
    assert type(from_param_error("sqs", bad_type)) is errors.InvalidParameterValue
    assert type(from_param_error("sqs", missing)) is errors.MissingParameter
    assert type(from_param_error("sns", bad_type)) is InvalidParameter
    failed = {"Id": "0", "Code": "ReceiptHandleIsInvalid", "Message": "no", "SenderFault": True}
    assert type(from_batch_failure("sqs", failed)) is errors.ReceiptHandleIsInvalid


# -- errors from a live endpoint ----------------------------------------------------------------


def test_lookup_errors(aws: AwsBroker, name: str) -> None:
    with pytest.raises(errors.QueueDoesNotExist):
        aws.queue(name)
    with pytest.raises(errors.QueueDoesNotExist):
        aws.delete_queue(name)
    with pytest.raises(errors.TopicNotFound):
        aws.topic(name)
    aws.delete_topic(name)  # idempotent, as SNS
    q = aws.create_queue(name, {"VisibilityTimeout": 60})  # ints are sent as SQS strings
    assert aws.create_queue(name, {"VisibilityTimeout": "60"}).url == q.url
    with pytest.raises(errors.QueueAlreadyExists):
        aws.create_queue(name, {"VisibilityTimeout": "61"})
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        q.delete("not-a-handle")
    with pytest.raises(errors.InvalidParameterValue):
        q.receive(max_messages="ten")  # type: ignore[arg-type]  # refused by botocore
    aws.delete_queue(name)
    with pytest.raises(errors.QueueDoesNotExist):
        q.send("to a deleted queue")


def test_no_answer_is_connection_lost(name: str) -> None:
    """Nothing listens: after botocore's retries the call raises what the native client
    raises when no answer came (a MillpondError, and a ConnectionError)."""
    from millpond.errors import ConnectionLost

    from .daemon import free_port

    config = Config(connect_timeout=1, retries={"total_max_attempts": 1})
    url = f"http://127.0.0.1:{free_port()}"
    with millpond.connect(
        "sqs://us-east-1",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=config,
    ) as broker:
        with pytest.raises(ConnectionLost) as caught:
            broker.create_queue(name)
        with pytest.raises(ConnectionLost):
            broker.create_topic(name)
    assert isinstance(caught.value, ConnectionError)


def test_closed_broker_refuses_calls(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name)
    aws.close()
    with pytest.raises(errors.BrokerClosed):
        q.send("late")


# The same wrong call, embedded and over the daemon through boto3: the same exception class.
_WRONG_CALLS: dict[str, Any] = {
    "receive 11": lambda x: x["q"].receive(11),
    "receive visibility -1": lambda x: x["q"].receive(1, visibility_timeout=-1),
    "receive wait 21": lambda x: x["q"].receive(1, wait_seconds=21),
    "change visibility 43201": lambda x: x["q"].change_visibility("x", 43201),
    "send delay 901": lambda x: x["q"].send("a", delay_seconds=901),
    "deduplication id, standard queue": lambda x: x["q"].send("a", deduplication_id="d"),
    "fifo without group": lambda x: x["f"].send("a"),
    "fifo without deduplication id": lambda x: x["f"].send("a", group_id="g"),
    "fifo with delay": lambda x: x["f"].send(
        "a", group_id="g", deduplication_id="d", delay_seconds=5
    ),
    "queue name": lambda x: x["b"].create_queue("bad name"),
    "fifo name without FifoQueue": lambda x: x["b"].create_queue("x.fifo"),
    "topic name": lambda x: x["b"].create_topic("bad name"),
    "unknown queue attribute": lambda x: x["q"].set_attributes({"Nope": "1"}),
    "queue attribute value": lambda x: x["q"].set_attributes({"VisibilityTimeout": "x"}),
    "get unknown attribute": lambda x: x["q"].get_attributes(["Nope"]),
    "redrive policy not JSON": lambda x: x["q"].set_attributes({"RedrivePolicy": "{"}),
    "51 tags": lambda x: x["q"].tag({f"k{i}": "v" for i in range(51)}),
    "unknown subscription attribute": lambda x: x["s"].set_attributes({"Nope": "1"}),
    "filter policy": lambda x: x["s"].set_attributes({"FilterPolicy": '{"a": "b"}'}),
    "raw delivery value": lambda x: x["s"].set_attributes({"RawMessageDelivery": "maybe"}),
    "unknown topic attribute": lambda x: x["t"].set_attributes({"Nope": "1"}),
    "FifoTopic set later": lambda x: x["t"].set_attributes({"FifoTopic": "true"}),
    "empty publish": lambda x: x["t"].publish(""),
    "publish attribute": lambda x: x["t"].publish(
        "m", attributes={"a": {"DataType": "Number", "StringValue": "x"}}
    ),
    "subject with a line break": lambda x: x["t"].publish("m", subject="a\nb"),
    "message structure": lambda x: x["t"].publish("m", message_structure="json"),
    "fifo topic without group": lambda x: x["ft"].publish("m"),
    "missing subscription": lambda x: x["b"].subscription(x["t"].arn + ":nope"),
    "subscription ARN": lambda x: x["b"].subscription("garbage"),
    "topic ARN": lambda x: x["b"].topic("arn:aws:sns:nope"),
    "batch ids": lambda x: x["t"].publish_batch(
        [{"Id": "a", "Message": "m"}, {"Id": "a", "Message": "m"}]
    ),
    "move task from a queue no one dead-letters to": lambda x: x["b"].start_message_move_task(
        x["q"].arn
    ),
    "move tasks of a missing queue": lambda x: x["b"].list_message_move_tasks(x["q"].arn + "-nope"),
    "cancel task handle": lambda x: x["b"].cancel_message_move_task("nope"),
    "dead-letter sources of a missing queue": lambda x: x["b"].list_dead_letter_source_queues(
        "nope"
    ),
    "confirmation token": lambda x: x["t"].confirm_subscription("token"),
    "permission action": lambda x: x["t"].add_permission("l", ["123456789012"], ["Nope"]),
    "http endpoint": lambda x: x["t"].subscribe("ftp://x", protocol="http"),
    "batch body None": lambda x: x["q"].send_batch(["a", {"body": None}]),
    "batch body empty": lambda x: x["q"].send_batch(["a", ""]),
    "fifo batch without group": lambda x: x["f"].send_batch(
        [{"body": "a", "group_id": "g", "deduplication_id": "d"}, {"body": "b"}]
    ),
    "delete batch handle None": lambda x: x["q"].delete_batch([None]),
    "send a lone surrogate": lambda x: x["q"].send("\ud800"),
    "send an attribute with a lone surrogate": lambda x: x["q"].send(
        "m", attributes={"a": {"DataType": "String", "StringValue": "\ud800"}}
    ),
    "publish bytes not UTF-8": lambda x: x["t"].publish(b"\xff"),
    "publish a lone surrogate": lambda x: x["t"].publish("\ud800"),
    "publish a subject with a lone surrogate": lambda x: x["t"].publish("m", subject="\ud800"),
    "publish batch bytes not UTF-8": lambda x: x["t"].publish_batch(
        [{"Id": "a", "Message": "m"}, {"Id": "b", "Message": b"\xff"}]
    ),
    "topic attribute with a lone surrogate": lambda x: x["t"].set_attributes(
        {"DisplayName": "\ud800"}
    ),
    "topic tag with a lone surrogate": lambda x: x["t"].tag({"k": "\ud800"}),
    "topic name with a lone surrogate": lambda x: x["b"].create_topic("\ud800"),
    "delete entries of a str": lambda x: x["q"].delete_entries("handle"),
    "visibility entries of a str": lambda x: x["q"].change_visibility_entries("handle"),
}


def _resources(broker: Any) -> dict[str, Any]:
    q = broker.create_queue("q")
    t = broker.create_topic("t")
    return {
        "b": broker,
        "q": q,
        "f": broker.create_queue("f.fifo", {"FifoQueue": "true"}),
        "t": t,
        "s": t.subscribe(q),
        "ft": broker.create_topic("ft.fifo", {"FifoTopic": "true"}),
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, daemon: Any) -> Iterator[tuple[Any, Any]]:
    embedded = millpond.open(tmp_path_factory.mktemp("embedded"))
    remote = _daemon_broker(daemon)
    try:
        yield _resources(embedded), _resources(remote)
    finally:
        remote.close()
        embedded.close()


def _error_of(call: Any, resources: dict[str, Any]) -> type[Exception] | None:
    try:
        call(resources)
    except Exception as exc:
        return type(exc)
    return None


@pytest.mark.parametrize("case", sorted(_WRONG_CALLS))
def test_same_error_class_as_embedded(both: tuple[Any, Any], case: str) -> None:
    embedded, remote = both
    expected = _error_of(_WRONG_CALLS[case], embedded)
    assert expected is not None and issubclass(expected, errors.MillpondError)
    assert _error_of(_WRONG_CALLS[case], remote) is expected


# -- messages ---------------------------------------------------------------------------------


def test_received_message_is_a_millpond_message(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name)
    attributes = {
        "kind": {"DataType": "String", "StringValue": "order"},
        "n": {"DataType": "Number", "StringValue": "12.5"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    }
    before = int(time.time() * 1000)
    message_id = q.send("héllo".encode(), attributes=attributes)
    (m,) = _drain(q, 1, visibility_timeout=0)
    assert isinstance(m, millpond.Message)
    assert (m.body, m.text, m.message_id, m.receive_count) == (
        "héllo".encode(),
        "héllo",
        message_id,
        1,
    )
    assert m.attributes == attributes
    assert before - 2000 <= m.sent_timestamp <= m.first_receive_timestamp <= time.time() * 1000
    assert (m.group_id, m.deduplication_id, m.dead_letter_source_arn) == (None, None, None)
    (again,) = _drain(q, 1)
    assert again.receive_count == 2 and again.receipt_handle != m.receipt_handle
    assert again.md5_of_message_attributes == m.md5_of_message_attributes
    q.delete(again.receipt_handle)


def test_bytes_body_must_be_utf8(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name)
    with pytest.raises(errors.InvalidMessageContents):
        q.send(b"\xff\xfe")


def test_send_batch_checks_every_entry_before_sending(aws: AwsBroker, name: str) -> None:
    """SQS stores the good entries of a batch and fails the bad one; the embedded contract
    (nothing stored) holds because entries are checked before the request."""
    q = aws.create_queue(name)
    bad_attribute = {"AWS.reserved": {"DataType": "String", "StringValue": "x"}}
    with pytest.raises(errors.InvalidParameterValue):
        q.send_batch(["fine", {"body": "bad", "attributes": bad_attribute}])
    with pytest.raises(errors.InvalidMessageContents):
        q.send_batch(["fine", "bad \x00"])
    with pytest.raises(errors.InvalidParameterValue):  # FIFO queues only
        q.send_batch(["fine", {"body": "bad", "deduplication_id": "d"}])
    assert q.receive(10, wait_seconds=1) == []
    ids = q.send_batch([b"a", "b", {"body": "c", "delay_seconds": 0}])
    assert sorted(m.text for m in _drain(q, 3)) == ["a", "b", "c"]
    assert len(set(ids)) == 3


def test_send_batch_refuses_bodies_and_fifo_groups_before_sending(
    aws: AwsBroker, name: str
) -> None:
    """An empty or missing body, or a FIFO entry without a group id, stores nothing (SQS would
    have stored the other entries)."""
    q = aws.create_queue(name)
    with pytest.raises(errors.MissingParameter):
        q.send_batch(["fine", ""])
    with pytest.raises(errors.InvalidParameterValue):
        q.send_batch(["fine", {"body": None}])
    f = aws.create_queue(name + ".fifo", {"FifoQueue": "true"})
    with pytest.raises(errors.MissingParameter):
        f.send_batch([{"body": "a", "group_id": "g", "deduplication_id": "d"}, {"body": "b"}])
    assert q.receive(10, wait_seconds=1) == [] and f.receive(10, wait_seconds=1) == []


def test_send_batch_failure_tells_what_was_stored(daemon_broker: AwsBroker, name: str) -> None:
    """SQS stores the entries it takes; the raised error says which (moto refuses the whole
    batch instead: daemon only)."""
    q = daemon_broker.create_queue(name, {"MaximumMessageSize": 1024})
    with pytest.raises(errors.MessageTooLong) as caught:
        q.send_batch(["small", "x" * 2000, "also"])
    stored, refused, also = caught.value.batch_results  # type: ignore[attr-defined]
    assert isinstance(refused, errors.MessageTooLong) and refused is caught.value
    got = {m.message_id: m.text for m in _drain(q, 2)}
    assert got == {stored: "small", also: "also"}


def test_delete_batch_failure_tells_what_was_deleted(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name)
    q.send("m")
    (m,) = _drain(q, 1)
    with pytest.raises(errors.ReceiptHandleIsInvalid) as caught:
        q.delete_batch(["garbage", m.receipt_handle])
    assert caught.value.batch_results == [caught.value, None]  # type: ignore[attr-defined]


def test_publish_batch_failure_tells_what_was_published(moto_broker: AwsBroker, name: str) -> None:
    """SNS publishes the entries it takes (the daemon, as embedded, refuses the whole batch)."""
    topic = moto_broker.create_topic(name + ".fifo", {"FifoTopic": "true"})
    entries = [
        {"Id": "a", "Message": "m", "MessageGroupId": "g", "MessageDeduplicationId": "d"},
        {"Id": "b", "Message": "n", "MessageGroupId": "g"},  # no dedup id, no content dedup
    ]
    with pytest.raises(InvalidParameter) as caught:
        topic.publish_batch(entries)
    published, refused = caught.value.batch_results  # type: ignore[attr-defined]
    assert published["Id"] == "a" and published["MessageId"]
    assert refused is caught.value


def test_per_entry_verbs_refuse_a_bad_entry_alone(aws: AwsBroker, name: str) -> None:
    """An entry botocore would refuse fails alone, as embedded, not the whole call."""
    q = aws.create_queue(name)
    q.send_batch(["a", "b"])
    first, second = (m.receipt_handle for m in _drain(q, 2))
    results = q.change_visibility_entries([(first, "x"), (None, 5), (second, 0)])  # type: ignore[list-item]
    assert type(results[0]) is errors.InvalidParameterValue
    assert type(results[1]) is errors.ReceiptHandleIsInvalid
    assert results[2] is None
    results = q.delete_entries([None, first])  # type: ignore[list-item]
    assert type(results[0]) is errors.ReceiptHandleIsInvalid and results[1] is None


def test_per_entry_verbs_past_ten_entries(aws: AwsBroker, name: str) -> None:
    """Any number of entries, as embedded: 10 a request, each error at its entry's index."""
    q = aws.create_queue(name)
    q.send_batch([f"m{i}" for i in range(10)])
    q.send_batch(["m10", "m11"])
    handles = [m.receipt_handle for m in _drain(q, 12)]
    entries: list[Any] = [(handle, 0) for handle in handles]
    entries.insert(11, ("garbage", 0))
    results = q.change_visibility_entries(entries)
    assert [i for i, error in enumerate(results) if error is not None] == [11]
    assert isinstance(results[11], errors.ReceiptHandleIsInvalid)
    handles = [m.receipt_handle for m in _drain(q, 12)]
    results = q.delete_entries([*handles[:10], None, *handles[10:]])  # type: ignore[list-item]
    assert [i for i, error in enumerate(results) if error is not None] == [10]
    assert q.receive(10, wait_seconds=1) == []


def test_per_entry_verbs(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name)
    q.send_batch(["a", "b"])
    got = _drain(q, 2)
    handles = [m.receipt_handle for m in got]
    results = q.change_visibility_entries([(handles[0], 0), ("garbage", 5), "not a pair"])  # type: ignore[list-item]
    assert results[0] is None
    assert isinstance(results[1], errors.ReceiptHandleIsInvalid)
    assert isinstance(results[2], errors.InvalidParameterValue)
    results = q.delete_entries([*handles, "garbage"])
    assert results[:2] == [None, None]
    assert isinstance(results[2], errors.ReceiptHandleIsInvalid)


def test_queue_tags_attributes_and_listing(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name, tags={"team": "a"})
    q.tag({"env": "test"})
    q.untag(["team"])
    assert q.tags() == {"env": "test"}
    q.set_attributes({"DelaySeconds": 5, "ReceiveMessageWaitTimeSeconds": "1"})
    values = q.get_attributes(["DelaySeconds", "QueueArn"])
    assert values == {"DelaySeconds": "5", "QueueArn": q.arn}
    assert q.arn.endswith(f":sqs:us-east-1:{q.url.rsplit('/', 2)[1]}:{name}")
    assert name in aws.list_queues(name[:-1])
    assert aws.queue(name) == q


def test_listings_follow_every_page() -> None:
    """ListQueues (1000 a page), ListDeadLetterSourceQueues, ListTopics and
    ListSubscriptions(ByTopic) (100 a page): every NextToken is followed."""
    from botocore.stub import Stubber

    url = "https://sqs.us-east-1.amazonaws.com/123456789012/"
    arn = "arn:aws:sns:us-east-1:123456789012:"
    broker = AwsBroker("us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(broker._sqs_client) as sqs, Stubber(broker._sns_client) as sns:
        sqs.add_response(
            "list_queues",
            {"QueueUrls": [url + "b", url + "a"], "NextToken": "p2"},
            {"QueueNamePrefix": "x", "MaxResults": 1000},
        )
        sqs.add_response(
            "list_queues",
            {"QueueUrls": [url + "c"]},
            {"QueueNamePrefix": "x", "MaxResults": 1000, "NextToken": "p2"},
        )
        assert broker.list_queues("x") == ["a", "b", "c"]
        sqs.add_response("get_queue_url", {"QueueUrl": url + "dlq"}, {"QueueName": "dlq"})
        page = {"QueueUrl": url + "dlq", "MaxResults": 1000}
        sqs.add_response(
            "list_dead_letter_source_queues", {"queueUrls": [url + "s1"], "NextToken": "n"}, page
        )
        sqs.add_response(
            "list_dead_letter_source_queues",
            {"queueUrls": [url + "s2"]},
            {**page, "NextToken": "n"},
        )
        assert broker.list_dead_letter_source_queues("dlq") == ["s1", "s2"]
        sns.add_response(
            "list_topics", {"Topics": [{"TopicArn": arn + "t1"}], "NextToken": "n"}, {}
        )
        sns.add_response("list_topics", {"Topics": [{"TopicArn": arn + "t2"}]}, {"NextToken": "n"})
        assert broker.list_topics() == ["t1", "t2"]

        def sub(n: int) -> dict[str, str]:
            return {
                "SubscriptionArn": f"{arn}t1:{n}",
                "TopicArn": arn + "t1",
                "Protocol": "sqs",
                "Endpoint": f"arn:aws:sqs:us-east-1:123456789012:q{n}",
                "Owner": "123456789012",
            }

        for operation, params in [
            ("list_subscriptions", {}),
            ("list_subscriptions_by_topic", {"TopicArn": arn + "t1"}),
        ]:
            sns.add_response(operation, {"Subscriptions": [sub(1)], "NextToken": "n"}, params)
            sns.add_response(operation, {"Subscriptions": [sub(2)]}, {**params, "NextToken": "n"})
        assert [s.queue_name for s in broker.list_subscriptions()] == ["q1", "q2"]
        topic = AwsTopic(broker, "t1", arn + "t1")
        assert [s.queue_name for s in topic.list_subscriptions()] == ["q1", "q2"]
        sqs.assert_no_pending_responses()
        sns.assert_no_pending_responses()


def test_a_queue_of_another_account_does_not_become_ours() -> None:
    """Subscribing another account's queue by ARN before anything told the broker its own
    account: topic names must still resolve in our account, not in the queue's."""
    from botocore.stub import ANY, Stubber

    ours, theirs = "arn:aws:sns:us-east-1:111111111111:", "222222222222"
    queue_url = f"https://sqs.us-east-1.amazonaws.com/{theirs}/q"
    queue_arn = f"arn:aws:sqs:us-east-1:{theirs}:q"
    broker = AwsBroker("us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(broker._sqs_client) as sqs, Stubber(broker._sns_client) as sns:
        sqs.add_response(
            "get_queue_url",
            {"QueueUrl": queue_url},
            {"QueueName": "q", "QueueOwnerAWSAccountId": theirs},
        )
        sqs.add_response(
            "get_queue_attributes", {}, {"QueueUrl": queue_url, "AttributeNames": ["Policy"]}
        )
        sqs.add_response("set_queue_attributes", {}, {"QueueUrl": queue_url, "Attributes": ANY})
        sns.add_response(
            "subscribe",
            {"SubscriptionArn": ours + "t:1"},
            {
                "TopicArn": ours + "t",
                "Protocol": "sqs",
                "Endpoint": queue_arn,
                "ReturnSubscriptionArn": True,
            },
        )
        sns.add_response(  # subscribe answers the subscription as SNS describes it
            "get_subscription_attributes",
            {"Attributes": {"SubscriptionArn": ours + "t:1", "TopicArn": ours + "t"}},
            {"SubscriptionArn": ours + "t:1"},
        )
        AwsTopic(broker, "t", ours + "t").subscribe(queue_arn)
        sns.add_response("list_topics", {"Topics": [{"TopicArn": ours + "other"}]}, {})
        sns.add_response("get_topic_attributes", {"Attributes": {}}, {"TopicArn": ours + "other"})
        assert broker.topic("other").arn == ours + "other"
        sqs.assert_no_pending_responses()
        sns.assert_no_pending_responses()


# -- FIFO ---------------------------------------------------------------------------------------


def test_fifo_batch_detail_and_received_ids(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(name + ".fifo", {"FifoQueue": True})
    assert isinstance(q, AwsFifoQueue) and isinstance(aws.queue(name + ".fifo"), AwsFifoQueue)
    sent = q.send_batch_detailed(
        [
            {"body": "one", "group_id": "g", "deduplication_id": "d1", "delay_seconds": 0},
            {"body": "two", "group_id": "g", "deduplication_id": "d2"},
        ]
    )
    assert [len(sequence) for _, sequence in sent] == [20, 20]
    with pytest.raises(errors.InvalidParameterValue):  # FIFO: no per-message delay
        q.send_batch([{"body": "x", "group_id": "g", "deduplication_id": "d3", "delay_seconds": 5}])
    got = _drain(q, 2)
    assert [(m.text, m.group_id, m.deduplication_id) for m in got] == [
        ("one", "g", "d1"),
        ("two", "g", "d2"),
    ]
    assert [m.message_id for m in got] == [message_id for message_id, _ in sent]


def test_fifo_throughput_and_kms_attributes_pass_through(aws: AwsBroker, name: str) -> None:
    q = aws.create_queue(
        name + ".fifo",
        {
            "FifoQueue": True,
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
            "KmsMasterKeyId": "alias/aws/sqs",
            "KmsDataKeyReusePeriodSeconds": 600,
        },
    )
    names = ["DeduplicationScope", "FifoThroughputLimit", "KmsMasterKeyId"]
    assert q.get_attributes([*names, "KmsDataKeyReusePeriodSeconds"]) == {
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
        "KmsMasterKeyId": "alias/aws/sqs",
        "KmsDataKeyReusePeriodSeconds": "600",
    }
    topic = aws.create_topic(name, {"KmsMasterKeyId": "alias/aws/sns"})
    assert topic.get_attributes()["KmsMasterKeyId"] == "alias/aws/sns"


def test_fifo_sequence_numbers_and_attempt_id(daemon_broker: AwsBroker, name: str) -> None:
    """moto draws SequenceNumbers at random and returns none on receive: daemon only."""
    q = daemon_broker.create_queue(
        name + ".fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    sent = q.send_batch_detailed([{"body": f"m{i}", "group_id": "g"} for i in range(3)])
    numbers = [int(sequence) for _, sequence in sent]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    first = q.receive(10, attempt_id="try-1")
    again = q.receive(10, attempt_id="try-1")  # a retried receive gets the same deliveries
    assert [m.receipt_handle for m in again] == [m.receipt_handle for m in first]
    assert [m.sequence_number for m in first] == [sequence for _, sequence in sent]


def test_fifo_receive_retried_after_a_lost_answer_gets_the_messages(daemon: Any, name: str) -> None:
    """The first ReceiveMessage reaches the daemon but its answer is lost: botocore retries,
    and the retry must not find the group in flight (moto ignores attempt ids: daemon only)."""
    from botocore.exceptions import ConnectionClosedError

    lost: list[str] = []

    def lose_first_answer(request: Any, **_: Any) -> None:
        if not lost:
            lost.append(request.url)
            forwarded = urllib.request.Request(
                request.url, data=request.body, headers=dict(request.headers)
            )
            urllib.request.urlopen(forwarded, timeout=10).read()  # delivered, answer dropped
            raise ConnectionClosedError(endpoint_url=request.url)

    with _fifo_with_one_message(daemon, name, "before-send", lose_first_answer) as q:
        got = q.receive(10)
    assert lost and [m.text for m in got] == ["only"]


@contextlib.contextmanager
def _fifo_with_one_message(daemon: Any, name: str, event: str, hook: Any) -> Iterator[Any]:
    """A FIFO queue holding "only" (group g), through a broker whose receives call ``hook``
    on botocore's ``event``."""
    import boto3

    session = boto3.session.Session()
    session.events.register(f"{event}.sqs.ReceiveMessage", hook)
    with _daemon_broker(daemon, session=session) as broker:
        q = broker.create_queue(
            name + ".fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )
        q.send("only", group_id="g")
        yield q


def test_fifo_receive_whose_attempt_id_sqs_refuses_gets_a_new_one(daemon: Any, name: str) -> None:
    """SQS refuses a ReceiveRequestAttemptId whose first use was throttled ("not retryable"):
    the id the broker made up is replaced, not raised to the caller."""
    from botocore.awsrequest import AWSResponse

    ids: list[str] = []

    def refuse_first_id(params: dict[str, Any], **_: Any) -> Any:
        ids.append(json.loads(params["body"])["ReceiveRequestAttemptId"])  # the JSON request
        if len(ids) > 1:
            return None
        error = {
            "Code": "InvalidParameterValue",
            "Message": f"Value {ids[0]} for parameter ReceiveRequestAttemptId is invalid. Reason: "
            "The receiveRequestAttemptId is not valid anymore since the receive call is not "
            "retryable.",
        }
        answer = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse(daemon.url, 400, {}, None), answer

    with _fifo_with_one_message(daemon, name, "before-call", refuse_first_id) as q:
        assert [m.text for m in q.receive(1, wait_seconds=1)] == ["only"]
        with pytest.raises(errors.InvalidParameterValue):  # the caller's own id: its error
            del ids[:]
            q.receive(1, attempt_id="mine")
    assert ids == ["mine"]


def test_long_poll_outlasts_a_short_read_timeout(daemon: Any, name: str) -> None:
    """A read timeout shorter than the wait must not cut the poll off."""
    config = Config(read_timeout=1, retries={"total_max_attempts": 1})
    with _daemon_broker(daemon, config=config) as broker:
        q = broker.create_queue(name)
        assert q.receive(1, wait_seconds=2) == []
        q.send("m")  # the other calls keep the caller's timeout
        assert broker._sqs_client.meta.config.read_timeout == 1


# -- dead-letter queues -------------------------------------------------------------------------


def _dead_lettered(broker: AwsBroker, name: str) -> tuple[Any, Any]:
    """(queue, its dead-letter queue), one message moved there by its second receive."""
    dlq = broker.create_queue(name + "-dlq")
    policy = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1}
    q = broker.create_queue(name, {"RedrivePolicy": json.dumps(policy)})
    q.send("poison")
    assert len(_drain(q, 1, visibility_timeout=0)) == 1
    assert _drain(q, 1, wait=2) == []  # the second receive moved it
    return q, dlq


def test_dead_letter_queue_by_redrive_policy(aws: AwsBroker, name: str) -> None:
    q, dlq = _dead_lettered(aws, name)
    assert aws.list_dead_letter_source_queues(dlq.name) == [name]
    (dead,) = _drain(dlq, 1)
    assert dead.text == "poison"


def test_dead_letter_source_arn(daemon_broker: AwsBroker, name: str) -> None:
    """moto never returns DeadLetterQueueSourceArn: daemon only."""
    q, dlq = _dead_lettered(daemon_broker, name)
    (dead,) = _drain(dlq, 1)
    assert dead.dead_letter_source_arn == q.arn


def test_message_move_task(daemon_broker: AwsBroker, name: str) -> None:
    """moto has no message move tasks: daemon only."""
    q, dlq = _dead_lettered(daemon_broker, name)
    handle = daemon_broker.start_message_move_task(dlq.arn, max_messages_per_second=10)
    assert isinstance(handle, str) and handle
    (back,) = _drain(q, 1)
    assert back.text == "poison"
    (task,) = daemon_broker.list_message_move_tasks(dlq.arn)
    assert task["SourceArn"] == dlq.arn and task["MaxNumberOfMessagesPerSecond"] == 10
    assert task["Status"] in ("RUNNING", "COMPLETED")


# -- topics and the queue policy ----------------------------------------------------------------


def _statements(queue: Any) -> list[dict[str, Any]]:
    policy = queue.get_attributes(["Policy"]).get("Policy")
    return json.loads(policy)["Statement"] if policy else []


def test_subscribe_grants_the_topic_send(aws: AwsBroker, name: str) -> None:
    topic = aws.create_topic(name)
    q = aws.create_queue(name)
    sub = topic.subscribe(q, filter_policy={"kind": ["order"]}, raw_message_delivery=True)
    (statement,) = _statements(q)
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == q.arn
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topic.arn}}
    assert topic.subscribe(q, filter_policy={"kind": ["order"]}).arn == sub.arn
    other = aws.create_topic(name + "-other")
    other.subscribe(q.name)  # by name: found, and granted too
    assert len(_statements(q)) == 2  # subscribing again added nothing for the first topic
    assert sub.queue_name == name and sub.topic_arn == topic.arn and sub.protocol == "sqs"
    attributes = sub.get_attributes()
    assert json.loads(attributes["FilterPolicy"]) == {"kind": ["order"]}
    assert attributes["RawMessageDelivery"] == "true"
    topic.publish("skipped", attributes={"kind": {"DataType": "String", "StringValue": "x"}})
    topic.publish("paid", attributes={"kind": {"DataType": "String", "StringValue": "order"}})
    (m,) = _drain(q, 1)
    assert m.text == "paid"
    assert m.attributes == {"kind": {"DataType": "String", "StringValue": "order"}}
    sub.set_attributes({"FilterPolicy": None, "RawMessageDelivery": False})
    assert not sub.get_attributes().get("FilterPolicy")  # moto keeps it as ""
    sub.unsubscribe()
    sub.unsubscribe()  # twice succeeds, as embedded
    assert [s.arn for s in topic.list_subscriptions()] == []


def test_a_refused_subscribe_leaves_the_queue_policy_as_it_was(aws: AwsBroker, name: str) -> None:
    # The grant is written before SNS is asked; when SNS then refuses the subscription, a
    # statement letting the topic send would be left behind for a subscription that never was.
    topic = aws.create_topic(name)
    bare = aws.create_queue(name)
    with pytest.raises(errors.InvalidFilterPolicy):
        topic.subscribe(bare, filter_policy={"a": "b"})
    assert _statements(bare) == []
    granted = aws.create_queue(name + "-granted")
    aws.create_topic(name + "-other").subscribe(granted)
    before = granted.get_attributes(["Policy"])["Policy"]
    with pytest.raises(errors.InvalidFilterPolicy):
        topic.subscribe(granted, filter_policy={"a": "b"})
    assert granted.get_attributes(["Policy"])["Policy"] == before


def test_topics_subscribing_one_queue_from_threads_keep_every_grant(
    daemon_broker: AwsBroker, name: str
) -> None:
    """Each subscribe reads the queue's Policy and writes it back with its statement: done at
    once from threads, a write must not drop another topic's statement (AWS would then drop
    that topic's deliveries without a word)."""
    q = daemon_broker.create_queue(name)
    topics = [daemon_broker.create_topic(f"{name}-{i}") for i in range(8)]
    _in_threads(lambda topic: topic.subscribe(q), topics)
    granted = {s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in _statements(q)}
    assert granted == {topic.arn for topic in topics}


def test_subscribe_a_queue_that_does_not_exist_yet(
    aws: AwsBroker, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = aws.create_topic(name)
    sub = topic.subscribe(name)  # as embedded: allowed, by the ARN the queue will have
    assert sub.endpoint == topic.arn.replace(":sns:", ":sqs:")
    assert "does not exist yet" in caplog.text
    q = aws.create_queue(name)
    assert _statements(q) == []  # nothing could grant it then ...
    assert topic.subscribe(q).arn == sub.arn  # ... subscribing again does
    assert len(_statements(q)) == 1
    with pytest.raises(InvalidParameter):
        topic.subscribe("not a queue name!")
    with pytest.raises(InvalidParameter):
        aws.delete_topic(None)  # type: ignore[arg-type]


def test_allow_topic_policy_document() -> None:
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:q"
    topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
    text = allow_topic(None, queue_arn, topic_arn)
    assert text is not None
    assert allow_topic(text, queue_arn, topic_arn) is None  # already there
    other = allow_topic(text, queue_arn, topic_arn + "2")
    assert other is not None and len(json.loads(other)["Statement"]) == 2
    open_to_sns = json.dumps(
        {
            "Statement": {
                "Effect": "Allow",
                "Principal": {"Service": ["sns.amazonaws.com"]},
                "Action": ["sqs:*"],
                "Resource": "*",
            }
        }
    )
    assert allow_topic(open_to_sns, queue_arn, topic_arn) is None
    denied = json.dumps({"Statement": [{**json.loads(open_to_sns)["Statement"], "Effect": "Deny"}]})
    assert len(json.loads(allow_topic(denied, queue_arn, topic_arn) or "{}")["Statement"]) == 2


def test_topic_lookup_listing_and_tags(aws: AwsBroker, name: str) -> None:
    topic = aws.create_topic(name, {"DisplayName": "shown"}, tags={"a": "1"})
    fresh = AwsBroker(
        "us-east-1",
        endpoint_url=aws._sqs_client.meta.endpoint_url
        if "amazonaws.com" not in aws._sqs_client.meta.endpoint_url
        else None,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    try:
        assert fresh.topic(name).arn == topic.arn  # account not known yet: found by listing
        assert fresh.arn("sns", name) == topic.arn  # ... and learnt
    finally:
        fresh.close()
    assert aws.topic(topic.arn).name == name
    assert name in aws.list_topics()
    assert topic.get_attributes()["DisplayName"] == "shown"
    topic.set_attributes({"DisplayName": "renamed"})
    assert topic.get_attributes()["DisplayName"] == "renamed"
    topic.tag({"b": "2"})
    topic.untag(["a"])
    assert topic.tags() == {"b": "2"}
    sub = topic.subscribe(aws.create_queue(name))
    assert aws.subscription(sub.arn) == sub
    assert sub in aws.list_subscriptions()
    assert topic.subscription(sub.arn).endpoint == sub.endpoint
    topic.delete()
    with pytest.raises(errors.TopicNotFound):
        topic.publish("gone")


def test_publish_batch_results_in_order(aws: AwsBroker, name: str) -> None:
    topic = aws.create_topic(name)
    q = aws.create_queue(name)
    topic.subscribe(q, raw_message_delivery=True)
    results = topic.publish_batch(
        [{"Id": "b", "Message": "first"}, {"Id": "a", "message": "second", "subject": "s"}]
    )
    assert [r["Id"] for r in results] == ["b", "a"]
    assert all(r["MessageId"] for r in results)
    assert sorted(m.text for m in _drain(q, 2)) == ["first", "second"]


def test_fifo_topic_publish_answers_sequence_number(daemon_broker: AwsBroker, name: str) -> None:
    """moto returns no SequenceNumber for a FIFO publish: daemon only."""
    topic = daemon_broker.create_topic(name + ".fifo", {"FifoTopic": True})
    q = daemon_broker.create_queue(name + ".fifo", {"FifoQueue": "true"})
    topic.subscribe(q)
    answer = topic.publish_message("m", group_id="g", deduplication_id="d")
    assert set(answer) == {"MessageId", "SequenceNumber"}
    (m,) = _drain(q, 1)
    assert json.loads(m.body)["MessageId"] == answer["MessageId"]
    plain = daemon_broker.create_queue(name)  # a FIFO topic takes standard queues too
    topic.subscribe(plain)
    topic.publish("n", group_id="g", deduplication_id="e")
    assert [json.loads(m.body)["Message"] for m in _drain(plain, 1)] == ["n"]


def test_http_subscription_is_pending(daemon_broker: AwsBroker, name: str) -> None:
    """An HTTP/S subscription awaits its confirmation; SNS lists it as PendingConfirmation."""
    topic = daemon_broker.create_topic(name)
    sub = topic.subscribe("http://127.0.0.1:9/hook", protocol="http")
    assert (sub.pending, sub.protocol, sub.endpoint, sub.queue_name) == (
        True,
        "http",
        "http://127.0.0.1:9/hook",
        "",
    )
    assert sub.get_attributes()["PendingConfirmation"] == "true"
    (listed,) = topic.list_subscriptions()
    assert (listed.arn, listed.pending) == ("PendingConfirmation", True)
    with pytest.raises(InvalidParameter):
        topic.confirm_subscription("not-the-token")


def test_publish_trace_header_reaches_the_queue(daemon_broker: AwsBroker, name: str) -> None:
    """The trace header travels as X-Amzn-Trace-Id, which the daemon (as SNS) hands on."""
    topic = daemon_broker.create_topic(name)
    q = daemon_broker.create_queue(name)
    topic.subscribe(q, raw_message_delivery=True)
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    topic.publish("traced", trace_header=trace)
    topic.publish("untraced")  # the header is this thread's for one publish only
    got = {m.text: m.trace_header for m in _drain(q, 2)}
    assert got == {"traced": trace, "untraced": None}


# -- connect() ----------------------------------------------------------------------------------


def test_connect_url_options(daemon: Any, name: str) -> None:
    url = (
        f"sqs://us-east-1?endpoint_url={daemon.url}&aws_access_key_id=k"
        "&aws_secret_access_key=s&account_id=123456789012&verify=false"
    )
    with millpond.connect(url) as broker:
        assert isinstance(broker, AwsBroker) and broker.region == "us-east-1"
        assert broker.arn("sqs", name) == f"arn:aws:sqs:us-east-1:123456789012:{name}"
        assert broker._client_options["verify"] is False  # "false" from the URL: off
        q = broker.create_queue(name)
        assert q.arn == broker.arn("sqs", name)
    with pytest.raises(errors.InvalidParameterValue, match="unknown sqs:// option"):
        millpond.connect(f"sqs://us-east-1?endpoint={daemon.url}")
    with pytest.raises(errors.InvalidParameterValue, match="clock: only a data directory"):
        millpond.connect(f"sqs://us-east-1?endpoint_url={daemon.url}", clock=millpond.ManualClock())
    with pytest.raises(errors.InvalidParameterValue):
        millpond.connect("sqs://")


def test_account_id_from_sts(moto_broker: AwsBroker) -> None:
    """Nothing seen yet: STS tells the account."""
    assert moto_broker.arn("sqs", "q") == "arn:aws:sqs:us-east-1:123456789012:q"


def test_account_id_asked_of_sts_once_by_many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    asked: list[str] = []
    with moto.mock_aws():
        session = boto3.session.Session()
        session.events.register(
            "before-call.sts.GetCallerIdentity", lambda **_: asked.append("sts")
        )
        with millpond.connect("sqs://us-east-1", session=session) as broker:
            arns: list[str] = []
            _in_threads(lambda _: arns.append(broker.arn("sns", "t")), list(range(8)))
    assert arns == ["arn:aws:sns:us-east-1:123456789012:t"] * 8
    assert asked == ["sts"]


def test_threads_share_one_broker(daemon_broker: AwsBroker, name: str) -> None:
    """Sends, publishes (each thread's own trace header) and deletes from several threads
    through one broker: nothing lost, doubled or crossed between threads."""
    topic = daemon_broker.create_topic(name)
    q = daemon_broker.create_queue(name)
    topic.subscribe(q, raw_message_delivery=True)

    def send(worker: int) -> None:
        for i in range(10):
            topic.publish(f"{worker} p{i}", trace_header=f"Root=1-5759e988-{worker:024x}")
            q.send_batch([f"{worker} s{i}", f"{worker} t{i}"])

    _in_threads(send, list(range(6)))
    got = _drain(q, 180, wait=30)
    assert sorted(m.text for m in got) == sorted(
        f"{w} {kind}{i}" for w in range(6) for kind in "pst" for i in range(10)
    )
    for m in got:
        worker = int(m.text.split()[0])
        expected = f"Root=1-5759e988-{worker:024x}" if " p" in m.text else None
        assert m.trace_header == expected
    handles = [m.receipt_handle for m in got]
    _in_threads(q.delete_batch, [handles[i : i + 10] for i in range(0, len(handles), 10)])
    assert q.receive(10, wait_seconds=1) == []


def test_account_id_unknown_is_refused(daemon_broker: AwsBroker) -> None:
    """The daemon serves no STS: arn() says to pass account_id= rather than guess."""
    with pytest.raises(errors.InvalidParameterValue, match="account_id="):
        daemon_broker.arn("sqs", "q")


def test_connect_with_a_session(daemon: Any, name: str) -> None:
    import boto3

    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s")
    with millpond.connect("sqs://us-east-1", endpoint_url=daemon.url, session=session) as broker:
        assert broker.create_queue(name).name == name


def test_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "try:\n    import millpond.aws\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'millpond[aws]'" in out


# == found by a bug hunt of the backend (2026-11-27) ===========================================

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


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (("MessageBody", {"a": {"b": ["x"]}}), ("MessageAttributes", {"a": ["x"]})),
        (("MessageAttributes", {"a": ["x"]}), ("MessageBody", {"a": {"b": ["x"]}})),
    ],
)
def test_filter_policy_and_scope_changed_together(
    aws: AwsBroker, name: str, before: tuple[str, Any], after: tuple[str, Any]
) -> None:
    """Scope and policy changed in one set_attributes, as embedded does it in one step.

    SNS sets one attribute per request and judges a policy against the scope set then: a
    nested policy is refused under MessageAttributes, a flat one taken under either scope
    (AWS-recorded: LocalStack tests/aws/services/sns/test_sns_filter_policy.snapshot.json,
    test_sub_filter_policy_nested_property and test_set_subscription_filter_policy_scope).
    Going from a nested MessageBody policy to a flat MessageAttributes one, the scope was
    sent first and refused because of the old nested policy.
    """
    topic = aws.create_topic(name)
    scope, policy = before
    sub = topic.subscribe(aws.create_queue(name), filter_policy=policy, filter_policy_scope=scope)
    scope, policy = after
    sub.set_attributes({"FilterPolicyScope": scope, "FilterPolicy": policy})
    attributes = sub.get_attributes()
    assert (attributes["FilterPolicyScope"], json.loads(attributes["FilterPolicy"])) == after


# -- publish batches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        [{"Message": "no Id"}],
        [{"Id": "a", "Message": "m"}, {"message": "no id either"}],
        [{"Id": 7, "Message": "an Id that is no string"}],
        [{"Id": "bad id!", "Message": "m"}, {"Id": "b", "Message": ""}],  # ids judged first
    ],
)
def test_publish_batch_entry_ids_refused_as_embedded(
    aws: AwsBroker, name: str, entries: list[dict[str, Any]]
) -> None:
    """An entry without a valid Id raises PublishBatchEntryIdInvalid, as embedded (which checks
    every Id before any message); botocore's own check made it a ValidationError (no Id) or
    an InvalidParameter (an Id of another type)."""
    topic = aws.create_topic(name)
    with pytest.raises(PublishBatchEntryIdInvalid):
        topic.publish_batch(entries)


# -- arguments of the wrong type ----------------------------------------------------------------


def test_wrong_argument_types_raise_millpond_errors(aws: AwsBroker, name: str) -> None:
    """A value where a list belongs raised a bare TypeError (not a MillpondError); embedded
    raises these classes."""
    q = aws.create_queue(name)
    for keys in (None, 5):
        with pytest.raises(errors.InvalidParameterValue):
            q.untag(keys)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidAttributeName):
        q.get_attributes(5)  # type: ignore[arg-type]
    topic = aws.create_topic(name)
    with pytest.raises(InvalidParameter):
        topic.add_permission("l", 5, ["Publish"])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        topic.add_permission("l", ["123456789012"], 5)  # type: ignore[arg-type]


def test_add_permission_refuses_one_account_id_as_a_str(aws: AwsBroker, name: str) -> None:
    """A str of account ids was granted character by character ("1", "2", ...: twelve
    principals that are no accounts); embedded refuses it."""
    topic = aws.create_topic(name)
    policy = topic.get_attributes()["Policy"]
    with pytest.raises(InvalidParameter):
        topic.add_permission("one", "123456789012", ["Publish"])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        topic.add_permission("two", ["123456789012"], "Publish")  # type: ignore[arg-type]
    assert topic.get_attributes()["Policy"] == policy


@pytest.mark.parametrize("handle", [None, 5, b"bytes"])
def test_delete_and_change_visibility_refuse_a_handle_that_is_no_str(
    aws: AwsBroker, name: str, handle: Any
) -> None:
    """As embedded, and as delete_batch already does: ReceiptHandleIsInvalid (botocore's own
    check made it MissingParameter or InvalidParameterValue)."""
    q = aws.create_queue(name)
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        q.delete(handle)
    with pytest.raises(errors.ReceiptHandleIsInvalid):
        q.change_visibility(handle, 10)


@pytest.mark.parametrize("timeout", [None, "10", 1.5, -1, 43_201])
def test_change_visibility_refuses_a_timeout_as_embedded(
    aws: AwsBroker, name: str, timeout: Any
) -> None:
    """InvalidParameterValue, as embedded and change_visibility_entries (None was botocore's
    MissingParameter, which is no InvalidParameterValue; moto took -1 and 43201)."""
    q = aws.create_queue(name)
    q.send("m")
    (m,) = q.receive(1, wait_seconds=1)
    with pytest.raises(errors.InvalidParameterValue):
        q.change_visibility(m.receipt_handle, timeout)


def test_none_sets_a_subscription_attribute_back_to_its_default(aws: AwsBroker, name: str) -> None:
    """None means "the default" to embedded subscribe and set_attributes; it was sent as "",
    which SNS refuses for RawMessageDelivery ("Must be true or false") and FilterPolicyScope,
    and subscribe refused it outright ("attribute value None is not a string")."""
    topic = aws.create_topic(name)
    q = aws.create_queue(name)
    sub = topic.subscribe(q, attributes={"FilterPolicy": None, "RawMessageDelivery": None})
    attributes = sub.get_attributes()
    assert attributes["RawMessageDelivery"] == "false" and not attributes.get("FilterPolicy")
    sub.set_attributes({"RawMessageDelivery": True, "FilterPolicyScope": "MessageBody"})
    sub.set_attributes({"RawMessageDelivery": None, "FilterPolicyScope": None})
    sub.set_attributes({"FilterPolicy": {"a": ["x"]}})
    attributes = sub.get_attributes()
    assert attributes["RawMessageDelivery"] == "false"
    assert attributes.get("FilterPolicyScope", "MessageAttributes") == "MessageAttributes"
    with pytest.raises(errors.InvalidFilterPolicy):  # judged in the default scope again
        sub.set_attributes({"FilterPolicy": {"a": {"b": ["x"]}}})


def test_subscribe_succeeds_when_the_subscription_cannot_be_read_back() -> None:
    """SNS made the subscription; a caller allowed sns:Subscribe but not
    sns:GetSubscriptionAttributes must not see subscribe fail (it stored something)."""
    from botocore.stub import Stubber

    topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:q"
    broker = AwsBroker("us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(broker._sns_client) as sns:
        sns.add_response(
            "subscribe",
            {"SubscriptionArn": topic_arn + ":1"},
            {
                "TopicArn": topic_arn,
                "Protocol": "sqs",
                "Endpoint": queue_arn,
                "ReturnSubscriptionArn": True,
            },
        )
        sns.add_client_error(
            "get_subscription_attributes", "AuthorizationError", "not allowed", 403
        )
        topic = AwsTopic(broker, "t", topic_arn)
        topic._queue_endpoint = lambda queue: (queue, None)  # type: ignore[method-assign]  # no SQS
        sub = topic.subscribe(queue_arn)
        sns.assert_no_pending_responses()
    assert (sub.arn, sub.topic_arn, sub.protocol, sub.endpoint, sub.queue_name) == (
        topic_arn + ":1",
        topic_arn,
        "sqs",
        queue_arn,
        "q",
    )


# -- tags and attributes ------------------------------------------------------------------------


def test_empty_tag_and_attribute_changes_change_nothing(aws: AwsBroker, name: str) -> None:
    """As embedded: no tags to add or remove, no topic attributes to set, is no change (SQS
    and SNS refuse a request with an empty Tags or TagKeys, and set_attributes({}) refused
    itself: "Invalid parameter: Attributes")."""
    q = aws.create_queue(name)
    q.tag({"a": "1"})
    q.tag({})
    q.untag([])
    assert q.tags() == {"a": "1"}
    topic = aws.create_topic(name)
    topic.tag({"a": "1"})
    topic.tag({})
    topic.tag([])
    topic.untag([])
    topic.set_attributes({})
    assert topic.tags() == {"a": "1"}
    aws.delete_queue(name)
    topic.delete()
    with pytest.raises(errors.QueueDoesNotExist):  # as embedded: still no such queue
        q.tag({})
    with pytest.raises(errors.QueueDoesNotExist):
        q.untag([])
    for change in (lambda: topic.tag({}), lambda: topic.untag([])):
        with pytest.raises(errors.TopicNotFound):
            change()
    with pytest.raises(errors.TopicNotFound):
        topic.set_attributes({})


# -- receive ------------------------------------------------------------------------------------


def test_receive_with_a_botocore_that_predates_message_system_attribute_names(
    daemon: Any, name: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyproject allows boto3 >= 1.34.90, but ReceiveMessage's MessageSystemAttributeNames
    came in botocore 1.34.101 ("This release adds MessageSystemAttributeNames to
    ReceiveMessageRequest to replace AttributeNames", boto3 CHANGELOG, 2024-05-08): before,
    botocore refuses it as an unknown parameter, and every receive raised
    InvalidParameterValue. Simulated with today's SQS model minus that member."""
    import gzip

    import boto3
    import botocore.session

    source = os.path.join(os.path.dirname(botocore.__file__), "data", "sqs", "2012-11-05")
    with gzip.open(os.path.join(source, "service-2.json.gz")) as compressed:
        model = json.load(compressed)
    del model["shapes"]["ReceiveMessageRequest"]["members"]["MessageSystemAttributeNames"]
    target = tmp_path / "sqs" / "2012-11-05"
    target.mkdir(parents=True)
    (target / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    session = boto3.session.Session(botocore_session=botocore.session.get_session())
    with millpond.connect(
        "sqs://us-east-1",
        endpoint_url=daemon.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        session=session,
    ) as broker:
        q = broker.create_queue(name)
        q.send("m")
        (m,) = q.receive(1, wait_seconds=1)
        assert (m.text, m.receive_count) == ("m", 1) and m.sent_timestamp > 0
        f = broker.create_queue(name + ".fifo", {"FifoQueue": "true"})
        f.send("m", group_id="g", deduplication_id="d")
        (m,) = f.receive(1, wait_seconds=1)
        assert (m.group_id, m.deduplication_id) == ("g", "d")

"""The sqs:// backend (millpond.aws): behaviour found wrong in a bug hunt, against moto and a
real millpond daemon (as tests/test_aws_backend.py points the backend at them)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("boto3")

import millpond  # noqa: E402
from millpond import errors  # noqa: E402
from millpond.aws import AwsBroker, AwsTopic  # noqa: E402
from millpond.sns_envelope import InvalidParameter, PublishBatchEntryIdInvalid  # noqa: E402

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
        topic._queue_endpoint = lambda queue: queue  # type: ignore[method-assign]  # no SQS here
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

"""Errors: every backend raises the same millpond exception class for the same AWS error.

The class stands for the AWS error code (millpond.errors, and millpond.sns_envelope for SNS's
InvalidParameter); a remote backend maps the code it gets back to it. Each test also checks
that the refused call stored nothing. Sources: reference = /work/shared/reference/sqs-sns.md
(§1.2 actions and their errors, §1.5-1.7, §2.2, §3.4); AWS API pages by name.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from millpond.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidBatchEntryId,
    InvalidFilterPolicy,
    InvalidMessageContents,
    InvalidParameterValue,
    MissingParameter,
    PurgeQueueInProgress,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
    TooManyEntriesInBatchRequest,
    TopicNotFound,
)
from millpond.sns_envelope import InvalidParameter, ParameterValueInvalid
from tests.conformance._helpers import drain, number, string
from tests.conformance._limits import requires

# -- unknown queue ------------------------------------------------------------------------------


def test_unknown_queue(broker: Any, name: str) -> None:
    """GetQueueUrl / DeleteQueue / ListDeadLetterSourceQueues of a queue that does not exist:
    QueueDoesNotExist (AWS.SimpleQueueService.NonExistentQueue, reference §1.7)."""
    with pytest.raises(QueueDoesNotExist):
        broker.queue(name)
    with pytest.raises(QueueDoesNotExist):
        broker.delete_queue(name)
    with pytest.raises(QueueDoesNotExist):
        broker.list_dead_letter_source_queues(name)
    assert broker.list_queues(name) == []


# -- receipt handles ------------------------------------------------------------------------------


def test_malformed_receipt_handle(broker: Any, name: str) -> None:
    """A malformed handle: ReceiptHandleIsInvalid 'The input receipt handle "garbage" is not a
    valid receipt handle.' (AWS-recorded, reference §1.6) for DeleteMessage and
    ChangeMessageVisibility (AWS API_ChangeMessageVisibility lists ReceiptHandleIsInvalid)."""
    q = broker.create_queue(name)
    q.send("kept")
    with pytest.raises(ReceiptHandleIsInvalid):
        q.delete("garbage")
    with pytest.raises(ReceiptHandleIsInvalid):
        q.change_visibility("garbage", 0)
    with pytest.raises(ReceiptHandleIsInvalid):
        q.delete_batch(["garbage"])
    assert len(drain(q, 1)) == 1


@requires("sqs-change-visibility-deleted-error")
def test_change_visibility_of_deleted_message(broker: Any, name: str) -> None:
    """ChangeMessageVisibility after the message was deleted: InvalidParameterValue "...Reason:
    Message does not exist or is not available for visibility timeout change." (AWS-recorded,
    reference §1.6)."""
    q = broker.create_queue(name)
    q.send("gone")
    (m,) = drain(q, 1)
    q.delete(m.receipt_handle)
    with pytest.raises(InvalidParameterValue):
        q.change_visibility(m.receipt_handle, 10)


# -- message size and contents ------------------------------------------------------------------


def test_body_too_large(broker: Any, name: str) -> None:
    """Body plus attributes over MaximumMessageSize: InvalidParameterValue "One or more
    parameters are invalid. Reason: Message must be shorter than N bytes." (AWS-recorded,
    reference §0.1); exactly the limit is accepted."""
    q = broker.create_queue(name, {"MaximumMessageSize": "1024"})
    with pytest.raises(InvalidParameterValue):
        q.send("x" * 1025)
    assert q.receive(10) == []
    q.send("x" * 1024)
    assert len(drain(q, 1)[0].body) == 1024


@requires("sqs-attributes-count-toward-size")
def test_attributes_count_toward_size(broker: Any, name: str) -> None:
    """Attribute names, types and values count toward MaximumMessageSize (reference §1.5: "all
    count toward message size", AWS sqs-message-metadata.html)."""
    q = broker.create_queue(name, {"MaximumMessageSize": "1024"})
    with pytest.raises(InvalidParameterValue):
        q.send("x" * 1020, attributes={"k": string("vvvvv")})  # 1020 + 1 + 6 + 5 bytes
    assert q.receive(10) == []


def test_body_over_one_mebibyte(broker: Any, name: str) -> None:
    """The default and largest MaximumMessageSize is 1 MiB since 2025-08: 1,048,576 bytes go,
    one more does not (reference §0.1: BC-SQS; AWS-recorded error text)."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidParameterValue):
        q.send("y" * 1_048_577)
    q.send("y" * 1_048_576)
    (m,) = drain(q, 1)
    assert len(m.body) == 1_048_576


@requires("sqs-message-validation")
def test_empty_body(broker: Any, name: str) -> None:
    """MessageBody must have at least one character; an empty one is a missing parameter
    (MissingParameter "The request must contain the parameter MessageBody.", reference §1.7)."""
    q = broker.create_queue(name)
    with pytest.raises(MissingParameter):
        q.send("")
    assert q.receive(10) == []


@requires("sqs-message-validation")
def test_body_outside_sqs_character_set(broker: Any, name: str) -> None:
    """Characters outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF:
    InvalidMessageContents (AWS API_SendMessage; reference §1.2)."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidMessageContents):
        q.send("nul \x00 inside")
    assert q.receive(10) == []


@requires("sqs-message-validation")
def test_too_many_message_attributes(broker: Any, name: str) -> None:
    """At most 10 message attributes (reference §1.5; AWS sqs-message-metadata.html):
    InvalidParameterValue."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidParameterValue):
        q.send("eleven", attributes={f"a{i}": string(str(i)) for i in range(11)})
    assert q.receive(10) == []


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param(
            {"empty": string("")}, id="empty-string", marks=requires("sqs-message-validation")
        ),
        pytest.param(
            {"AWS.reserved": string("x")},
            id="reserved-prefix",
            marks=requires("sqs-message-validation"),
        ),
        pytest.param(
            {"n": number("not-a-number")},
            id="bad-number",
            marks=requires("sqs-message-validation"),
        ),
        pytest.param({"n": {"DataType": "Float", "StringValue": "1"}}, id="bad-type"),
    ],
)
def test_invalid_message_attribute(broker: Any, name: str, attributes: Any) -> None:
    """Empty values, names starting with AWS., Numbers that are not numbers and types other
    than String/Number/Binary(.label) are refused with InvalidParameterValue (AWS
    sqs-message-metadata.html; AWS-recorded "Message (user) attribute 'X' must contain a
    non-empty value of type 'String'.", reference §1.5)."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidParameterValue):
        q.send("bad attribute", attributes=attributes)
    assert q.receive(10) == []


# -- values out of range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({"VisibilityTimeout": "43201"}, id="VisibilityTimeout"),
        pytest.param({"DelaySeconds": "901"}, id="DelaySeconds"),
        pytest.param({"MaximumMessageSize": "1023"}, id="MaximumMessageSize"),
        pytest.param({"MessageRetentionPeriod": "59"}, id="MessageRetentionPeriod"),
        pytest.param({"ReceiveMessageWaitTimeSeconds": "21"}, id="ReceiveMessageWaitTime"),
    ],
)
@requires("sqs-attribute-validation")
def test_queue_attribute_out_of_range(broker: Any, name: str, attributes: Any) -> None:
    """Queue attribute values outside their ranges (reference §1.3): InvalidAttributeValue on
    CreateQueue and SetQueueAttributes (AWS API_CreateQueue / API_SetQueueAttributes errors);
    nothing is created or changed."""
    with pytest.raises(InvalidAttributeValue):
        broker.create_queue(name, attributes)
    assert broker.list_queues(name) == []
    q = broker.create_queue(name)
    before = q.get_attributes(list(attributes))
    with pytest.raises(InvalidAttributeValue):
        q.set_attributes(attributes)
    assert q.get_attributes(list(attributes)) == before


@requires("sqs-attribute-validation")
def test_unknown_queue_attribute(broker: Any, name: str) -> None:
    """An attribute name SQS does not know: InvalidAttributeName (AWS API_CreateQueue)."""
    with pytest.raises(InvalidAttributeName):
        broker.create_queue(name, {"NoSuchAttribute": "1"})
    assert broker.list_queues(name) == []


def test_get_unknown_queue_attribute(broker: Any, name: str) -> None:
    """GetQueueAttributes of a name SQS does not know: InvalidAttributeName (AWS
    API_GetQueueAttributes errors)."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidAttributeName):
        q.get_attributes(["NoSuchAttribute"])


@requires("sqs-attribute-validation")
def test_queue_type_cannot_change(broker: Any, name: str) -> None:
    """A standard queue refuses FIFO attributes: "Unknown Attribute
    ContentBasedDeduplication." (InvalidAttributeName); a FIFO queue cannot become standard:
    "...Reason: Modifying queue type is not supported." (InvalidAttributeValue) (AWS-recorded,
    reference §1.2 SetQueueAttributes)."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidAttributeName):
        q.set_attributes({"ContentBasedDeduplication": "true"})
    fifo = broker.create_queue(name + ".fifo", {"FifoQueue": "true"})
    with pytest.raises(InvalidAttributeValue):
        fifo.set_attributes({"FifoQueue": "false"})
    assert fifo.get_attributes(["FifoQueue"]) == {"FifoQueue": "true"}


@requires("sqs-fifo-name-validation")
def test_fifo_queue_name_and_attribute_go_together(broker: Any, name: str) -> None:
    """A FIFO queue's name ends in .fifo and it needs FifoQueue=true; either without the other
    is refused with InvalidParameterValue (AWS API_CreateQueue: "A FIFO queue name must end
    with the .fifo suffix"; reference §1.2 CreateQueue)."""
    with pytest.raises(InvalidParameterValue):
        broker.create_queue(name, {"FifoQueue": "true"})
    with pytest.raises(InvalidParameterValue):
        broker.create_queue(name + ".fifo")
    assert broker.list_queues(name) == []


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda q: q.send("late", delay_seconds=901), id="send-DelaySeconds"),
        pytest.param(lambda q: q.receive(11), id="receive-MaxNumberOfMessages-11"),
        pytest.param(lambda q: q.receive(0), id="receive-MaxNumberOfMessages-0"),
        pytest.param(lambda q: q.receive(1, wait_seconds=21), id="receive-WaitTimeSeconds"),
        pytest.param(
            lambda q: q.receive(1, visibility_timeout=43201), id="receive-VisibilityTimeout"
        ),
    ],
)
def test_request_parameter_out_of_range(broker: Any, name: str, call: Any) -> None:
    """Request parameters outside their ranges (DelaySeconds 0-900, MaxNumberOfMessages 1-10,
    WaitTimeSeconds 0-20, VisibilityTimeout 0-43200; reference §1.2, §1.6: "Value 21 for
    parameter WaitTimeSeconds is invalid..."): InvalidParameterValue."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidParameterValue):
        call(q)
    assert q.receive(10) == []


@requires("sqs-fifo-expired-handle")
def test_fifo_handle_expires_with_its_visibility(broker: Any, name: str) -> None:
    """On a FIFO queue a receipt handle whose visibility timeout ran out no longer deletes:
    InvalidParameterValue "...Reason: The receipt handle has expired." (AWS-recorded
    2025-03, reference §1.6 Receipt handles)."""
    q = broker.create_queue(name + ".fifo", {"FifoQueue": "true"})
    q.send("m", group_id="g", deduplication_id="d")
    (m,) = drain(q, 1, visibility_timeout=0)
    with pytest.raises(InvalidParameterValue):
        q.delete(m.receipt_handle)
    (again,) = drain(q, 1)
    assert (again.message_id, again.receive_count) == (m.message_id, 2)


def test_change_visibility_out_of_range(broker: Any, name: str) -> None:
    """ChangeMessageVisibility beyond 12 h: InvalidParameterValue (reference §1.2)."""
    q = broker.create_queue(name)
    q.send("m")
    (m,) = drain(q, 1)
    with pytest.raises(InvalidParameterValue):
        q.change_visibility(m.receipt_handle, 43201)


def test_visibility_beyond_twelve_hours_from_the_receive(broker: Any, name: str) -> None:
    """A message stays in flight at most 12 h from its receive: "If you attempt to set the
    VisibilityTimeout to a value greater than the maximum time left, Amazon SQS returns an
    error" (AWS API_ChangeMessageVisibility; reference §1.2: "Total VisibilityTimeout for the
    message is beyond the limit [43200 seconds]"): InvalidParameterValue."""
    q = broker.create_queue(name)
    q.send("m")
    (m,) = drain(q, 1)
    time.sleep(1.1)
    with pytest.raises(InvalidParameterValue):
        q.change_visibility(m.receipt_handle, 43200)
    q.change_visibility(m.receipt_handle, 43000)  # within the 12 h


def test_invalid_queue_name(broker: Any, name: str) -> None:
    """Queue names are 1-80 of A-Z a-z 0-9 _ - (reference §1.2 CreateQueue):
    InvalidParameterValue otherwise."""
    with pytest.raises(InvalidParameterValue):
        broker.create_queue(name + " has spaces!")
    with pytest.raises(InvalidParameterValue):
        broker.create_queue("x" * 81)
    assert broker.list_queues(name) == []


@requires("sqs-purge-interval")
def test_purge_twice_within_60_seconds(broker: Any, name: str) -> None:
    """A second purge within 60 s: PurgeQueueInProgress "Only one PurgeQueue operation on <q>
    is allowed every 60 seconds." (AWS-recorded, reference §1.2)."""
    q = broker.create_queue(name)
    q.purge()
    q.send("survives the refused purge")
    with pytest.raises(PurgeQueueInProgress):
        q.purge()
    assert len(drain(q, 1)) == 1


# -- batches --------------------------------------------------------------------------------------


def test_send_batch_shape_errors(broker: Any, name: str) -> None:
    """SendMessageBatch / DeleteMessageBatch with no entries: EmptyBatchRequest; with more than
    10: TooManyEntriesInBatchRequest "Maximum number of entries per request are 10. You have
    sent 11." (reference §1.7); nothing is sent."""
    q = broker.create_queue(name)
    with pytest.raises(EmptyBatchRequest):
        q.send_batch([])
    with pytest.raises(TooManyEntriesInBatchRequest):
        q.send_batch([f"m{i}" for i in range(11)])
    with pytest.raises(EmptyBatchRequest):
        q.delete_batch([])
    assert q.receive(10) == []


def test_send_batch_too_long(broker: Any, name: str) -> None:
    """A batch whose messages add up to more than 1 MiB: BatchRequestTooLong "Batch requests
    cannot be longer than 1048576 bytes." (AWS-recorded, reference §0.1)."""
    q = broker.create_queue(name)
    with pytest.raises(BatchRequestTooLong):
        q.send_batch(["z" * 600_000, "z" * 600_000])
    assert q.receive(10) == []


def test_send_batch_with_a_bad_entry(broker: Any, name: str) -> None:
    """A batch entry SQS refuses (DelaySeconds over 900) is reported: the call raises
    InvalidParameterValue (AWS answers that entry in Failed; API_SendMessageBatch)."""
    q = broker.create_queue(name)
    with pytest.raises(InvalidParameterValue):
        q.send_batch(["fine", {"body": "late", "delay_seconds": 901}])


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        pytest.param(
            [{"Id": "same", "Message": "a"}, {"Id": "same", "Message": "b"}],
            BatchEntryIdsNotDistinct,
            id="ids-not-distinct",
        ),
        pytest.param(
            [], EmptyBatchRequest, id="empty", marks=requires("sns-publish-batch-validation")
        ),
        pytest.param(
            [{"Id": f"e{i}", "Message": "m"} for i in range(11)],
            TooManyEntriesInBatchRequest,
            id="eleven-entries",
        ),
        pytest.param(
            [{"Id": "not valid!", "Message": "a"}],
            InvalidBatchEntryId,
            id="invalid-id",
            marks=requires("sns-publish-batch-validation"),
        ),
    ],
)
def test_publish_batch_errors(broker: Any, name: str, entries: Any, error: Any) -> None:
    """PublishBatch entry Ids: unique (BatchEntryIdsNotDistinct), 1-80 of A-Z a-z 0-9 _ -
    (InvalidBatchEntryId), 1-10 entries (EmptyBatchRequest, TooManyEntriesInBatchRequest)
    (AWS API_PublishBatch errors; reference §2.1); nothing is published."""
    topic = broker.create_topic(name)
    q = broker.create_queue(name)
    topic.subscribe(q, raw_message_delivery=True)
    with pytest.raises(error):
        topic.publish_batch(entries)
    assert q.receive(10) == []


# -- SNS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "scope"),
    [
        pytest.param({"a": {"b": ["x"]}}, None, id="nested-in-attribute-scope"),  # §3.5 #35
        pytest.param({"k": [{"numeric": [">", "ten"]}]}, None, id="numeric-not-a-number"),
        pytest.param({"k": [{"prefix": 5}]}, None, id="prefix-not-a-string"),
        pytest.param({"k": [{"exists": "yes"}]}, None, id="exists-not-boolean"),
        pytest.param({"k": [{"no-such-operator": 1}]}, None, id="unknown-operator"),
        pytest.param({"k": []}, None, id="empty-array"),
        pytest.param({f"k{i}": ["v"] for i in range(6)}, None, id="six-keys"),
        pytest.param({"k": [f"v{i}" for i in range(151)]}, "MessageBody", id="too-complex"),
        pytest.param("{not json", None, id="not-json"),
        # §3.5 #36 (AWS-recorded 2024-05): "Unsupported anything-but pattern: suffix"
        pytest.param({"k": [{"anything-but": {"suffix": "test"}}]}, None, id="anything-but-suffix"),
    ],
)
@requires("sns-filter-policy-validation")
def test_bad_filter_policy(broker: Any, name: str, policy: Any, scope: Any) -> None:
    """Filter policies SNS refuses (reference §3.3 limits, §3.4 AWS validation messages:
    "Filter policy scope MessageAttributes does not support nested filter policy", "Value of
    > must be numeric", "prefix match pattern must be a string", "exists match pattern must be
    either true or false.", "Unrecognized match type", "Empty arrays are not allowed", "can
    not have more than 5 keys", "Filter policy is too complex", "failed to parse JSON"):
    InvalidFilterPolicy (code InvalidParameter); no subscription is made."""
    topic = broker.create_topic(name)
    q = broker.create_queue(name)
    with pytest.raises(InvalidFilterPolicy):
        topic.subscribe(q, filter_policy=policy, filter_policy_scope=scope)
    assert topic.list_subscriptions() == []


def test_bad_filter_policy_on_set_attributes(broker: Any, name: str) -> None:
    """SetSubscriptionAttributes with a bad FilterPolicy: InvalidFilterPolicy, the old policy
    stays (reference §3.4: "Invalid parameter: FilterPolicy: ...")."""
    topic = broker.create_topic(name)
    sub = topic.subscribe(broker.create_queue(name), filter_policy={"k": ["v"]})
    with pytest.raises(InvalidFilterPolicy):
        sub.set_attributes({"FilterPolicy": json.dumps({"k": [{"numeric": ["<", "x"]}]})})
    assert json.loads(sub.get_attributes()["FilterPolicy"]) == {"k": ["v"]}


def test_unknown_topic(broker: Any, name: str) -> None:
    """A topic or subscription that does not exist: NotFound (TopicNotFound; "Topic does not
    exist", reference §2.1), also for a publish to a deleted topic and for the attributes of a
    deleted subscription (AWS API_GetSubscriptionAttributes NotFound)."""
    with pytest.raises(TopicNotFound):
        broker.topic(name)
    topic = broker.create_topic(name)
    sub = topic.subscribe(broker.create_queue(name))
    sub.unsubscribe()
    with pytest.raises(TopicNotFound):
        sub.get_attributes()
    with pytest.raises(TopicNotFound):
        broker.subscription(sub.arn)
    broker.delete_topic(name)
    with pytest.raises(TopicNotFound):
        topic.publish("to nobody")
    with pytest.raises(TopicNotFound):
        topic.subscribe(broker.queue(name))


@requires("sns-publish-validation")
def test_publish_message_rules(broker: Any, name: str) -> None:
    """Publish refuses an empty message ("Invalid parameter: Empty message") and one over
    256 KiB ("Message too long"): InvalidParameter (reference §2.2 Publish, §0.1: SNS is still
    256 KiB); nothing is delivered."""
    topic = broker.create_topic(name)
    q = broker.create_queue(name)
    topic.subscribe(q, raw_message_delivery=True)
    with pytest.raises(InvalidParameter):
        topic.publish("")
    with pytest.raises(InvalidParameter):
        topic.publish("m" * (262_144 + 1))
    assert q.receive(10) == []


@requires("sns-publish-validation")
def test_sns_number_attribute_out_of_range(broker: Any, name: str) -> None:
    """SNS Number attributes lie within -10^9..10^9 (reference §2.4; AWS
    sns-message-attributes.html "Number ... -10^9 to 10^9"): a bigger one is refused with
    SNS's InvalidParameterValue (ParameterValueInvalid); nothing is delivered."""
    topic = broker.create_topic(name)
    q = broker.create_queue(name)
    topic.subscribe(q, raw_message_delivery=True)
    with pytest.raises(ParameterValueInvalid):
        topic.publish("too big", attributes={"n": number("1000000001")})
    assert q.receive(10) == []


@requires("sns-publish-validation")
def test_sns_subject_rules(broker: Any, name: str) -> None:
    """A Subject "must not include line breaks or control characters; and must be less than
    100 characters long" (AWS API_Publish Subject): InvalidParameter."""
    topic = broker.create_topic(name)
    q = broker.create_queue(name)
    topic.subscribe(q)
    with pytest.raises(InvalidParameter):
        topic.publish("m", subject="two\nlines")
    with pytest.raises(InvalidParameter):
        topic.publish("m", subject="s" * 100)
    assert q.receive(10) == []


def test_subscribe_needs_a_queue_arn(broker: Any, name: str) -> None:
    """The endpoint of an sqs subscription is the queue's ARN; a queue URL is refused: "Invalid
    parameter: SQS endpoint ARN" (AWS-recorded, reference §2.2 Subscribe): InvalidParameter."""
    topic = broker.create_topic(name)
    with pytest.raises(InvalidParameter):
        topic.subscribe(f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}")
    assert topic.list_subscriptions() == []


def test_fifo_queue_on_standard_topic(broker: Any, name: str) -> None:
    """ "FIFO SQS Queues can not be subscribed to standard SNS topics" (AWS-recorded,
    reference §2.2 Subscribe): InvalidParameter."""
    topic = broker.create_topic(name)
    q = broker.create_queue(name + ".fifo", {"FifoQueue": "true"})
    with pytest.raises(InvalidParameter):
        topic.subscribe(q)
    assert topic.list_subscriptions() == []


@requires("sns-fifo-group-id-error")
def test_fifo_topic_needs_group_id(broker: Any, name: str) -> None:
    """ "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"
    (reference §2.5 FIFO topics): InvalidParameter."""
    topic = broker.create_topic(
        name + ".fifo", {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )
    with pytest.raises(InvalidParameter):
        topic.publish("no group")

"""What a backend of the conformance suite cannot do, and the hooks that skip those tests there.

A test (or one ``pytest.param``) that needs a feature some backend lacks is marked
``@requires("feature")``. On a backend listed under that feature in :data:`LIMITS` it is
skipped with the reason written there (``-ra`` prints it), never passed; on every other backend
it runs. Only documented limits belong here, each with its source: a backend that is merely
wrong gets a failing test (or a strict xfail naming the bug), not an entry.

``conftest.py`` imports the two hooks below; nothing else in the suite needs to know.

To see whether a limit still holds (after a moto upgrade, say), run with
``MILLPOND_CONFORMANCE_CHECK_LIMITS=1``: the marked tests then run as strict xfails, so one that
passes (XPASS) names a limit to delete.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_MOTO = "moto 5.2.1"  # the version these were read from (site-packages/moto)

# feature -> {backend: why it cannot do it (with a source)}
LIMITS: dict[str, dict[str, str]] = {
    # -- SQS --
    "sqs-created-timestamp-seconds": {
        "moto": f"{_MOTO} returns CreatedTimestamp as float seconds ('1795785629.83'), not "
        "whole epoch seconds (moto/sqs/models.py Queue.__init__: created_timestamp = now)",
    },
    "sqs-dlq-source-arn": {
        "moto": f"{_MOTO} never returns the DeadLetterQueueSourceArn system attribute (absent "
        "from SUPPORTED_SYSTEM_MESSAGE_ATTRIBUTE_NAMES in moto/sqs/responses.py "
        "receive_message)",
    },
    "sqs-fifo-dedup-after-delete": {
        "moto": f"{_MOTO} de-duplicates only against messages still in the queue, so a deleted "
        "message's deduplication id is forgotten (moto/sqs/models.py Queue.add_message)",
    },
    "sqs-fifo-sequence-numbers": {
        "moto": f"{_MOTO} draws SequenceNumber as 20 random digits, and only for messages sent "
        "with an explicit MessageDeduplicationId (moto/sqs/models.py SQSBackend.send_message)",
    },
    "sqs-fifo-long-poll-unblock": {
        "moto": f"{_MOTO} works out the blocked FIFO groups once when a long poll starts, so a "
        "delete that unblocks a group is not seen until the next poll (moto/sqs/models.py "
        "SQSBackend.receive_message: currently_pending_groups)",
    },
    "sqs-fifo-deduplication-scope": {
        "moto": f"{_MOTO} stores DeduplicationScope but de-duplicates across the whole queue "
        "(moto/sqs/models.py Queue.add_message)",
    },
    "sqs-fifo-receive-attempt-id": {
        "moto": f"{_MOTO} ignores ReceiveRequestAttemptId (moto/sqs/responses.py "
        "receive_message never reads it)",
    },
    "sqs-fifo-expired-handle": {
        "moto": f"{_MOTO} deletes through any receipt handle a message ever had, also on FIFO "
        "queues after the visibility ran out (moto/sqs/models.py Queue.delete_message: "
        "had_receipt_handle)",
    },
    "sqs-attributes-count-toward-size": {
        "moto": f"{_MOTO} checks only len(MessageBody) against MaximumMessageSize, not the "
        "message attributes (moto/sqs/models.py SQSBackend._validate_message)",
    },
    "sqs-message-validation": {
        "moto": f"{_MOTO} does not refuse empty bodies, characters outside SQS's set, more "
        "than 10 attributes, empty values, AWS.-prefixed names or non-numeric Numbers "
        "(moto/sqs/utils.py validate_message_attributes checks only the type prefix and "
        "None values; _validate_message only the size)",
    },
    "sqs-attribute-validation": {
        "moto": f"{_MOTO} range-checks no queue attribute but MaximumMessageSize on create and "
        "takes unknown names (moto/sqs/models.py Queue.__init__ / _set_attributes)",
    },
    "sqs-fifo-name-validation": {
        "moto": f"{_MOTO} creates a standard queue with a .fifo name (moto/sqs/models.py "
        "Queue.name setter: r'^[a-zA-Z0-9\\_-]{1,75}(\\.fifo)?$')",
    },
    "sqs-purge-interval": {
        "moto": f"{_MOTO} purges any number of times (moto/sqs/models.py "
        "SQSBackend.purge_queue has no PurgeQueueInProgress)",
    },
    "sqs-change-visibility-deleted-error": {
        "moto": f"{_MOTO} answers a visibility change to a deleted message with "
        "ReceiptHandleIsInvalid, AWS with InvalidParameterValue (moto/sqs/models.py "
        "SQSBackend.change_message_visibility)",
    },
    # -- SNS --
    "sns-envelope-signature-v1-unsubscribe-url": {
        "moto": f"{_MOTO} always signs with SignatureVersion 2 and puts a fixed made-up "
        "subscription ARN in UnsubscribeURL (moto/sns/models.py Subscription."
        "get_post_data: 'we always use SignatureVersion=\"2\"')",
    },
    "sns-raw-binary-attribute": {
        "moto": f"{_MOTO} raises TypeError ('Strings must be encoded before hashing', "
        "moto/sqs/models.py Message.attribute_md5) delivering a Binary attribute raw to SQS",
    },
    "sns-raw-attribute-limit": {
        "moto": f"{_MOTO} delivers raw messages with any number of attributes "
        "(moto/sns/models.py Subscription.publish has no 10-attribute check)",
    },
    "sns-create-topic-conflict": {
        "moto": f"{_MOTO} returns the existing topic whatever attributes CreateTopic gives "
        "(moto/sns/models.py SNSBackend.create_topic)",
    },
    "sns-subscribe-conflict": {
        "moto": f"{_MOTO} returns the existing subscription of an endpoint without comparing "
        "attributes (moto/sns/models.py SNSBackend.subscribe: _find_subscription)",
    },
    "sns-fifo-sequence-numbers": {
        "moto": f"{_MOTO} answers Publish and PublishBatch to a FIFO topic without "
        "SequenceNumber (moto/sns/responses.py publish / publish_batch never set it)",
    },
    "sns-deleted-endpoint": {
        "moto": f"{_MOTO} fails the whole Publish with NonExistentQueue when one subscribed "
        "queue was deleted (moto/sns/models.py Subscription.publish calls sqs send_message "
        "inside the Publish)",
    },
    "sns-fifo-envelope": {
        "moto": f"{_MOTO}'s envelope has no SequenceNumber and keeps the signature fields on "
        "FIFO topics (moto/sns/models.py Subscription.get_post_data)",
    },
    "sns-fifo-content-dedup": {
        "moto": f"{_MOTO} hands no deduplication id to a FIFO queue when the FIFO topic "
        "de-duplicates by content, and the queue refuses the message (moto/sns/models.py "
        "Subscription.publish -> sqs send_message)",
    },
    "sns-fifo-group-id-error": {
        "moto": f"{_MOTO} answers a FIFO publish without MessageGroupId with SQS's "
        "MissingParameter, AWS with InvalidParameter (moto/sns/models.py SNSBackend.publish)",
    },
    "sns-publish-validation": {
        "moto": f"{_MOTO} publishes an empty message, a Number attribute beyond 10^9 and a "
        "Subject with line breaks or of 100 characters, and answers 'Message too long' with "
        "code InvalidParameterValue instead of InvalidParameter (moto/sns/models.py "
        "SNSBackend.publish checks only len(subject) > 100 and the message length)",
    },
    "sns-filter-policy-validation": {
        "moto": f"{_MOTO} makes the subscription before it checks the policy, so a refused "
        "Subscribe leaves it behind (moto/sns/responses.py SNSResponse.subscribe), takes "
        "a non-string prefix, an empty array and anything-but suffix "
        "(moto/sns/models.py SNSBackend._validate_filter_policy), and raises a Python "
        "JSONDecodeError for a policy that is not JSON (set_subscription_attributes: "
        "json.loads)",
    },
    "sns-filter-policy-operators": {
        "moto": f"{_MOTO} knows no cidr operator ('Unrecognized match type cidr'), matches "
        "equals-ignore-case only in body scope, does not match a dotted policy key against a "
        "nested body, and counts $or combinations so that AWS's accepted policy #27 is 'too "
        "complex' (moto/sns/utils.py FilterPolicyMatcher, moto/sns/models.py "
        "_validate_filter_policy)",
    },
    "sns-publish-batch-validation": {
        "moto": f"{_MOTO} does not check the form of PublishBatch entry Ids nor refuse an "
        "empty batch (moto/sns/models.py SNSBackend.publish_batch checks only more than 10 "
        "entries and duplicate Ids)",
    },
}

BACKENDS = ("embedded", "native", "daemon-boto3", "moto")


def requires(*features: str) -> pytest.MarkDecorator:
    """Mark a test as needing ``features``; a backend that lacks one skips it with the reason."""
    unknown = [feature for feature in features if feature not in LIMITS]
    if unknown:  # a typo would otherwise run the test everywhere, silently
        raise ValueError(f"requires(): unknown feature(s) {unknown}; add them to LIMITS")
    return pytest.mark.requires(*features)


def _check_limits() -> None:
    for feature, backends in LIMITS.items():
        for backend, reason in backends.items():
            if backend not in BACKENDS or not reason:
                raise ValueError(f"LIMITS[{feature!r}]: bad backend {backend!r} or empty reason")


_check_limits()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(feature, ...): skip on the conformance backends LIMITS lists as lacking it",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    check = bool(os.environ.get("MILLPOND_CONFORMANCE_CHECK_LIMITS"))
    for item in items:
        callspec: Any = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if backend is None:
            continue
        for mark in item.iter_markers("requires"):
            for feature in mark.args:
                reason = LIMITS[feature].get(backend)
                if reason is None:
                    continue
                reason = f"{backend}: {feature}: {reason}"
                if check:
                    item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
                else:
                    item.add_marker(pytest.mark.skip(reason=reason))

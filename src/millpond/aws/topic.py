"""AwsTopic: the Topic API over one Amazon SNS topic.

Subscribing an SQS queue also grants the topic ``sqs:SendMessage`` in the queue's Policy
(:mod:`millpond.aws.policy`) when the queue exists and its policy does not allow it yet: without
that statement AWS drops every delivery to the queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from millpond.aws.errors import AwsServiceError, raise_first_failure
from millpond.aws.messages import wire_attributes
from millpond.aws.policy import allow_topic
from millpond.aws.queue import AwsQueue
from millpond.aws.subscription import AwsSubscription
from millpond.errors import (
    InvalidAttributeValue,
    InvalidInputError,
    QueueDoesNotExist,
    TopicNotFound,
)
from millpond.fan_out import check_trace_header, entry_arguments
from millpond.publishing import PublishFromPublishMessage
from millpond.sns_envelope import (
    InvalidParameter,
    check_attributes,
    check_batch_ids,
    check_message,
    check_subject,
)
from millpond.topic import _QUEUE_NAME
from millpond.topic_attributes import text_value

if TYPE_CHECKING:
    from millpond.aws.broker import AwsBroker

log = logging.getLogger("millpond")


def _checked_text(message: Any, subject: Any, attributes: Any, structure: Any) -> Any:
    """The message as text, after the embedded checks of what SNS judges without the topic's
    state (message, structure, subject, attributes): the embedded classes, and no text
    botocore cannot encode (a lone surrogate fails its query serialiser with a
    UnicodeEncodeError)."""
    text = check_message(message, structure)[0]
    check_subject(subject)
    check_attributes(attributes)
    return text


def _member_list(values: Any, parameter: str) -> list[str]:
    """A list parameter of strings, refused as embedded refuses it when it is no list or
    tuple of strings (``list()`` would take a str character by character)."""
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise InvalidParameter(f"Invalid parameter: {parameter}")
    return list(values)


def wire_tags(tags: Any) -> Any:
    """Tags as SNS takes them, ``[{"Key", "Value"}]``, from that or ``{key: value}``."""
    if isinstance(tags, Mapping):
        return [{"Key": key, "Value": value} for key, value in tags.items()]
    return tags


class AwsTopic(PublishFromPublishMessage):
    """One SNS topic; get it from ``broker.create_topic`` or ``broker.topic``.

    Attributes:
        name, arn: the topic's.
        fifo: whether it is a FIFO topic (name ending in .fifo).
    """

    def __init__(self, broker: AwsBroker, name: str, arn: str) -> None:
        self._broker = broker
        self.name = name
        self.arn = arn
        self.fifo = name.endswith(".fifo")

    def __repr__(self) -> str:
        return f"AwsTopic({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AwsTopic) and other.arn == self.arn

    def __hash__(self) -> int:
        return hash(self.arn)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return self._broker._call("sns", operation, TopicArn=self.arn, **params)

    def delete(self) -> None:
        """Delete the topic and its subscriptions (same as ``broker.delete_topic``)."""
        self._call("delete_topic")

    # -- subscriptions --------------------------------------------------------------------------

    def subscribe(
        self,
        queue: AwsQueue | str,
        filter_policy: str | Mapping[str, Any] | None = None,
        filter_policy_scope: str | None = None,
        raw_message_delivery: bool | str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        protocol: str = "sqs",
    ) -> AwsSubscription:
        """Subscribe a queue (protocol "sqs") or another SNS endpoint (as
        :meth:`millpond.Topic.subscribe`).

        Args:
            queue: an AwsQueue, a queue name or a queue ARN; with another protocol, the
                endpoint (an http(s) URL, ...). An existing queue's Policy is extended to let
                this topic send to it. A queue that does not exist yet is subscribed by the
                ARN its name would have, without that permission (a warning is logged): create
                the queue first, or subscribe again once it exists.
            filter_policy, filter_policy_scope, raw_message_delivery, attributes: as embedded.

        Subscribing the same endpoint again returns the existing subscription if every given
        attribute matches (SNS's rule).
        """
        if attributes is not None and not isinstance(attributes, Mapping):
            raise InvalidParameter("Invalid parameter: Attributes")
        given = {  # None: the default, as embedded (a new subscription has it anyway)
            name: text_value(value)
            for name, value in (attributes or {}).items()
            if value is not None
        }
        for name, value in (
            ("FilterPolicy", filter_policy),
            ("FilterPolicyScope", filter_policy_scope),
            ("RawMessageDelivery", raw_message_delivery),
        ):
            if value is not None:
                given[name] = text_value(value)
        revoke: Callable[[], None] | None = None
        if protocol == "sqs":
            endpoint, revoke = self._queue_endpoint(queue)
        else:
            endpoint = queue
        try:
            answer = self._call(
                "subscribe",
                Protocol=protocol,
                Endpoint=endpoint,
                Attributes=given or None,
                ReturnSubscriptionArn=True,
            )
        except BaseException:
            if revoke is not None:  # granted for a subscription SNS refused
                revoke()
            raise
        arn: str = answer["SubscriptionArn"]
        try:
            # as SNS describes it: its Owner, and whether it awaits confirmation (an HTTP/S
            # endpoint; a queue of another account)
            return self._broker.subscription(arn)
        except AwsServiceError:
            # not allowed to read it back (AuthorizationError): it exists all the same
            return AwsSubscription(self._broker, arn, self.arn, protocol, endpoint)

    def _queue_endpoint(self, queue: AwsQueue | str) -> tuple[Any, Callable[[], None] | None]:
        """The queue's ARN for Subscribe, after granting this topic sqs:SendMessage on it, and
        what takes that grant back (None: nothing was granted)."""
        broker = self._broker
        if isinstance(queue, AwsQueue):
            target = queue
        elif isinstance(queue, str) and queue.startswith("arn:"):
            parts = queue.split(":")
            if len(parts) != 6:
                return queue, None  # SNS refuses it
            try:
                url = broker._call(
                    "sqs", "get_queue_url", QueueName=parts[5], QueueOwnerAWSAccountId=parts[4]
                )["QueueUrl"]
            except QueueDoesNotExist:
                return self._not_yet(queue), None
            target = AwsQueue(broker, parts[5], url)
        elif isinstance(queue, str):
            try:
                target = broker.queue(queue)
            except InvalidInputError:
                return queue, None  # not a queue name: SNS refuses it as an endpoint
            except QueueDoesNotExist:
                if not _QUEUE_NAME.fullmatch(queue):  # no ARN to make of it (embedded's text)
                    raise InvalidParameter("Invalid parameter: SQS endpoint ARN") from None
                # the ARN it will have: in this topic's partition and account
                _, partition, _, _, account, _ = self.arn.split(":")
                return self._not_yet(f"arn:{partition}:sqs:{broker.region}:{account}:{queue}"), None
        else:
            return queue, None  # SNS refuses it
        return target.arn, self._grant(target)

    def _not_yet(self, queue_arn: str) -> str:
        log.warning(
            "subscribing %s to %s, which does not exist yet: its Policy could not be set to "
            "let the topic send (subscribe again once the queue exists)",
            queue_arn,
            self.arn,
        )
        return queue_arn

    def _grant(self, queue: AwsQueue) -> Callable[[], None] | None:
        """Let this topic send to ``queue`` (its Policy), unless the policy allows it already;
        returns what puts the Policy back as it was (None: it allowed it already).

        Serialised in this broker (see AwsBroker._policy_lock); another process changing the
        same queue's Policy at the same moment can still drop one of the two statements.
        """
        with self._broker._policy_lock:
            current = queue.get_attributes(["Policy"]).get("Policy")
            try:
                policy = allow_topic(current, queue.arn, self.arn)
            except ValueError as exc:
                raise InvalidAttributeValue(
                    f"cannot let topic {self.arn} send to queue {queue.name}: {exc}"
                ) from None
            if policy is None:
                return None
            queue.set_attributes({"Policy": policy})

        def revoke() -> None:
            with self._broker._policy_lock:  # unless it changed since (another grant)
                now = queue.get_attributes(["Policy"]).get("Policy")
                if now and json.loads(now) == json.loads(policy):  # as stored, maybe respaced
                    queue.set_attributes({"Policy": current or ""})

        return revoke

    def confirm_subscription(
        self, token: str, authenticate_on_unsubscribe: bool | str = False
    ) -> AwsSubscription:
        """Confirm a pending HTTP/S subscription with the Token its endpoint was sent."""
        answer = self._call(
            "confirm_subscription",
            Token=token,
            AuthenticateOnUnsubscribe=text_value(authenticate_on_unsubscribe),
        )
        return self._broker.subscription(answer["SubscriptionArn"])

    def subscription(self, arn: str) -> AwsSubscription:
        """One subscription of this topic by its ARN; raises TopicNotFound."""
        sub = self._broker.subscription(arn)
        if sub.topic_arn != self.arn:
            raise TopicNotFound("Subscription does not exist")
        return sub

    def list_subscriptions(self) -> list[AwsSubscription]:
        """This topic's subscriptions (SNS ListSubscriptionsByTopic); raises TopicNotFound."""
        entries = self._broker._pages(
            "sns", "list_subscriptions_by_topic", "Subscriptions", TopicArn=self.arn
        )
        return [AwsSubscription.from_listing(self._broker, entry) for entry in entries]

    # -- publish --------------------------------------------------------------------------------

    def publish_message(
        self,
        message: str | bytes,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
        trace_header: str | None = None,
    ) -> dict[str, str]:
        """:meth:`publish`, answering as SNS Publish: ``{"MessageId"}``, plus
        "SequenceNumber" on FIFO topics."""
        with self._broker._trace_header(check_trace_header(trace_header)):
            answer = self._call(
                "publish",
                Message=_checked_text(message, subject, attributes, message_structure),
                Subject=subject,
                MessageAttributes=wire_attributes(attributes),
                MessageGroupId=group_id,
                MessageDeduplicationId=deduplication_id,
                MessageStructure=message_structure,
            )
        result = {"MessageId": answer["MessageId"]}
        if answer.get("SequenceNumber") is not None:
            result["SequenceNumber"] = answer["SequenceNumber"]
        return result

    def publish_batch(
        self, entries: Sequence[Mapping[str, Any]], *, trace_header: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish up to 10 messages (SNS PublishBatch; entries as
        :meth:`millpond.Topic.publish_batch`).

        Returns ``{"Id", "MessageId"}`` (plus "SequenceNumber" on FIFO topics) per entry, in
        order. Raises the error of the first entry SNS refused; unlike the embedded broker,
        SNS has published the others: the error's ``batch_results`` holds the result of each
        published entry and the error of each refused one.
        """
        if not isinstance(entries, Sequence) or any(not isinstance(e, Mapping) for e in entries):
            raise InvalidParameter("Invalid parameter: PublishBatchRequestEntries")
        # every Id first, as embedded: an entry without one would be botocore's to refuse,
        # with another class
        check_batch_ids([entry.get("Id", entry.get("id")) for entry in entries])
        wire = []
        for entry in entries:
            message, subject, attributes, group, dedup, structure = entry_arguments(entry)
            fields = {
                "Id": entry.get("Id", entry.get("id")),
                "Message": _checked_text(message, subject, attributes, structure),
                "Subject": subject,
                "MessageAttributes": wire_attributes(attributes),
                "MessageGroupId": group,
                "MessageDeduplicationId": dedup,
                "MessageStructure": structure,
            }
            wire.append({key: value for key, value in fields.items() if value is not None})
        with self._broker._trace_header(check_trace_header(trace_header)):
            answer = self._call("publish_batch", PublishBatchRequestEntries=wire)
        order = {entry["Id"]: slot for slot, entry in enumerate(wire) if "Id" in entry}
        results: list[Any] = [{"Id": entry.get("Id")} for entry in wire]
        for ok in answer.get("Successful", []):
            result = results[order[ok["Id"]]]
            result["MessageId"] = ok["MessageId"]
            if ok.get("SequenceNumber") is not None:
                result["SequenceNumber"] = ok["SequenceNumber"]
        raise_first_failure("sns", answer.get("Failed") or [], results, order)
        return results

    # -- attributes, permissions, tags ------------------------------------------------------------

    def get_attributes(self) -> dict[str, str]:
        """Topic attributes by their SNS names (SNS GetTopicAttributes)."""
        return dict(self._call("get_topic_attributes").get("Attributes", {}))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Change topic attributes (SNS SetTopicAttributes, one request per attribute: a later
        one's error leaves the earlier ones set)."""
        if not isinstance(attributes, Mapping):
            raise InvalidParameter("Invalid parameter: Attributes")
        if not attributes:
            self.get_attributes()  # nothing to set, as embedded; a missing topic still raises
        for name, value in attributes.items():
            self._call("set_topic_attributes", AttributeName=name, AttributeValue=text_value(value))

    def add_permission(
        self, label: str, account_ids: Sequence[str], actions: Sequence[str]
    ) -> None:
        """SNS AddPermission: statement ``label`` allowing ``actions`` to the accounts."""
        self._call(
            "add_permission",
            Label=label,
            AWSAccountId=_member_list(account_ids, "AWSAccountId"),
            ActionName=_member_list(actions, "ActionName"),
        )

    def remove_permission(self, label: str) -> None:
        """SNS RemovePermission: drop statement ``label``."""
        self._call("remove_permission", Label=label)

    def _resource_call(self, operation: str, **params: Any) -> dict[str, Any]:
        # the tagging operations name the topic ResourceArn, not TopicArn
        return self._broker._call("sns", operation, ResourceArn=self.arn, **params)

    def tags(self) -> dict[str, str]:
        """The topic's tags (SNS ListTagsForResource); raises TopicNotFound."""
        answer = self._resource_call("list_tags_for_resource")
        return {tag["Key"]: tag["Value"] for tag in answer.get("Tags", [])}

    def tag(self, tags: Mapping[str, str] | Sequence[Mapping[str, str]]) -> None:
        """Add or change tags (SNS TagResource)."""
        wire = wire_tags(tags)
        if wire == []:
            # nothing to add, as embedded (SNS refuses an empty Tags); the read still
            # raises for a missing topic
            self.tags()
            return
        self._resource_call("tag_resource", Tags=wire)

    def untag(self, keys: Sequence[str]) -> None:
        """Remove tags by key (SNS UntagResource)."""
        if isinstance(keys, (list, tuple)) and not keys:
            # nothing to remove, as embedded (SNS refuses an empty TagKeys); the read still
            # raises for a missing topic
            self.tags()
            return
        self._resource_call("untag_resource", TagKeys=[keys] if isinstance(keys, str) else keys)

"""AwsSubscription: the Subscription API over one Amazon SNS subscription."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from millpond.errors import TopicNotFound
from millpond.sns_envelope import InvalidParameter
from millpond.topic_attributes import text_value

if TYPE_CHECKING:
    from millpond.aws.broker import AwsBroker

PENDING = "PendingConfirmation"  # what SNS lists instead of the ARN of an unconfirmed one

# None (embedded: back to the default) as SetSubscriptionAttributes says it: SNS takes "" to
# remove a FilterPolicy, but refuses it for these two, whose defaults it names
_DEFAULT_VALUES = {"RawMessageDelivery": "false", "FilterPolicyScope": "MessageAttributes"}


class AwsSubscription:
    """One topic subscription; from ``AwsTopic.subscribe``, ``broker.subscription`` or the
    lists.

    Attributes (as :class:`millpond.Subscription`):
        arn, topic_arn, topic_name, protocol, endpoint, queue_name ("" unless protocol "sqs"),
        owner, pending (as of when this handle was made; a pending one listed by SNS has
        ``arn`` "PendingConfirmation").
    """

    def __init__(
        self,
        broker: AwsBroker,
        arn: str,
        topic_arn: str,
        protocol: str,
        endpoint: str,
        owner: str = "",
        pending: bool = False,
    ) -> None:
        self._broker = broker
        self.arn = arn
        self.topic_arn = topic_arn
        self.topic_name = topic_arn.rsplit(":", 1)[-1]
        self.protocol = protocol
        self.endpoint = endpoint
        self.queue_name = endpoint.rsplit(":", 1)[-1] if protocol == "sqs" else ""
        self.owner = owner
        self.pending = pending

    @classmethod
    def from_attributes(cls, broker: AwsBroker, attributes: Mapping[str, str]) -> AwsSubscription:
        """From GetSubscriptionAttributes' answer."""
        return cls(
            broker,
            attributes["SubscriptionArn"],
            attributes["TopicArn"],
            attributes.get("Protocol", "sqs"),
            attributes.get("Endpoint", ""),
            attributes.get("Owner", ""),
            attributes.get("PendingConfirmation") == "true",
        )

    @classmethod
    def from_listing(cls, broker: AwsBroker, entry: Mapping[str, str]) -> AwsSubscription:
        """From an entry of ListSubscriptions(ByTopic)."""
        return cls(
            broker,
            entry["SubscriptionArn"],
            entry["TopicArn"],
            entry.get("Protocol", "sqs"),
            entry.get("Endpoint", ""),
            entry.get("Owner", ""),
            entry["SubscriptionArn"] == PENDING,
        )

    def __repr__(self) -> str:
        target = self.queue_name if self.protocol == "sqs" else self.endpoint
        return f"AwsSubscription({self.arn!r} -> {target!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AwsSubscription) and other.arn == self.arn

    def __hash__(self) -> int:
        return hash(self.arn)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return self._broker._call("sns", operation, SubscriptionArn=self.arn, **params)

    def get_attributes(self) -> dict[str, str]:
        """SNS GetSubscriptionAttributes; raises TopicNotFound after unsubscribe."""
        return dict(self._call("get_subscription_attributes").get("Attributes", {}))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """SNS SetSubscriptionAttributes: FilterPolicy (JSON text or a dict; "" or None removes
        it), FilterPolicyScope, RawMessageDelivery, RedrivePolicy, DeliveryPolicy,
        SubscriptionRoleArn.

        None sets an attribute back to its default. SNS sets one attribute per request, so
        unlike the embedded broker a later attribute's error leaves the earlier ones set. The
        order keeps each step valid when the scope and the policy change together (see
        _in_sns_order).
        """
        if not isinstance(attributes, Mapping):
            raise InvalidParameter("Invalid parameter: Attributes")
        for name in _in_sns_order(attributes):
            value = attributes[name]
            text = _DEFAULT_VALUES.get(name, "") if value is None else text_value(value)
            self._call("set_subscription_attributes", AttributeName=name, AttributeValue=text)

    def unsubscribe(self) -> None:
        """Stop delivering to the endpoint (SNS Unsubscribe); unsubscribing twice succeeds."""
        try:
            self._call("unsubscribe")
        except TopicNotFound:
            pass  # gone already (some endpoints say so; SNS itself answers success)


def _in_sns_order(attributes: Mapping[str, Any]) -> list[str]:
    """The attribute names in the order to set them one by one.

    SNS judges a FilterPolicy against the scope set at that moment: MessageBody takes every
    policy, MessageAttributes only flat ones. So a change to MessageBody goes before the
    policy (a nested one is then allowed), a change to MessageAttributes after it (the old
    nested policy is gone by then).
    """
    if attributes.get("FilterPolicyScope") == "MessageBody":
        return sorted(attributes, key=lambda name: name != "FilterPolicyScope")
    return sorted(attributes, key=lambda name: name == "FilterPolicyScope")

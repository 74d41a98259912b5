"""The client's queues, topics and subscriptions: the embedded objects' methods, run remotely.

Each method sends one request naming its object (a queue or topic by name, a subscription by
ARN) and answers as the embedded method does: same arguments, return shapes and exceptions.
Objects compare equal when they name the same queue, topic or subscription.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from millpond.errors import MillpondError
from millpond.message import Message
from millpond.native import errors, frames
from millpond.publishing import PublishFromPublishMessage

if TYPE_CHECKING:
    from millpond.native.client import Client


def ext_hook(client: Any, kinds: tuple[type, type, type, type]) -> Callable[[int, bytes], Any]:
    """msgpack's ``ext_hook`` for ``client``'s answers: millpond's objects (see frames) as
    Messages, errors, and ``kinds`` (queue, FIFO queue, topic and subscription classes)."""
    queue, fifo_queue, topic, subscription = kinds

    def decode(code: int, data: bytes) -> Any:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if code == frames.MESSAGE:
            return Message(*fields)
        if code == frames.QUEUE:
            name, arn, fifo = fields
            return (fifo_queue if fifo else queue)(client, name, arn)
        if code == frames.TOPIC:
            return topic(client, *fields)
        if code == frames.SUBSCRIPTION:
            return subscription(client, *fields)
        if code == frames.ERROR_VALUE:
            return errors.decode(fields)
        return msgpack.ExtType(code, data)

    return decode


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that were given (None is every one's default): shorter frames."""
    return {key: value for key, value in kwargs.items() if value is not None}


def _listed(values: Any) -> Any:
    """An iterable the embedded method takes (a generator, a dict's keys) as a list; anything
    else as it is, for the daemon to accept or refuse as the embedded broker would."""
    if isinstance(values, (str, bytes, list, tuple, Mapping)) or not isinstance(values, Iterable):
        return values
    return list(values)


class Named:
    """What a queue or topic proxy is, sync or async: its client, name and ARN. Equal to a
    proxy of the same class naming the same queue or topic."""

    def __init__(self, client: Any, name: str, arn: str) -> None:
        self._client = client
        self.name = name
        self.arn = arn

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.arn == self.arn

    def __hash__(self) -> int:
        return hash(self.arn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SubscriptionFields:
    """What a subscription proxy is, sync or async: the embedded Subscription's attributes
    (``pending`` as of when this object was made). Equal to one of the same ARN."""

    def __init__(
        self,
        client: Any,
        arn: str,
        topic_name: str,
        queue_name: str,
        endpoint: str,
        protocol: str,
        pending: bool,
        owner: str,
    ) -> None:
        self._client = client
        self.arn = arn
        self.topic_name = topic_name
        self.topic_arn = arn.rsplit(":", 1)[0]
        self.queue_name = queue_name
        self.endpoint = endpoint
        self.protocol = protocol
        self.pending = pending
        self.owner = owner

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.arn == self.arn

    def __hash__(self) -> int:
        return hash(self.arn)

    def __repr__(self) -> str:
        target = self.queue_name if self.protocol == "sqs" else self.endpoint
        return f"{type(self).__name__}({self.arn!r} -> {target!r})"


class _Remote(Named):
    _kind = ""
    _client: Client

    def _call(
        self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        return self._client._call(f"{self._kind}.{method}", self.name, args, kwargs)


class RemoteQueue(_Remote):
    """A queue of the daemon, with the methods of :class:`millpond.Queue`."""

    _kind = "queue"

    def send(
        self,
        body: bytes | str,
        *,
        delay_seconds: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send one message; returns its message id once the daemon has stored it."""
        kwargs = _given(
            delay_seconds=delay_seconds,
            attributes=attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
        )
        return self._call("send", (body,), kwargs)  # type: ignore[no-any-return]

    def send_batch(self, entries: Sequence[Any]) -> list[str]:
        return self._call("send_batch", (entries,))  # type: ignore[no-any-return]

    def receive(
        self,
        max_messages: int = 1,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: int | None = None,
        attempt_id: str | None = None,
    ) -> list[Message]:
        """As :meth:`millpond.Queue.receive`; a long poll waits in the daemon, not here."""
        kwargs = _given(
            visibility_timeout=visibility_timeout, wait_seconds=wait_seconds, attempt_id=attempt_id
        )
        return self._call("receive", (max_messages,), kwargs)  # type: ignore[no-any-return]

    def delete(self, receipt_handle: str) -> None:
        self._call("delete", (receipt_handle,))

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        self._call("delete_batch", (receipt_handles,))

    def change_visibility(self, receipt_handle: str, visibility_timeout: int) -> None:
        self._call("change_visibility", (receipt_handle, visibility_timeout))

    def delete_entries(self, receipt_handles: Sequence[str]) -> list[MillpondError | None]:
        return self._call("delete_entries", (receipt_handles,))  # type: ignore[no-any-return]

    def change_visibility_entries(
        self, entries: Sequence[tuple[str, int]]
    ) -> list[MillpondError | None]:
        return self._call("change_visibility_entries", (entries,))  # type: ignore[no-any-return]

    def purge(self) -> None:
        self._call("purge")

    def get_attributes(self, names: Iterable[str] | None = None) -> dict[str, str]:
        return self._call("get_attributes", (_listed(names),))  # type: ignore[no-any-return]

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._call("set_attributes", (attributes,))

    def tags(self) -> dict[str, str]:
        return self._call("tags")  # type: ignore[no-any-return]

    def tag(self, tags: Mapping[str, str]) -> None:
        self._call("tag", (tags,))

    def untag(self, keys: Iterable[str]) -> None:
        self._call("untag", (_listed(keys),))


class RemoteFifoQueue(RemoteQueue):
    """A FIFO queue of the daemon, with the methods of :class:`millpond.fifo_queue.FifoQueue`."""

    def send_batch_detailed(self, entries: Sequence[Any]) -> list[tuple[str, str]]:
        """As send_batch, returning (message id, sequence number) per entry."""
        return [(pair[0], pair[1]) for pair in self._call("send_batch_detailed", (entries,))]


class RemoteTopic(PublishFromPublishMessage, _Remote):
    """A topic of the daemon, with the methods of :class:`millpond.Topic`."""

    _kind = "topic"

    def __init__(self, client: Client, name: str, arn: str, fifo: bool) -> None:
        super().__init__(client, name, arn)
        self.fifo = fifo

    def delete(self) -> None:
        self._call("delete")

    def subscribe(
        self,
        queue: RemoteQueue | str,
        filter_policy: str | Mapping[str, Any] | None = None,
        filter_policy_scope: str | None = None,
        raw_message_delivery: bool | str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        protocol: str = "sqs",
        service_url: str | None = None,
    ) -> RemoteSubscription:
        endpoint = queue.name if isinstance(queue, RemoteQueue) else queue
        return self._call(  # type: ignore[no-any-return]
            "subscribe",
            (endpoint, filter_policy, filter_policy_scope, raw_message_delivery),
            {"attributes": attributes, "protocol": protocol, "service_url": service_url},
        )

    def confirm_subscription(
        self, token: str, authenticate_on_unsubscribe: bool | str = False
    ) -> RemoteSubscription:
        return self._call("confirm_subscription", (token, authenticate_on_unsubscribe))  # type: ignore[no-any-return]

    def subscription(self, arn: str) -> RemoteSubscription:
        return self._call("subscription", (arn,))  # type: ignore[no-any-return]

    def list_subscriptions(self) -> list[RemoteSubscription]:
        return self._call("list_subscriptions")  # type: ignore[no-any-return]

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
        kwargs = _given(
            subject=subject,
            attributes=attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
            message_structure=message_structure,
            trace_header=trace_header,
        )
        return self._call("publish_message", (message,), kwargs)  # type: ignore[no-any-return]

    def publish_batch(
        self, entries: Sequence[Mapping[str, Any]], *, trace_header: str | None = None
    ) -> list[dict[str, Any]]:
        return self._call("publish_batch", (entries,), _given(trace_header=trace_header))  # type: ignore[no-any-return]

    def get_attributes(self) -> dict[str, str]:
        return self._call("get_attributes")  # type: ignore[no-any-return]

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._call("set_attributes", (attributes,))

    def add_permission(
        self, label: str, account_ids: Sequence[str], actions: Sequence[str]
    ) -> None:
        self._call("add_permission", (label, account_ids, actions))

    def remove_permission(self, label: str) -> None:
        self._call("remove_permission", (label,))

    def tags(self) -> dict[str, str]:
        return self._call("tags")  # type: ignore[no-any-return]

    def tag(self, tags: Mapping[str, str] | Sequence[Mapping[str, str]]) -> None:
        self._call("tag", (tags,))

    def untag(self, keys: Sequence[str]) -> None:
        self._call("untag", (_listed(keys),))


class RemoteSubscription(SubscriptionFields):
    """A subscription of the daemon, with the attributes and methods of
    :class:`millpond.Subscription` (``pending`` as of when this object was made)."""

    _client: Client

    def _call(self, method: str, args: Sequence[Any] = ()) -> Any:
        return self._client._call(f"subscription.{method}", self.arn, args)

    @property
    def undelivered(self) -> int:
        """Messages the daemon could not deliver to the endpoint nor its dead-letter queue."""
        return self._call("undelivered")  # type: ignore[no-any-return]

    def get_attributes(self) -> dict[str, str]:
        return self._call("get_attributes")  # type: ignore[no-any-return]

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._call("set_attributes", (attributes,))

    def unsubscribe(self) -> None:
        self._call("unsubscribe")

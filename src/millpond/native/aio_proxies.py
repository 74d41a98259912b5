"""The asyncio client's queues, topics and subscriptions: the methods of
:mod:`millpond.native.proxies` (and so of the embedded objects) as coroutines.

Attributes are as there; ``undelivered`` is awaited (``await sub.undelivered``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from millpond.errors import MillpondError
from millpond.message import Message
from millpond.native.proxies import Named, SubscriptionFields, _given, _listed

if TYPE_CHECKING:
    from millpond.native.aio import AsyncClient


class _AsyncRemote(Named):
    _kind = ""
    _client: AsyncClient

    async def _call(
        self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        return await self._client._call(f"{self._kind}.{method}", self.name, args, kwargs)


class AsyncRemoteQueue(_AsyncRemote):
    """A queue of the daemon, with the methods of :class:`millpond.Queue` as coroutines."""

    _kind = "queue"

    async def send(
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
        return await self._call("send", (body,), kwargs)  # type: ignore[no-any-return]

    async def send_batch(self, entries: Sequence[Any]) -> list[str]:
        return await self._call("send_batch", (entries,))  # type: ignore[no-any-return]

    async def receive(
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
        return await self._call("receive", (max_messages,), kwargs)  # type: ignore[no-any-return]

    async def delete(self, receipt_handle: str) -> None:
        await self._call("delete", (receipt_handle,))

    async def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        await self._call("delete_batch", (receipt_handles,))

    async def change_visibility(self, receipt_handle: str, visibility_timeout: int) -> None:
        await self._call("change_visibility", (receipt_handle, visibility_timeout))

    async def delete_entries(self, receipt_handles: Sequence[str]) -> list[MillpondError | None]:
        return await self._call("delete_entries", (receipt_handles,))  # type: ignore[no-any-return]

    async def change_visibility_entries(
        self, entries: Sequence[tuple[str, int]]
    ) -> list[MillpondError | None]:
        return await self._call("change_visibility_entries", (entries,))  # type: ignore[no-any-return]

    async def purge(self) -> None:
        await self._call("purge")

    async def get_attributes(self, names: Iterable[str] | None = None) -> dict[str, str]:
        return await self._call("get_attributes", (_listed(names),))  # type: ignore[no-any-return]

    async def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        await self._call("set_attributes", (attributes,))

    async def tags(self) -> dict[str, str]:
        return await self._call("tags")  # type: ignore[no-any-return]

    async def tag(self, tags: Mapping[str, str]) -> None:
        await self._call("tag", (tags,))

    async def untag(self, keys: Iterable[str]) -> None:
        await self._call("untag", (_listed(keys),))


class AsyncRemoteFifoQueue(AsyncRemoteQueue):
    """A FIFO queue of the daemon, with the methods of :class:`millpond.fifo_queue.FifoQueue`."""

    async def send_batch_detailed(self, entries: Sequence[Any]) -> list[tuple[str, str]]:
        """As send_batch, returning (message id, sequence number) per entry."""
        return [(pair[0], pair[1]) for pair in await self._call("send_batch_detailed", (entries,))]


class AsyncRemoteTopic(_AsyncRemote):
    """A topic of the daemon, with the methods of :class:`millpond.Topic` as coroutines."""

    _kind = "topic"

    def __init__(self, client: AsyncClient, name: str, arn: str, fifo: bool) -> None:
        super().__init__(client, name, arn)
        self.fifo = fifo

    async def delete(self) -> None:
        await self._call("delete")

    async def subscribe(
        self,
        queue: AsyncRemoteQueue | str,
        filter_policy: str | Mapping[str, Any] | None = None,
        filter_policy_scope: str | None = None,
        raw_message_delivery: bool | str | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        protocol: str = "sqs",
        service_url: str | None = None,
    ) -> AsyncRemoteSubscription:
        endpoint = queue.name if isinstance(queue, AsyncRemoteQueue) else queue
        return await self._call(  # type: ignore[no-any-return]
            "subscribe",
            (endpoint, filter_policy, filter_policy_scope, raw_message_delivery),
            {"attributes": attributes, "protocol": protocol, "service_url": service_url},
        )

    async def confirm_subscription(
        self, token: str, authenticate_on_unsubscribe: bool | str = False
    ) -> AsyncRemoteSubscription:
        return await self._call("confirm_subscription", (token, authenticate_on_unsubscribe))  # type: ignore[no-any-return]

    async def subscription(self, arn: str) -> AsyncRemoteSubscription:
        return await self._call("subscription", (arn,))  # type: ignore[no-any-return]

    async def list_subscriptions(self) -> list[AsyncRemoteSubscription]:
        return await self._call("list_subscriptions")  # type: ignore[no-any-return]

    async def publish(
        self,
        message: str | bytes,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
        trace_header: str | None = None,
    ) -> str:
        result = await self.publish_message(
            message,
            subject=subject,
            attributes=attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
            message_structure=message_structure,
            trace_header=trace_header,
        )
        return result["MessageId"]

    async def publish_message(
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
        return await self._call("publish_message", (message,), kwargs)  # type: ignore[no-any-return]

    async def publish_batch(
        self, entries: Sequence[Mapping[str, Any]], *, trace_header: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._call("publish_batch", (entries,), _given(trace_header=trace_header))  # type: ignore[no-any-return]

    async def get_attributes(self) -> dict[str, str]:
        return await self._call("get_attributes")  # type: ignore[no-any-return]

    async def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        await self._call("set_attributes", (attributes,))

    async def add_permission(
        self, label: str, account_ids: Sequence[str], actions: Sequence[str]
    ) -> None:
        await self._call("add_permission", (label, account_ids, actions))

    async def remove_permission(self, label: str) -> None:
        await self._call("remove_permission", (label,))

    async def tags(self) -> dict[str, str]:
        return await self._call("tags")  # type: ignore[no-any-return]

    async def tag(self, tags: Mapping[str, str] | Sequence[Mapping[str, str]]) -> None:
        await self._call("tag", (tags,))

    async def untag(self, keys: Sequence[str]) -> None:
        await self._call("untag", (_listed(keys),))


class AsyncRemoteSubscription(SubscriptionFields):
    """A subscription of the daemon, with the attributes and methods of
    :class:`millpond.Subscription` (``pending`` as of when this object was made)."""

    _client: AsyncClient

    async def _call(self, method: str, args: Sequence[Any] = ()) -> Any:
        return await self._client._call(f"subscription.{method}", self.arn, args)

    @property
    def undelivered(self) -> Awaitable[int]:
        """Messages the daemon could not deliver to the endpoint nor its dead-letter queue."""
        return self._call("undelivered")  # await it: a property cannot be a coroutine

    async def get_attributes(self) -> dict[str, str]:
        return await self._call("get_attributes")  # type: ignore[no-any-return]

    async def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        await self._call("set_attributes", (attributes,))

    async def unsubscribe(self) -> None:
        await self._call("unsubscribe")

"""The operations the native protocol serves: an explicit whitelist, by name.

Each operation names the object it acts on (the broker, a queue by name, a topic by name or
ARN, a subscription by ARN) and the embedded method it runs, with the caller's arguments, so
that it answers exactly as the embedded broker does. The method name comes from this table,
never from the request.

Where the work runs, as in the HTTP handlers (:mod:`millpond.server.sqs`): sends, receives and
single deletes run on the event loop and join the storage's group commit through
``Context.write`` (no thread per request; a long poll waits on the loop); every other method
runs on the context's thread pool, where its writes meet the same group commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from millpond.broker import Broker
from millpond.errors import TopicNotFound
from millpond.fifo_queue import FifoQueue
from millpond.message import Message
from millpond.queue import Queue
from millpond.server.context import Context
from millpond.server.sqs import long_poll


class Session:
    """One connection's view of the daemon: the context and the broker of its region, and
    where its long polls wait for messages (see long_poll)."""

    def __init__(
        self,
        ctx: Context,
        broker: Broker,
        parked: Callable[[], AbstractAsyncContextManager[None]],
    ) -> None:
        self.ctx = ctx
        self.broker = broker
        self.parked = parked


Handler = Callable[[Session, Any, list[Any], dict[str, Any]], Awaitable[Any]]


def _resolve(broker: Broker, kind: str, target: Any) -> Any:
    """The object an operation acts on (raises the embedded broker's errors)."""
    if kind == "queue":
        return broker.queue(target)
    if kind == "topic":
        return broker.topic(target)
    if kind == "subscription":
        return broker.subscription(target)
    return broker


def _on_pool(kind: str, method: str) -> Handler:
    """An operation that runs the embedded ``method`` on the thread pool."""

    def invoke(broker: Broker, target: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        try:
            resolved = _resolve(broker, kind, target)
        except TopicNotFound:
            if (kind, method) in _IDEMPOTENT:
                return None  # the embedded object would find nothing to delete, and succeed
            raise
        return getattr(resolved, method)(*args, **kwargs)

    async def run(session: Session, target: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return await session.ctx.call(invoke, session.broker, target, args, kwargs)

    return run


# -- on the loop: the hot verbs ------------------------------------------------------------------


async def _send(
    session: Session,
    queue: Queue,
    body: bytes | str,
    *,
    delay_seconds: int | None = None,
    attributes: Mapping[str, Any] | None = None,
    group_id: str | None = None,
    deduplication_id: str | None = None,
) -> str:
    """Queue.send, committed through the loop's group commit."""
    ctx = session.ctx
    if isinstance(queue, FifoQueue):
        prepared = queue._prepare_fifo(body, delay_seconds, attributes, group_id, deduplication_id)
        sent: list[tuple[str, str]] = await ctx.drive(queue, queue._send_fifo_steps([prepared]))
        return sent[0][0]
    data, blob, delay_ms = queue._prepare(
        body, delay_seconds, attributes, group_id, deduplication_id
    )
    # with the other sends to this queue before the next commit (server/send_batches.py)
    return queue._message_id(await ctx.send(queue, data, blob, delay_ms))


async def _receive(
    session: Session,
    queue: Queue,
    max_messages: int = 1,
    *,
    visibility_timeout: int | None = None,
    wait_seconds: int | None = None,
    attempt_id: str | None = None,
) -> list[Message]:
    """Queue.receive, its long poll waiting on the loop (the checks are Queue.receive's)."""
    visibility_ms, wait_s = queue._receive_arguments(
        max_messages, visibility_timeout, wait_seconds, attempt_id
    )
    return await long_poll(
        session.ctx, queue, max_messages, visibility_ms, wait_s, attempt_id, session.parked
    )


async def _delete(session: Session, queue: Queue, receipt_handle: str) -> None:
    """Queue.delete (a batch of one: its one error is the call's)."""
    (error,) = await session.ctx.drive(queue, queue._delete_steps([receipt_handle]))
    if error is not None:
        raise error


def _on_loop(verb: Callable[..., Awaitable[Any]]) -> Handler:
    async def run(session: Session, target: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        queue = session.broker.queue(target)  # cached: a dict look-up, as the HTTP handlers do
        return await verb(session, queue, *args, **kwargs)

    return run


# -- the whitelist -------------------------------------------------------------------------------

_BROKER = (
    "create_queue",
    "queue",
    "delete_queue",
    "list_queues",
    "list_dead_letter_source_queues",
    "start_message_move_task",
    "list_message_move_tasks",
    "cancel_message_move_task",
    "create_topic",
    "topic",
    "delete_topic",
    "list_topics",
    "subscription",
    "list_subscriptions",
)
_QUEUE = (
    "send_batch",
    "send_batch_detailed",  # FifoQueue only: a standard queue answers as Python would
    "delete_batch",
    "change_visibility",
    "delete_entries",
    "change_visibility_entries",
    "purge",
    "get_attributes",
    "set_attributes",
    "tags",
    "tag",
    "untag",
)
_TOPIC = (
    "delete",
    "subscribe",
    "confirm_subscription",
    "subscription",
    "list_subscriptions",
    "publish",
    "publish_message",
    "publish_batch",
    "get_attributes",
    "set_attributes",
    "add_permission",
    "remove_permission",
    "tags",
    "tag",
    "untag",
)
_SUBSCRIPTION = ("get_attributes", "set_attributes", "unsubscribe")
# Deleting a topic or subscription that is gone succeeds, as on the embedded objects (which
# need no look-up first: here the proxy's name is looked up, and finds nothing).
_IDEMPOTENT = frozenset((("topic", "delete"), ("subscription", "unsubscribe")))


def _undelivered(broker: Broker, arn: Any) -> int:
    return broker._topics.undelivered[arn] if isinstance(arn, str) else 0


async def _subscription_undelivered(
    session: Session, target: Any, args: list[Any], kwargs: dict[str, Any]
) -> int:
    """Subscription.undelivered: the daemon's count (a property, so no arguments)."""
    if args or kwargs:
        raise TypeError("undelivered takes no arguments")
    return _undelivered(session.broker, target)


OPERATIONS: dict[str, Handler] = {
    **{name: _on_pool("broker", name) for name in _BROKER},
    **{f"queue.{name}": _on_pool("queue", name) for name in _QUEUE},
    **{f"topic.{name}": _on_pool("topic", name) for name in _TOPIC},
    **{f"subscription.{name}": _on_pool("subscription", name) for name in _SUBSCRIPTION},
    "queue.send": _on_loop(_send),
    "queue.receive": _on_loop(_receive),
    "queue.delete": _on_loop(_delete),
    "subscription.undelivered": _subscription_undelivered,
}

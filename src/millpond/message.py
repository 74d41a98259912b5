"""Message: what a receive returns, and the stored form of a message's metadata."""

from __future__ import annotations

from typing import Any

import msgpack

from millpond.message_attributes import md5_of_body, md5_of_message_attributes

_packer = msgpack.Packer()  # reused: Packer.pack is ~3x cheaper than packb


def pack_metadata(
    attributes: dict[str, Any] | None,
    group_id: str | None = None,
    deduplication_id: str | None = None,
    trace_header: str | None = None,
    sender_id: str | None = None,
) -> bytes:
    """The stored ``attrs`` section of a record: empty when the message has no metadata.

    A msgpack map with only the keys that are set: ``a`` message attributes (boto3 shape),
    ``g`` MessageGroupId, ``d`` MessageDeduplicationId, ``t`` the AWSTraceHeader system attribute,
    ``s`` the SenderId (the access key a daemon client sent it with).
    One Packer is shared: ``Packer.pack`` is a single C call that resets its buffer, so the GIL
    makes that safe.
    """
    metadata: dict[str, Any] = {}
    if attributes:
        metadata["a"] = attributes
    if group_id is not None:
        metadata["g"] = group_id
    if deduplication_id is not None:
        metadata["d"] = deduplication_id
    if trace_header is not None:
        metadata["t"] = trace_header
    if sender_id is not None:
        metadata["s"] = sender_id
    return _packer.pack(metadata) if metadata else b""


def unpack_metadata(blob: bytes) -> dict[str, Any]:
    return msgpack.unpackb(blob) if blob else {}


class Message:
    """A received message.

    Attributes:
        body: the body as sent, in bytes (``text`` decodes it as UTF-8).
        message_id: the id the send returned.
        receipt_handle: pass it to delete() or change_visibility(); each receive gives a new one.
        receive_count: how many times the message was received, this receive included.
        sent_timestamp: when it was sent, in ms since the epoch.
        first_receive_timestamp: when it was first received, in ms since the epoch.
        dead_letter_source_arn: on a dead-letter queue, the ARN of the queue the message was
            moved from (SQS's DeadLetterQueueSourceArn); None otherwise.
        sequence_number: FIFO queues: the message's SequenceNumber (increasing per queue).
    """

    __slots__ = (
        "body",
        "message_id",
        "receipt_handle",
        "receive_count",
        "sent_timestamp",
        "first_receive_timestamp",
        "dead_letter_source_arn",
        "sequence_number",
        "_metadata_blob",
        "_metadata",
    )

    def __init__(
        self,
        body: bytes,
        message_id: str,
        receipt_handle: str,
        receive_count: int,
        sent_timestamp: int,
        first_receive_timestamp: int,
        metadata_blob: bytes,
        dead_letter_source_arn: str | None = None,
        sequence_number: str | None = None,
    ) -> None:
        # received_messages() below sets the same slots without this call: keep both in step
        self.body = body
        self.message_id = message_id
        self.receipt_handle = receipt_handle
        self.receive_count = receive_count
        self.sent_timestamp = sent_timestamp
        self.first_receive_timestamp = first_receive_timestamp
        self.dead_letter_source_arn = dead_letter_source_arn
        self.sequence_number = sequence_number
        self._metadata_blob = metadata_blob
        self._metadata: dict[str, Any] | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        # Decoded on first use: most consumers never look at attributes.
        if self._metadata is None:
            self._metadata = unpack_metadata(self._metadata_blob)
        return self._metadata

    @property
    def attributes(self) -> dict[str, dict[str, Any]]:
        """Message attributes in the shape they were sent (boto3's)."""
        attributes: dict[str, dict[str, Any]] = self.metadata.get("a", {})
        return attributes

    @property
    def group_id(self) -> str | None:
        """MessageGroupId (FIFO queues, and standard "fair" queues when one was given)."""
        return self.metadata.get("g")

    @property
    def deduplication_id(self) -> str | None:
        """MessageDeduplicationId of a FIFO message (given, or the body's SHA-256)."""
        return self.metadata.get("d")

    @property
    def trace_header(self) -> str | None:
        """The AWSTraceHeader system attribute sent with the message (X-Ray), if any."""
        return self.metadata.get("t")

    @property
    def sender_id(self) -> str | None:
        """The access key the message was sent with through the daemon (SQS's SenderId)."""
        return self.metadata.get("s")

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    @property
    def md5_of_body(self) -> str:
        return md5_of_body(self.body)

    @property
    def md5_of_message_attributes(self) -> str | None:
        return md5_of_message_attributes(self.attributes)

    def __repr__(self) -> str:
        return (
            f"Message(message_id={self.message_id!r}, receive_count={self.receive_count}, "
            f"body={self.body[:40]!r}{'...' if len(self.body) > 40 else ''})"
        )


_new_message = object.__new__


def received_messages(rows: list[Any], source_arn: Any) -> list[Message]:
    """The Messages of a core receive's rows (see ``receive`` in _core_py.py), in one pass.

    The same fields as ``Message(...)`` sets, without a call per message: CPython 3.11 calls a
    class's ``__init__`` through a generic slot that packs its arguments into a tuple, which
    made building 10 messages ~40% slower than this loop. ``source_arn(queue_id)`` names the
    queue a dead-lettered message came from.
    """
    messages = []
    for _, _, count, sent_ms, first_ms, blob, body, message_id, source, handle in rows:
        message = _new_message(Message)
        message.body = body
        message.message_id = message_id
        message.receipt_handle = handle
        message.receive_count = count
        message.sent_timestamp = sent_ms
        message.first_receive_timestamp = first_ms
        message.dead_letter_source_arn = source_arn(source) if source else None
        message.sequence_number = None
        message._metadata_blob = blob
        message._metadata = None
        messages.append(message)
    return messages

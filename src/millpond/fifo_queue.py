"""FifoQueue: Amazon SQS FIFO-queue semantics over the FIFO storage (``_core_fifo``).

Strict order within a message group; while a message of a group is in flight no later message
of that group is delivered, other groups keep flowing; a receive returns as many messages of
one group as it can, in order, then goes on to the next group. De-duplication by
MessageDeduplicationId (or the body's SHA-256 with ContentBasedDeduplication) for 5 minutes,
remembered after the message is deleted, scoped per queue or per group (DeduplicationScope).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from millpond import _core_fifo as fifo
from millpond import queue_attributes
from millpond.errors import (
    BatchRequestTooLong,
    InvalidParameterValue,
    MillpondError,
    MissingParameter,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
)
from millpond.message import Message, pack_metadata
from millpond.message_attributes import message_attributes_size
from millpond.queue import (
    MAX_HIDDEN_MS,
    Queue,
    Write,
    batch_entry_fields,
    check_batch,
    check_int,
    check_message_id_field,
    unless_queue_gone,
)

DEDUP_WINDOW_MS = 5 * 60 * 1000
ATTEMPT_WINDOW_MS = 5 * 60 * 1000  # how long a ReceiveRequestAttemptId is remembered


def sequence_number(seq: int) -> str:
    """SQS-style SequenceNumber: a 20-digit decimal that grows with every message."""
    return f"{seq:020d}"


def _duplicates(results: list[tuple[int, bool]]) -> int:
    """How many of a send's (seq, duplicate) results were dropped as duplicates: CloudWatch
    counts them in NumberOfDeduplicatedSentMessages, not in NumberOfMessagesSent."""
    return sum(1 for _, duplicate in results if duplicate)


class FifoQueue(Queue):
    """A queue whose name ends in .fifo and whose FifoQueue attribute is "true"."""

    def _apply(self, attributes: dict[str, str]) -> None:
        super()._apply(attributes)
        self._content_dedup = attributes.get("ContentBasedDeduplication") == "true"
        self._group_scope = attributes.get("DeduplicationScope") == "messageGroup"

    def _messages_change(self, changes: dict[str, str]) -> Any:
        """A new DelaySeconds re-times the messages still waiting out the old one: "For FIFO
        queues, the per-queue delay setting is retroactive" (SQS Developer Guide, delay queues).
        A new MessageRetentionPeriod: a message in flight that it lets expire is gone then, and
        must not hold its group until its visibility timeout ends (_core_fifo.realarm)."""
        steps = []
        if "DelaySeconds" in changes:
            delay_ms = int(changes["DelaySeconds"]) * 1000
            steps.append(functools.partial(fifo.redelay, delay_ms=delay_ms))
        if "MessageRetentionPeriod" in changes:
            retention_ms = int(changes["MessageRetentionPeriod"]) * 1000
            steps.append(functools.partial(fifo.realarm, retention_ms=retention_ms))
        if not steps:
            return None

        def change(txn: Any, tables: Any, queue_id: int, now_ms: int) -> None:
            for step in steps:
                step(txn, tables, queue_id, now_ms)

        return change

    # -- send ------------------------------------------------------------------------------------

    def _check_ids_given(self, group_id: str | None, deduplication_id: str | None) -> None:
        """A FIFO message needs a group id, and a deduplication id unless the queue derives it
        from the body (SQS fails a whole SendMessageBatch for one entry without them)."""
        if group_id is None:
            raise MissingParameter("The request must contain the parameter MessageGroupId.")
        if deduplication_id is None and not self._content_dedup:
            raise InvalidParameterValue(
                "The queue should either have ContentBasedDeduplication enabled or "
                "MessageDeduplicationId provided explicitly"
            )

    def _prepare_fifo(
        self,
        body: object,
        delay_seconds: int | None,
        attributes: Mapping[str, Any] | None,
        group_id: str | None,
        deduplication_id: str | None,
        trace_header: str | None = None,
        sender_id: str | None = None,
    ) -> tuple[bytes, bytes, bytes, bytes, int]:
        """(body, metadata blob, group key, dedup key, delay ms) of one FIFO message."""
        self._broker._refresh_definitions()  # another process's attribute changes, read below
        data, attrs = self._check_message(body, attributes)
        self._check_ids_given(group_id, deduplication_id)
        group_id = check_message_id_field("MessageGroupId", group_id)
        if deduplication_id is None:
            deduplication_id = hashlib.sha256(data).hexdigest()
        else:
            check_message_id_field("MessageDeduplicationId", deduplication_id)
        if delay_seconds:
            raise InvalidParameterValue(
                f"Value {delay_seconds} for parameter DelaySeconds is invalid. Reason: The "
                "request include parameter that is not valid for this queue type."
            )
        g = fifo.group_key(group_id)
        scope = b"G" + g if self._group_scope else b"Q"
        dedup_key = scope + deduplication_id.encode()
        blob = pack_metadata(attrs, group_id, deduplication_id, trace_header, sender_id)
        return data, blob, g, dedup_key, self._delay_ms

    def send(
        self,
        body: bytes | str,
        *,
        delay_seconds: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send one message to its group; returns its message id (the original's if a duplicate).

        Args:
            group_id: MessageGroupId, required.
            deduplication_id: MessageDeduplicationId; required unless the queue has
                ContentBasedDeduplication, which uses the SHA-256 of the body.
            delay_seconds: only None or 0: FIFO queues take the queue's DelaySeconds.
        """
        prepared = self._prepare_fifo(body, delay_seconds, attributes, group_id, deduplication_id)
        return self._send_fifo([prepared])[0][0]

    def send_batch(self, entries: Sequence[Any]) -> list[str]:
        """Up to 10 messages in order, in one write transaction; entries are dicts with
        ``body``, ``group_id`` and optional ``deduplication_id`` and ``attributes``."""
        return [message_id for message_id, _ in self.send_batch_detailed(entries)]

    def send_batch_detailed(self, entries: Sequence[Any]) -> list[tuple[str, str]]:
        """As send_batch, returning (message id, sequence number) per entry."""
        check_batch(entries, "SendMessageBatchRequestEntry")
        prepared = []
        for index, entry in enumerate(entries, 1):
            if not isinstance(entry, Mapping):
                raise MissingParameter("The request must contain the parameter MessageGroupId.")
            prepared.append(self._prepare_fifo(*batch_entry_fields(entry, index)))
        # SQS counts bodies and message attributes (not group or deduplication ids)
        total = sum(
            len(p[0]) + message_attributes_size(entry.get("attributes"))
            for p, entry in zip(prepared, entries)
        )
        if total > 1_048_576:
            raise BatchRequestTooLong(
                f"Batch requests cannot be longer than 1048576 bytes. You have sent {total} bytes."
            )
        return self._send_fifo(prepared)

    def _send_fifo(self, prepared: list[Any]) -> list[tuple[str, str]]:
        return self._drive(self._send_fifo_steps(prepared))  # type: ignore[no-any-return]

    def _send_fifo_steps(self, prepared: list[Any]) -> Generator[Write, Any, list[tuple[str, str]]]:
        core, env_id = self._core, self._broker._env_id

        def send(txn: Any, tables: Any, queue_id: int, now_ms: int) -> Any:
            return fifo.send(core, txn, tables, queue_id, now_ms, prepared, env_id, DEDUP_WINDOW_MS)

        results = yield Write(send, (), sends=len(prepared))
        duplicates = _duplicates(results)
        self.counters["sent"] += len(results) - duplicates
        if duplicates:
            self.counters["deduplicated"] += duplicates
        self._broker._wakeups.notify(self.queue_id, max(len(results) - duplicates, 1))
        return [
            (core.message_id(env_id, self.queue_id, seq), sequence_number(seq))
            for seq, _duplicate in results
        ]

    def _deliver_in_txn(
        self,
        txn: Any,
        now_ms: int,
        bodies: list[bytes],
        attributes: list[dict[str, Any] | None],
        group_ids: list[str | None] | None = None,
        deduplication_ids: list[str | None] | None = None,
        trace_headers: list[str | None] | None = None,
    ) -> None:
        """Fan-out from a FIFO topic: each message needs its group id (dedup ids optional)."""
        none = [None] * len(bodies)
        prepared = [
            self._prepare_fifo(body, None, attrs, group, dedup, trace)
            for body, attrs, group, dedup, trace in zip(
                bodies,
                attributes,
                group_ids or none,
                deduplication_ids or none,
                trace_headers or none,
            )
        ]
        try:
            results = fifo.send(
                self._core,
                txn,
                self._tables,
                self.queue_id,
                now_ms,
                prepared,
                self._broker._env_id,
                DEDUP_WINDOW_MS,
            )
        except LookupError:
            raise QueueDoesNotExist(f"The specified queue does not exist: {self.name}") from None
        duplicates = _duplicates(results)
        self._count_after_commit("sent", len(results) - duplicates)
        if duplicates:
            self._count_after_commit("deduplicated", duplicates)

    # -- receive -----------------------------------------------------------------------------------

    def _receive_once(
        self, max_messages: int, visibility_ms: int, attempt_id: str | None = None
    ) -> tuple[list[Message], int]:
        return self._drive(  # type: ignore[no-any-return]
            self._receive_steps(max_messages, visibility_ms, attempt_id)
        )

    def _receive_steps(
        self, max_messages: int, visibility_ms: int, attempt_id: str | None = None
    ) -> Generator[Write, Any, tuple[list[Message], int]]:
        retention_ms, expired_before_ms, redrive, core, broker = (
            self._retention_ms,
            self._expired_before_ms,
            self._redrive,
            self._core,
            self._broker,
        )
        attempt = None if attempt_id is None else attempt_id.encode()

        def receive(txn: Any, tables: Any, queue_id: int, now_ms: int) -> Any:
            cutoff = queue_attributes.retention_cutoff_ms(now_ms, retention_ms, expired_before_ms)
            known = None
            if attempt is not None:
                known = fifo.recall_attempt(txn, tables, queue_id, now_ms, attempt)
                if known is not None and known[1]:  # a retry of a receive that got messages
                    again = fifo.redeliver(
                        core,
                        txn,
                        tables,
                        queue_id,
                        now_ms,
                        [tuple(e) for e in known[1]],
                        visibility_ms,
                        cutoff,
                    )
                    if again is not None:  # unchanged since: the same deliveries again
                        remember(txn, tables, queue_id, known[0], again, known[0])
                        return (again, 0, [], 0, 0), 0
            dead_letter_id, max_count = 0, 0
            if redrive is not None:
                target = broker._definition_in(txn, redrive.target_name)
                if target is not None:
                    dead_letter_id, max_count = target["id"], redrive.max_receive_count
            result = fifo.receive(
                core,
                txn,
                tables,
                queue_id,
                now_ms,
                max_messages,
                visibility_ms,
                cutoff,
                max_count,
                dead_letter_id,
            )
            if attempt is not None:
                previous = None if known is None else known[0]
                remember(txn, tables, queue_id, now_ms + ATTEMPT_WINDOW_MS, result[0], previous)
            return result, dead_letter_id

        def remember(
            txn: Any,
            tables: Any,
            queue_id: int,
            expires: int,
            received: list[Any],
            previous: int | None,
        ) -> None:
            # (seq, receive count, group, visible_at): what a retry must find unchanged.
            entries = [(r[0], r[2], r[9], r[1]) for r in received]
            assert attempt is not None
            fifo.remember_attempt(txn, tables, queue_id, attempt, expires, entries, previous)

        (received, dead, corrupt, _expired, next_visible), dead_letter_id = yield Write(receive)
        self.counters["received"] += len(received)
        if dead:
            broker._wakeups.notify(dead_letter_id)
        if corrupt:
            self._report_corrupt(corrupt)
        secret, queue_id = broker._secret, self.queue_id
        messages = [
            Message(
                body,
                message_id,
                self._fifo_handle(secret, queue_id, seq, count, g),
                count,
                sent_ms,
                first_ms,
                blob,
                self._source_arn(source) if source else None,
                sequence_number(seq),
            )
            for seq, _, count, sent_ms, first_ms, blob, body, message_id, source, g in received
        ]
        return messages, next_visible

    def _fifo_handle(self, secret: bytes, queue_id: int, seq: int, count: int, g: bytes) -> str:
        # The group key rides after the checked part; its CRC sits in the handle's time field,
        # so a handle with another group is refused like any forged one.
        check = self._core.crc32c(g)
        head: str = self._core.encode_handle(secret, queue_id, seq, check, count)
        return head + "." + base64.urlsafe_b64encode(g).rstrip(b"=").decode("ascii")

    def _decode_fifo(self, receipt_handle: str) -> tuple[int, int, bytes]:
        head, _, tail = (
            receipt_handle.partition(".") if isinstance(receipt_handle, str) else ("", "", "")
        )
        decoded = self._core.decode_handle(self._broker._secret, head)
        g = b""
        try:
            g = base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))
        except ValueError:
            decoded = None
        if (
            decoded is None
            or decoded[0] != self.queue_id
            or not g
            or decoded[2] != self._core.crc32c(g)
        ):
            raise ReceiptHandleIsInvalid(
                f'The input receipt handle "{receipt_handle}" is not a valid receipt handle.'
            )
        return decoded[1], decoded[3], g

    # -- delete / change visibility --------------------------------------------------------------

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        """Delete up to 10 messages. FIFO rule: a handle whose visibility timeout ran out (or
        whose message was received again) is expired, and nothing of the batch is deleted."""
        check_batch(receipt_handles, "DeleteMessageBatchRequestEntry")
        entries = [self._decode_fifo(handle) for handle in receipt_handles]

        core = self._core

        def delete(txn: Any, tables: Any, queue_id: int, now_ms: int) -> None:
            statuses = fifo.delete(txn, tables, queue_id, now_ms, entries)
            unless_queue_gone(core, txn, tables, queue_id, statuses)
            for handle, status in zip(receipt_handles, statuses):
                if status == fifo.STALE:  # atomic write: raising rolls the batch back
                    raise InvalidParameterValue(
                        f"Value {handle} for parameter ReceiptHandle is invalid. Reason: The "
                        "receipt handle has expired."
                    )

        self._write(delete, atomic=True)
        self.counters["deleted"] += len(entries)  # as Queue.delete_batch: every handle succeeded
        self._wake_long_polls()  # the group's next message may be received now

    def _delete_steps(
        self, receipt_handles: Sequence[str]
    ) -> Generator[Write, Any, list[MillpondError | None]]:
        """Per-entry FIFO deletes: expired handles fail alone, the rest are deleted."""
        results: list[MillpondError | None] = [None] * len(receipt_handles)
        valid = []
        for i, handle in enumerate(receipt_handles):
            try:
                valid.append((i, self._decode_fifo(handle)))
            except MillpondError as exc:
                results[i] = exc
        if valid:
            core = self._core
            statuses = yield Write(
                lambda txn, tables, queue_id, now_ms: unless_queue_gone(
                    core,
                    txn,
                    tables,
                    queue_id,
                    fifo.delete(txn, tables, queue_id, now_ms, [v[1] for v in valid]),
                )
            )
            # CloudWatch counts every delete that succeeds, a repeated one too (as delete_batch)
            self.counters["deleted"] += sum(1 for s in statuses if s != fifo.STALE)
            if fifo.OK in statuses:
                self._wake_long_polls()  # their groups' next messages may be received now
            for (i, _), status in zip(valid, statuses):
                if status == fifo.STALE:
                    results[i] = InvalidParameterValue(
                        f"Value {receipt_handles[i]} for parameter ReceiptHandle is invalid. "
                        "Reason: The receipt handle has expired."
                    )
        return results

    def _visibility_entry(self, handle: str, timeout: int) -> tuple[Any, ...]:
        seq, count, g = self._decode_fifo(handle)
        return (seq, count, g, timeout * 1000)

    def _visibility_changed(self, status: int) -> bool:
        """As Queue's, but a handle of an older receive has expired: STALE is refused."""
        return status in (fifo.OK, fifo.NOT_IN_FLIGHT)

    def _change_visibility_verb(self) -> Any:
        return functools.partial(fifo.change_visibility, retention_ms=self._retention_ms)

    def change_visibility(self, receipt_handle: str, visibility_timeout: int) -> None:
        """As Queue.change_visibility; an expired FIFO handle is refused."""
        check_int("VisibilityTimeout", visibility_timeout, 0, 43_200)
        seq, count, g = self._decode_fifo(receipt_handle)

        def change(txn: Any, tables: Any, queue_id: int, now_ms: int) -> None:
            entry = (seq, count, g, visibility_timeout * 1000)
            change = self._change_visibility_verb()
            statuses = change(txn, tables, queue_id, now_ms, [entry], MAX_HIDDEN_MS)
            status = unless_queue_gone(self._core, txn, tables, queue_id, statuses)[0]
            self._raise_for_visibility_status(status, receipt_handle, visibility_timeout)

        self._write(change)
        self._wake_long_polls()

    # -- whole queue -------------------------------------------------------------------------------

    def _purge_in_txn(self, txn: Any, tables: Any, queue_id: int) -> int:
        return fifo.purge(self._core, txn, tables, queue_id)

    def _counts_in_txn(
        self, txn: Any, tables: Any, queue_id: int, now_ms: int, cutoff: int
    ) -> tuple[int, int, int]:
        self._core.expire(txn, tables, queue_id, cutoff)
        return fifo.counts(txn, tables, queue_id, now_ms, cutoff)

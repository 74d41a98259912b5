"""Queue: Amazon SQS standard-queue semantics over the core.

Policy lives here (defaults, ranges, receipt-handle rules, long polling, retention); the core
does the byte work inside the storage's shared write transaction. Every method validates its
input completely before it queues a write, so a rejected call stores nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from millpond import arguments, dead_letters, queue_attributes
from millpond.counts import Counts
from millpond.errors import (
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidAttributeName,
    InvalidParameterValue,
    MessageTooLong,
    MillpondError,
    MissingParameter,
    PurgeQueueInProgress,
    QueueDoesNotExist,
    ReceiptHandleIsInvalid,
    TooManyEntriesInBatchRequest,
    not_picklable,
)
from millpond.message import Message, pack_metadata, received_messages
from millpond.message_attributes import (
    first_bad_char,
    message_attributes_size,
    validate_body_text,
    validate_message_attributes,
)

if TYPE_CHECKING:
    from millpond.broker import Broker

log = logging.getLogger("millpond")

MAX_BATCH = 10  # SQS's limit for send_batch, delete_batch and receive
MAX_HIDDEN_MS = 43_200_000  # a message can stay in flight at most 12 h after its receive
PURGE_INTERVAL_MS = 60_000


class Write(NamedTuple):
    """One step of a verb: run ``fn(txn, tables, queue_id, now_ms, *args)`` and commit."""

    fn: Any
    args: tuple[Any, ...] = ()
    sends: int = 0
    atomic: bool = False


class Queue:
    """One queue of a broker; get it from ``broker.create_queue`` or ``broker.queue``."""

    def __init__(
        self,
        broker: Broker,
        name: str,
        queue_id: int,
        attributes: dict[str, str],
        created_s: int,
        modified_s: int,
    ) -> None:
        self._broker = broker
        self._storage = broker._storage
        self._core = broker._core
        self._tables = broker._storage.tables
        self.name = name
        self.queue_id = queue_id
        self.arn = broker.arn("sqs", name)
        self._created_s = created_s
        self._modified_s = modified_s
        self._tags: dict[str, str] = {}
        # Messages sent, received and deleted through this process, and the other CloudWatch
        # counts the daemon's /metrics shows (empty receives, ...: 0 until they happen).
        self.counters = Counts(sent=0, received=0, deleted=0)
        self._expired_before_ms = 0  # see queue_attributes.record_expired
        self._apply(attributes)

    def _apply_definition(self, definition: dict[str, Any]) -> None:
        """Cache what the queue's stored definition says (as stored, or changed since)."""
        self._modified_s = definition["modified"]
        self._tags = definition.get("tags", {})
        self._expired_before_ms = definition.get(queue_attributes.EXPIRED_BEFORE, 0)
        self._apply(definition["attributes"])

    def _apply(self, attributes: dict[str, str]) -> None:
        """Cache the stored attributes and the numbers every call needs."""
        self._attributes = attributes
        eff = queue_attributes.effective(attributes)
        self._delay_ms = int(eff["DelaySeconds"]) * 1000
        self._visibility_ms = int(eff["VisibilityTimeout"]) * 1000
        self._retention_ms = int(eff["MessageRetentionPeriod"]) * 1000
        self._max_size = int(eff["MaximumMessageSize"])
        self._wait_s = int(eff["ReceiveMessageWaitTimeSeconds"])
        self._redrive = dead_letters.redrive_policy(attributes)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def __reduce__(self) -> Any:
        raise not_picklable("Queue")  # e.g. an argument of a "spawn" multiprocessing worker

    # -- writes through the storage -----------------------------------------------------------

    def _write(
        self, fn: Any, *args: Any, sends: int = 0, atomic: bool = False, refresh: bool = True
    ) -> Any:
        """Run ``fn(txn, tables, queue_id, now_ms, *args)`` in the shared write transaction.

        ``atomic``: fn may raise after writing; its writes are then rolled back (Storage.write).
        ``refresh=False``: the caller just picked up other processes' queue changes.
        """
        if refresh:
            self._broker._refresh_definitions()
        try:
            return self._storage.write(self._op(fn, args), sends=sends, atomic=atomic)
        except QueueDoesNotExist:
            self._broker._forget(self)  # deleted, maybe by another process
            raise

    def _op(self, fn: Any, args: tuple[Any, ...]) -> Any:
        """The storage operation that runs ``fn(txn, tables, queue_id, now_ms, *args)``."""
        tables, queue_id = self._tables, self.queue_id

        def op(txn: Any, now_ms: int) -> Any:
            try:
                return fn(txn, tables, queue_id, now_ms, *args)
            except LookupError:
                raise QueueDoesNotExist(
                    f"The specified queue does not exist: {self.name}"
                ) from None

        return op

    def _drive(self, steps: Generator[Write, Any, Any]) -> Any:
        """Run a verb written as steps: each ``yield Write(...)`` is one committed write.

        The hot verbs are written this way so that the daemon can run the very same code
        without a thread per request (it drives the steps with ``Storage.submit``).
        """
        try:
            write = next(steps)
            while True:
                try:
                    result = self._write(
                        write.fn, *write.args, sends=write.sends, atomic=write.atomic
                    )
                except MillpondError as exc:
                    write = steps.throw(exc)
                else:
                    write = steps.send(result)
        except StopIteration as stop:
            return stop.value

    # -- send ---------------------------------------------------------------------------------

    def _check_message(
        self, body: object, attributes: Mapping[str, Any] | None
    ) -> tuple[bytes, dict[str, Any] | None]:
        """The body as bytes and the validated attributes; raises if either is not allowed
        (the body of a batch entry is whatever the caller put there: checked here)."""
        if isinstance(body, str):
            # SQS's character set (lone surrogates included); printable ASCII, the usual body,
            # is all allowed: decided here in C, without validate_body_text's two calls
            if body and not (body.isascii() and body.isprintable()):
                validate_body_text(body)
            data = body.encode("utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        else:
            raise InvalidParameterValue(
                f"The message body must be bytes or str, not {type(body).__name__}."
            )
        if not data:
            raise MissingParameter("The request must contain the parameter MessageBody.")
        attrs = validate_message_attributes(attributes) if attributes else None
        size = len(data) + (message_attributes_size(attrs) if attrs else 0)
        if size > self._max_size:
            raise self._too_long()
        return data, attrs

    def _too_long(self) -> MessageTooLong:
        return MessageTooLong(  # AWS's text
            "One or more parameters are invalid. Reason: Message must be shorter than "
            f"{self._max_size} bytes."
        )

    def _check_delay(self, delay_seconds: int | None) -> int:
        if delay_seconds is None:
            return self._delay_ms
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, int):
            raise InvalidParameterValue(
                f"Value {delay_seconds!r} for parameter DelaySeconds is invalid. "
                "Reason: must be an integer."
            )
        if not 0 <= delay_seconds <= 900:
            raise InvalidParameterValue(
                f"Value {delay_seconds} for parameter DelaySeconds is invalid. "
                "Reason: must be between 0 and 900, if provided."
            )
        return delay_seconds * 1000

    def _prepare(
        self,
        body: object,
        delay_seconds: int | None,
        attributes: Mapping[str, Any] | None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        trace_header: str | None = None,
        sender_id: str | None = None,
    ) -> tuple[bytes, bytes, int]:
        """(body, metadata blob, delay in ms) of one message for a standard queue."""
        self._broker._refresh_definitions()  # another process's attribute changes, read below
        data, attrs = self._check_message(body, attributes)
        if deduplication_id is not None:
            raise InvalidParameterValue(
                f"Value {deduplication_id} for parameter MessageDeduplicationId is invalid. "
                "Reason: The request include parameter that is not valid for this queue type."
            )
        if group_id is not None:
            check_message_id_field("MessageGroupId", group_id)  # fair queues: a tenant label
        # the queue's own delay, the usual case, without a call
        delay_ms = self._delay_ms if delay_seconds is None else self._check_delay(delay_seconds)
        if attrs is None and group_id is None and trace_header is None and sender_id is None:
            return data, b"", delay_ms
        return data, pack_metadata(attrs, group_id, None, trace_header, sender_id), delay_ms

    def send(
        self,
        body: bytes | str,
        *,
        delay_seconds: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send one message; returns its message id once it is stored.

        Args:
            body: bytes, or str (stored as UTF-8). At least 1 byte; body plus attributes at most
                the queue's MaximumMessageSize (default 1 MiB).
            delay_seconds: 0-900 s before the message can be received; None takes the queue's
                DelaySeconds (an explicit 0 overrides it).
            attributes: message attributes in the boto3 shape, at most 10.
            group_id: MessageGroupId: required on FIFO queues; on standard queues an optional
                tenant label (SQS "fair queues"), returned with the message.
            deduplication_id: MessageDeduplicationId, FIFO queues only.

        In "fsync" mode the message is on disk when this returns.
        """
        data, blob, delay_ms = self._prepare(
            body, delay_seconds, attributes, group_id, deduplication_id
        )
        seq = self._write(
            self._core.send,
            [data],
            [blob],
            [delay_ms],
            self._broker._env_id,
            sends=1,
            refresh=False,
        )
        return self._sent_one(seq)

    def send_batch(self, entries: Sequence[Any]) -> list[str]:
        """Send up to 10 messages in one write transaction; returns their ids in order.

        Args:
            entries: bodies (bytes or str), or dicts with ``body`` and optional
                ``delay_seconds``, ``attributes``, ``group_id`` and ``deduplication_id`` (as
                send()). All are checked before any is stored.
        """
        check_batch(entries, "SendMessageBatchRequestEntry")
        bodies, blobs, delays = self._prepare_many(entries)
        total = sum(map(len, bodies)) + sum(map(len, blobs))
        if total > queue_attributes.INT_RANGES["MaximumMessageSize"][1]:
            raise BatchRequestTooLong(
                f"Batch requests cannot be longer than 1048576 bytes. You have sent {total} bytes."
            )
        return self._send_many(bodies, blobs, delays)

    def _prepare_many(self, entries: Sequence[Any]) -> tuple[list[bytes], list[bytes], list[int]]:
        self._broker._refresh_definitions()  # another process's attribute changes, read below
        if all(type(entry) is bytes for entry in entries):
            # The common batch: plain bodies, no attributes. One pass instead of one call each.
            if not all(entries):
                raise MissingParameter("The request must contain the parameter MessageBody.")
            longest = max(map(len, entries))
            if longest > self._max_size:
                raise self._too_long()
            n = len(entries)
            return list(entries), [b""] * n, [self._delay_ms] * n
        bodies, blobs, delays = [], [], []
        for index, entry in enumerate(entries, 1):
            if isinstance(entry, Mapping):
                data, blob, delay_ms = self._prepare(*batch_entry_fields(entry, index))
            else:
                data, blob, delay_ms = self._prepare(entry, None, None)
            bodies.append(data)
            blobs.append(blob)
            delays.append(delay_ms)
        return bodies, blobs, delays

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
        """Store already-validated messages inside the caller's write transaction (fan-out).

        For topics: ``attributes`` are message attributes in the boto3 shape (or None), checked
        by the caller; ``group_ids`` are kept as tenant labels (SQS fair queues); a standard
        queue has no use for de-duplication ids; ``trace_headers`` become AWSTraceHeader. The
        queue's DelaySeconds applies. Raises QueueDoesNotExist if the queue was deleted. The
        caller notifies long polls after the commit (``_broker._wakeups``).
        """
        if group_ids is None and trace_headers is None:
            blobs = [pack_metadata(a) if a else b"" for a in attributes]
        else:
            none = [None] * len(bodies)
            blobs = [
                pack_metadata(a, g, None, t) if a or g or t else b""
                for a, g, t in zip(attributes, group_ids or none, trace_headers or none)
            ]
        delays = [self._delay_ms] * len(bodies)
        try:
            self._core.send(
                txn,
                self._tables,
                self.queue_id,
                now_ms,
                bodies,
                blobs,
                delays,
                self._broker._env_id,
            )
        except LookupError:
            raise QueueDoesNotExist(f"The specified queue does not exist: {self.name}") from None
        self._count_after_commit("sent", len(bodies))

    def _count_after_commit(self, name: str, n: int) -> None:
        """Add ``n`` to metrics counter ``name`` once the write op now running commits (caller
        runs inside one): counted in the op, a rerun would count twice (Storage.after_commit)."""
        counters = self.counters

        def count() -> None:
            counters[name] += n

        self._storage.after_commit(count)

    def _send_many(self, bodies: list[bytes], blobs: list[bytes], delays: list[int]) -> list[str]:
        return self._drive(self._send_steps(bodies, blobs, delays))  # type: ignore[no-any-return]

    def _send_steps(
        self, bodies: list[bytes], blobs: list[bytes], delays: list[int]
    ) -> Generator[Write, Any, list[str]]:
        first = yield self._send_write(bodies, blobs, delays)
        return self._sent(first, len(bodies))

    def _send_write(self, bodies: list[bytes], blobs: list[bytes], delays: list[int]) -> Write:
        """The one write of a send of prepared messages (its result: the first seq)."""
        # sends positionally: a class called with keywords passes them through a dict on 3.11
        args = (bodies, blobs, delays, self._broker._env_id)
        return Write(self._core.send, args, len(bodies))

    def _sent_counted(self, n: int) -> None:
        """After the commit of ``n`` sends: count them, and wake long polls."""
        self.counters["sent"] += n
        self._broker._wakeups.notify(self.queue_id, n)

    def _message_id(self, seq: int) -> str:
        message_id: str = self._core.message_id(self._broker._env_id, self.queue_id, seq)
        return message_id

    def _sent_one(self, seq: int) -> str:
        """After a single send's commit: wake long polls; the message id of ``seq`` (_sent
        for one message, without its lists). _sent_counted and _message_id inlined: the two
        calls cost 1.5% of an "os" single send (callgrind 63.8k -> 64.8k instructions)."""
        self.counters["sent"] += 1
        self._broker._wakeups.notify(self.queue_id)
        return self._core.message_id(self._broker._env_id, self.queue_id, seq)

    def _sent(self, first: int, n: int) -> list[str]:
        """After the send's commit: wake long polls; the message ids of seqs first.. first+n-1."""
        self._sent_counted(n)
        message_id, env_id, queue_id = self._core.message_id, self._broker._env_id, self.queue_id
        return [message_id(env_id, queue_id, first + i) for i in range(n)]

    # -- receive ------------------------------------------------------------------------------

    def receive(
        self,
        max_messages: int = 1,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: int | None = None,
        attempt_id: str | None = None,
    ) -> list[Message]:
        """Receive up to ``max_messages`` (1-10) visible messages, hiding them while you work.

        Args:
            max_messages: 1-10.
            visibility_timeout: 0-43200 s the messages stay hidden; None takes the queue's.
            wait_seconds: 0-20 s to wait for a message when none is visible (long polling);
                None takes the queue's ReceiveMessageWaitTimeSeconds. Returns as soon as at least
                one message is available, without filling ``max_messages``.
            attempt_id: FIFO queues: SQS's ReceiveRequestAttemptId. Retrying with the same id
                within 5 minutes returns the same messages and receipt handles (their visibility
                restarts) instead of new ones. Ignored on standard queues, as by SQS.
        """
        visibility_ms, wait_seconds = self._receive_arguments(
            max_messages, visibility_timeout, wait_seconds, attempt_id
        )
        wakeups = self._broker._wakeups
        deadline = time.monotonic() + wait_seconds
        while True:
            generation = wakeups.generation(self.queue_id)
            messages, next_visible_ms = self._receive_once(max_messages, visibility_ms, attempt_id)
            remaining = deadline - time.monotonic()
            if messages:
                return messages
            if remaining <= 0:
                self.counters["empty_receives"] += 1
                return messages
            if next_visible_ms:
                # A hidden message becomes visible before the wait ends: wake up for it.
                due_s = (next_visible_ms - self._broker.clock.now_ms()) / 1000
                remaining = min(remaining, max(due_s, 0.001))
            wakeups.wait(self.queue_id, generation, remaining)

    def _receive_arguments(
        self,
        max_messages: int,
        visibility_timeout: int | None,
        wait_seconds: int | None,
        attempt_id: str | None,
    ) -> tuple[int, int]:
        """A receive's arguments checked: (visibility in ms, seconds to wait), the queue's
        defaults where None (for :meth:`receive` and the daemon's native receive)."""
        self._broker._refresh_definitions()  # another process's attribute changes, read below
        check_int("MaxNumberOfMessages", max_messages, 1, MAX_BATCH)
        if attempt_id is not None:
            check_message_id_field("ReceiveRequestAttemptId", attempt_id)
        if visibility_timeout is None:
            visibility_ms = self._visibility_ms
        else:
            check_int("VisibilityTimeout", visibility_timeout, 0, 43_200)
            visibility_ms = visibility_timeout * 1000
        if wait_seconds is None:
            return visibility_ms, self._wait_s
        check_int("WaitTimeSeconds", wait_seconds, 0, 20)
        return visibility_ms, wait_seconds

    def _receive_once(
        self, max_messages: int, visibility_ms: int, attempt_id: str | None = None
    ) -> tuple[list[Message], int]:
        """One receive without waiting: (messages, when the next hidden one is due or 0).

        The same write as :meth:`_receive_steps`, run directly: a standard receive is one
        write, so the calling thread needs no steps to drive (FIFO queues override this).
        """
        return self._received(self._write(self._receive_write(max_messages, visibility_ms)))

    def _receive_steps(
        self, max_messages: int, visibility_ms: int, attempt_id: str | None = None
    ) -> Generator[Write, Any, tuple[list[Message], int]]:
        """The receive as steps, for the daemon (:meth:`Context.drive`)."""
        result = yield Write(self._receive_write(max_messages, visibility_ms), ())
        return self._received(result)

    def _receive_write(self, max_messages: int, visibility_ms: int) -> Any:
        """The write of a receive (for :meth:`_write`): the core receive, and in the same
        transaction the dead-letter move of the messages past maxReceiveCount."""
        retention_ms, expired_before_ms, redrive, core, broker = (
            self._retention_ms,
            self._expired_before_ms,
            self._redrive,
            self._core,
            self._broker,
        )
        secret = broker._secret

        def receive(txn: Any, tables: Any, queue_id: int, now_ms: int) -> Any:
            dead_letter_id, max_count = 0, 0
            if redrive is not None:
                target = broker._definition_in(txn, redrive.target_name)
                if target is not None:  # no dead-letter queue (deleted): nothing is moved
                    dead_letter_id, max_count = target["id"], redrive.max_receive_count
            result = core.receive(
                txn,
                tables,
                queue_id,
                now_ms,
                max_messages,
                visibility_ms,
                queue_attributes.retention_cutoff_ms(now_ms, retention_ms, expired_before_ms),
                max_count,
                secret,
            )
            if result[1]:
                # Past maxReceiveCount: to the dead-letter queue, in this same transaction.
                core.move(txn, tables, queue_id, now_ms, result[1], dead_letter_id, True)
            return result, dead_letter_id

        return receive

    def _received(self, result: Any) -> tuple[list[Message], int]:
        """The messages of a committed receive, and when the next hidden one is due (or 0)."""
        (received, over_limit, corrupt, _expired, next_visible), dead_letter_id = result
        self.counters["received"] += len(received)
        if over_limit:
            self._broker._wakeups.notify(dead_letter_id)
        if corrupt:
            self._report_corrupt(corrupt)
        return received_messages(received, self._source_arn), next_visible

    def _report_corrupt(self, seqs: list[int]) -> None:
        log.error(
            "queue %s: %d stored record(s) failed their CRC32C check and were not delivered "
            "(seq %s); they stay in the log for inspection",
            self.name,
            len(seqs),
            seqs,
        )

    def _source_arn(self, queue_id: int) -> str | None:
        name = self._broker._name_of(queue_id)
        return None if name is None else self._broker.arn("sqs", name)

    # -- delete / change visibility ---------------------------------------------------------------

    def _decode(self, receipt_handle: str) -> tuple[int, int, int]:
        decoded = self._core.decode_handle(self._broker._secret, receipt_handle)
        if decoded is None or decoded[0] != self.queue_id:
            raise ReceiptHandleIsInvalid(
                f'The input receipt handle "{receipt_handle}" is not a valid receipt handle.'
            )
        return decoded[1], decoded[2], decoded[3]

    def _decode_all(self, receipt_handles: Sequence[str]) -> list[tuple[int, int, int]]:
        """_decode for a batch in one core call; raises for the first handle that is not ours."""
        handles = receipt_handles if type(receipt_handles) is list else list(receipt_handles)
        entries = self._core.decode_handles(self._broker._secret, self.queue_id, handles)
        if None in entries:
            bad = handles[entries.index(None)]
            raise ReceiptHandleIsInvalid(
                f'The input receipt handle "{bad}" is not a valid receipt handle.'
            )
        return cast("list[tuple[int, int, int]]", entries)  # without None: checked above

    def delete(self, receipt_handle: str) -> None:
        """Delete the message the handle was given for.

        As on Amazon SQS standard queues, a handle from an older receive of the same message
        still deletes it, and deleting an already deleted message succeeds. When this returns
        the delete is stored ("fsync": on disk): the message never comes back.
        """
        self.delete_batch([receipt_handle])

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        """Delete up to 10 messages in one write; every handle is checked before any delete."""
        check_batch(receipt_handles, "DeleteMessageBatchRequestEntry")
        entries = self._decode_all(receipt_handles)
        core = self._core

        def delete(txn: Any, tables: Any, queue_id: int, now_ms: int) -> Any:
            # Standard queues: a handle of an older receive deletes too.
            statuses = core.delete(txn, tables, queue_id, entries)
            return unless_queue_gone(core, txn, tables, queue_id, statuses)

        self._write(delete)
        self.counters["deleted"] += len(entries)

    def change_visibility(self, receipt_handle: str, visibility_timeout: int) -> None:
        """Hide an in-flight message for ``visibility_timeout`` s (0-43200) from now.

        0 makes it visible at once. The total time hidden since its receive may not pass 12 h.
        A message whose visibility already ran out is left as it is (no error, as SQS). As on
        Amazon SQS standard queues, a handle from an older receive re-times the message's
        current delivery.
        """
        check_int("VisibilityTimeout", visibility_timeout, 0, 43_200)
        seq, visible_at, count = self._decode(receipt_handle)
        core = self._core

        def change(txn: Any, tables: Any, queue_id: int, now_ms: int) -> int:
            entry = (seq, visible_at, count, visibility_timeout * 1000)
            statuses = core.change_visibility(txn, tables, queue_id, now_ms, [entry], MAX_HIDDEN_MS)
            status: int = unless_queue_gone(core, txn, tables, queue_id, statuses)[0]
            # Only OK wrote anything, so raising for the others leaves the store unchanged.
            self._raise_for_visibility_status(status, receipt_handle, visibility_timeout)
            return status

        self._write(change)
        self._wake_long_polls()

    def _wake_long_polls(self) -> None:
        """After a change that can make a message receivable without a send (a visibility
        change; on FIFO queues a delete, which unblocks its group): a long poll sleeps until
        the next visibility time it saw, which the change may bring forward, and SQS answers a
        poll as soon as a message is available."""
        self._broker._wakeups.notify(self.queue_id)

    def _raise_for_visibility_status(
        self, status: int, receipt_handle: str, visibility_timeout: int
    ) -> None:
        error = self._visibility_error(status, receipt_handle, visibility_timeout)
        if error is not None:
            raise error

    def _visibility_changed(self, status: int) -> bool:
        """Whether a change_visibility status answers 200.

        NOT_IN_FLIGHT: AWS answers 200 to a change through the latest handle of a message whose
        visibility already ran out (it is visible again, not yet received anew); the change has
        nothing left to re-time, so it is a no-op. STALE: a handle of an older receive re-timed
        the message's current delivery, as AWS does on standard queues (AWS-validated:
        LocalStack's test_terminate_visibility_timeout_after_receive), as it deletes it.
        """
        core = self._core
        return status in (core.OK, core.NOT_IN_FLIGHT, core.STALE)

    def _visibility_error(
        self, status: int, receipt_handle: str, visibility_timeout: int
    ) -> MillpondError | None:
        """The SQS error for a change_visibility status (core and FIFO share the numbers)."""
        core = self._core
        if self._visibility_changed(status):
            return None
        if status == core.TOO_LONG:
            return InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Total VisibilityTimeout for the message is beyond the limit "
                "[43200 seconds]"
            )
        return InvalidParameterValue(
            f"Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: "
            "Message does not exist or is not available for visibility timeout change."
        )

    # -- per-entry batch verbs (the wire's DeleteMessageBatch and ChangeMessageVisibilityBatch) --

    def delete_entries(self, receipt_handles: Sequence[str]) -> list[MillpondError | None]:
        """Delete each handle on its own terms: an error per entry (None: deleted).

        Entries with valid handles are deleted in one write; a bad entry fails alone.
        """
        handles = arguments.entries(receipt_handles, "The receipt handles")
        return self._drive(self._delete_steps(handles))  # type: ignore[no-any-return]

    def _delete_steps(
        self, receipt_handles: Sequence[str]
    ) -> Generator[Write, Any, list[MillpondError | None]]:
        results: list[MillpondError | None] = [None] * len(receipt_handles)
        handles = list(receipt_handles)
        decoded = self._core.decode_handles(self._broker._secret, self.queue_id, handles)
        valid = [entry for entry in decoded if entry is not None]
        if len(valid) != len(handles):
            for i, entry in enumerate(decoded):
                if entry is None:
                    results[i] = ReceiptHandleIsInvalid(
                        f'The input receipt handle "{handles[i]}" is not a valid receipt handle.'
                    )
        if valid:
            core = self._core
            yield Write(
                lambda txn, tables, queue_id, now_ms: unless_queue_gone(
                    core, txn, tables, queue_id, core.delete(txn, tables, queue_id, valid)
                ),
                (),
            )
            self.counters["deleted"] += len(valid)
        return results

    def change_visibility_entries(
        self, entries: Sequence[tuple[str, int]]
    ) -> list[MillpondError | None]:
        """change_visibility for (handle, visibility_timeout) pairs; an error per entry."""
        entries = arguments.entries(entries, "The visibility changes")
        results: list[MillpondError | None] = [None] * len(entries)
        valid = []
        for i, entry in enumerate(entries):
            try:
                if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                    raise InvalidParameterValue(
                        "Each visibility change must be a (receipt handle, timeout) pair."
                    )
                handle, timeout = entry
                check_int("VisibilityTimeout", timeout, 0, 43_200)
                valid.append((i, handle, timeout, self._visibility_entry(handle, timeout)))
            except MillpondError as exc:
                results[i] = exc
        if valid:
            change, core = self._change_visibility_verb(), self._core
            statuses = self._write(
                lambda txn, tables, queue_id, now_ms: unless_queue_gone(
                    core,
                    txn,
                    tables,
                    queue_id,
                    change(txn, tables, queue_id, now_ms, [v[3] for v in valid], MAX_HIDDEN_MS),
                )
            )
            for (i, handle, timeout, _), status in zip(valid, statuses):
                results[i] = self._visibility_error(status, handle, timeout)
            if any(results[i] is None for i, _, _, _ in valid):
                self._wake_long_polls()
        return results

    def _visibility_entry(self, handle: str, timeout: int) -> tuple[Any, ...]:
        """What the change_visibility verb takes for one handle (raises for a bad handle)."""
        seq, visible_at, count = self._decode(handle)
        return (seq, visible_at, count, timeout * 1000)

    def _change_visibility_verb(self) -> Any:
        return self._core.change_visibility

    # -- whole queue ---------------------------------------------------------------------------

    def purge(self) -> None:
        """Delete every message, visible, delayed and in flight. Once per 60 s, as SQS."""

        key = purged_key(self.queue_id)  # shared by every process

        def purge(txn: Any, tables: Any, queue_id: int, now_ms: int) -> int:
            last = txn.get(key, db=tables.meta)
            # either way: a last purge in the future means the wall clock stepped back since,
            # and it must not refuse purges for the size of the step
            if last is not None and abs(now_ms - int(last)) < PURGE_INTERVAL_MS:
                raise PurgeQueueInProgress(
                    f"Only one PurgeQueue operation on {self.name} is allowed every 60 seconds."
                )
            removed = self._purge_in_txn(txn, tables, queue_id)  # raises first if it is gone
            txn.put(key, str(now_ms).encode(), db=tables.meta)
            return removed

        self._write(purge)

    def get_attributes(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Queue attributes by their SQS names, all values strings as SQS returns them.

        Args:
            names: the attributes wanted; None or ["All"] gives every one.
        """
        values, _ = self._attributes_and_age(with_age=False)
        if names is None:
            return values
        wanted = arguments.texts(names, "AttributeNames", InvalidAttributeName)
        if "All" in wanted:
            return values
        for name in wanted:
            if name not in queue_attributes.ALL_NAMES:
                raise InvalidAttributeName(f"Unknown Attribute {name}.")
        return {name: values[name] for name in wanted if name in values}

    def _attributes_and_age(self, with_age: bool) -> tuple[dict[str, str], int]:
        """Every attribute (see get_attributes), and with ``with_age`` the whole seconds since
        the oldest message still in the queue (in flight and delayed ones too) was sent, or
        dead-lettered into this queue, 0 for an empty queue: CloudWatch's
        ApproximateAgeOfOldestMessage, in whole seconds as it reports them, for /metrics (no
        SQS attribute). One write: messages past retention are trimmed first, for both."""
        self._broker._refresh_definitions()  # another process's attribute changes, read below
        retention_ms, expired_before_ms = self._retention_ms, self._expired_before_ms

        def count(txn: Any, tables: Any, queue_id: int, now_ms: int) -> tuple[int, ...]:
            cutoff = queue_attributes.retention_cutoff_ms(now_ms, retention_ms, expired_before_ms)
            counts = self._counts_in_txn(txn, tables, queue_id, now_ms, cutoff)
            oldest = self._core.oldest_ms(txn, tables, queue_id) if with_age else None
            if oldest is None or oldest > now_ms:  # empty, or the clock stepped back
                return (*counts, 0)
            return (*counts, (now_ms - oldest) // 1000)

        stored, in_flight, delayed, age_s = self._write(count)
        values = queue_attributes.effective(self._attributes)
        values.update(
            ApproximateNumberOfMessages=str(max(stored - in_flight - delayed, 0)),
            ApproximateNumberOfMessagesNotVisible=str(in_flight),
            ApproximateNumberOfMessagesDelayed=str(delayed),
            CreatedTimestamp=str(self._created_s),
            LastModifiedTimestamp=str(self._modified_s),
            QueueArn=self.arn,
        )
        return values, age_s

    def _purge_in_txn(self, txn: Any, tables: Any, queue_id: int) -> int:
        return self._core.purge(txn, tables, queue_id)

    def _counts_in_txn(
        self, txn: Any, tables: Any, queue_id: int, now_ms: int, cutoff: int
    ) -> tuple[int, int, int]:
        """(stored, in flight, delayed) after trimming messages past retention."""
        self._core.expire(txn, tables, queue_id, cutoff)
        return self._core.counts(txn, tables, queue_id, now_ms, cutoff)

    # -- tags --------------------------------------------------------------------------------------

    def tags(self) -> dict[str, str]:
        """The queue's tags (SQS ListQueueTags), as stored (tagged by another process, say)."""
        definition = self._broker._definition(self.name)
        if definition is None or definition["id"] != self.queue_id:
            # deleted (a queue created since under its name is another queue): as every other
            # call on this object, not the tags it had
            self._broker._forget(self)
            raise QueueDoesNotExist(f"The specified queue does not exist: {self.name}")
        self._tags = definition.get("tags", {})
        return dict(self._tags)

    def tag(self, tags: Mapping[str, str]) -> None:
        """Add or replace tags (SQS TagQueue); at most 50 per queue."""
        new = check_tags(arguments.mapping(tags, "Tags", required=True))

        def change(definition: dict[str, Any], now_ms: int) -> None:
            merged = {**definition.get("tags", {}), **new}
            if len(merged) > MAX_TAGS:
                raise InvalidParameterValue(
                    f"Too many tags: a queue can have at most {MAX_TAGS} (this would make "
                    f"{len(merged)})."
                )
            definition["tags"] = merged

        self._broker._update_definition(self, change)

    def untag(self, keys: Iterable[str]) -> None:
        """Remove tags by key (SQS UntagQueue); missing keys are ignored."""
        gone = set(arguments.texts(keys, "TagKeys"))

        def change(definition: dict[str, Any], now_ms: int) -> None:
            definition["tags"] = {
                k: v for k, v in definition.get("tags", {}).items() if k not in gone
            }

        self._broker._update_definition(self, change)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Change queue attributes (SQS names and ranges); takes effect at once."""
        fifo = self._attributes.get("FifoQueue") == "true"
        changes = queue_attributes.normalize(attributes, creating=False, fifo=fifo)
        messages_change = self._messages_change(changes)
        self._broker._update_queue(self, changes, messages_change)
        if messages_change is not None:
            self._wake_long_polls()  # a message may be receivable sooner than a poll expects

    def _change_policy(self, change: Any) -> None:
        """Rewrite the access Policy as ``change(stored policy text or "")`` returns it, in one
        write (the daemon's AddPermission and RemovePermission): built on this process's copy,
        a write dropped the statements other requests or processes had added meanwhile.
        ``change`` may raise a MillpondError: nothing is written then."""

        def update(definition: dict[str, Any], now_ms: int) -> None:
            attributes = definition["attributes"]
            policy = change(attributes.get("Policy") or "")
            definition["attributes"] = {**attributes, "Policy": policy}
            definition["modified"] = now_ms // 1000

        self._broker._update_definition(self, update)

    def _messages_change(self, changes: dict[str, str]) -> Any:
        """What an attribute change does to the stored messages, in its write (None: nothing).

        Standard queues: nothing; a message keeps the delay it was sent with (SQS: "the
        per-queue delay setting is not retroactive").
        """
        return None


MAX_TAGS = 50


def unless_queue_gone(
    core: Any, txn: Any, tables: Any, queue_id: int, statuses: list[int]
) -> list[int]:
    """The statuses of a delete or visibility change by receipt handles, unless the queue
    itself is gone (deleted by another process, or through another object): every handle then
    finds nothing (GONE), and that must not pass for a message deleted already (success) or
    one that "does not exist": SQS answers NonExistentQueue for any call on a deleted queue.
    Raises LookupError (QueueDoesNotExist, see Queue._op). Read only when a handle found
    nothing, so the usual delete reads no more."""
    if core.GONE in statuses and not core.exists(txn, tables, queue_id):
        raise LookupError(queue_id)
    return statuses


def purged_key(queue_id: int) -> bytes:
    """The meta key of the time of the queue's last purge (deleted with the queue)."""
    return b"purged:" + queue_id.to_bytes(4, "big")


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tag keys 1-128 and values 0-256 characters, strings, at most 50, in SQS's character set
    (what the query protocol's XML can carry: a control character would break every reply
    that lists the tags)."""
    tags = arguments.mapping(tags, "Tags")
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValue(f"Too many tags: at most {MAX_TAGS} are allowed.")
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or first_bad_char(key):
            raise InvalidParameterValue(f"Tag key {key!r} must be 1 to 128 characters.")
        if not isinstance(value, str) or len(value) > 256 or first_bad_char(value):
            raise InvalidParameterValue(
                f"Tag value for {key!r} must be a string of at most 256 characters."
            )
    return dict(tags)


_ID_CHARS = re.compile(r"[\x21-\x7e]{1,128}")  # "alphanumeric and punctuation", 1-128


def check_message_id_field(name: str, value: object) -> str:
    """MessageGroupId / MessageDeduplicationId: 1-128 printable ASCII characters, no space.

    Returns ``value``, now known to be such a str."""
    if not isinstance(value, str) or not _ID_CHARS.fullmatch(value):
        raise InvalidParameterValue(
            f"Value {value} for parameter {name} is invalid. Reason: {name} can only include "
            "alphanumeric and punctuation characters. 1 to 128 in length."
        )
    return value


_BATCH_ENTRY_KEYS = ("body", "delay_seconds", "attributes", "group_id", "deduplication_id")


def batch_entry_fields(entry: Mapping[str, Any], index: int) -> tuple[Any, ...]:
    """(body, delay_seconds, attributes, group_id, deduplication_id) of send_batch's entry
    ``index`` (1-based).

    Any other key is refused, as boto3 refuses an unknown member: read with .get(), a
    "DelaySeconds" or a misspelt "delay" would be dropped and the message sent without it.
    """
    unknown = [key for key in entry if key not in _BATCH_ENTRY_KEYS]
    if unknown:
        raise InvalidParameterValue(
            f"Unknown key {', '.join(map(repr, unknown))} in send_batch entry {index}: an "
            f"entry's keys are {', '.join(_BATCH_ENTRY_KEYS)}."
        )
    return tuple(entry.get(key) for key in _BATCH_ENTRY_KEYS)


def check_batch(entries: Sequence[Any], entry_name: str) -> None:
    """SQS's limits on a batch: 1 to MAX_BATCH entries of ``entry_name`` (a list or tuple)."""
    arguments.entries(entries, f"The {entry_name} entries")
    if not entries:
        raise EmptyBatchRequest(f"There should be at least one {entry_name}.")
    if len(entries) > MAX_BATCH:
        raise TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}."
        )


def check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameterValue(
            f"Value {value!r} for parameter {name} is invalid. "
            f"Reason: Must be between {low} and {high}, if provided."
        )

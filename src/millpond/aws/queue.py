"""AwsQueue and AwsFifoQueue: the Queue API over one Amazon SQS queue.

Arguments are passed to SQS as they are (bodies and attribute values turned into the text SQS
carries); SQS validates them and its errors come back as millpond's exception classes. Only a
message is checked first, by the embedded checks of what needs no queue state (see
AwsQueue._check_entry), so that a batch stays all-or-nothing where it can. Batch
verbs whose embedded form is all-or-nothing raise the first failed entry's error; SQS has
then already done the other entries, and the error's ``batch_results`` says entry by entry
what was done (see the README's "what differs").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from millpond import arguments
from millpond.aws.errors import from_batch_failure, raise_first_failure
from millpond.aws.messages import (
    MESSAGE_ATTRIBUTES,
    body_text,
    to_message,
    wire_attributes,
)
from millpond.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidParameterValue,
    MillpondError,
    MissingParameter,
    ReceiptHandleIsInvalid,
)
from millpond.message import Message
from millpond.message_attributes import validate_body_text, validate_message_attributes
from millpond.queue import (
    MAX_BATCH,
    batch_entry_fields,
    check_batch,
    check_int,
    check_message_id_field,
)

if TYPE_CHECKING:
    from millpond.aws.broker import AwsBroker


def wire_queue_attributes(attributes: Any) -> Any:
    """Queue attribute values as the strings SQS takes: ints as decimals, bools as true/false
    (the embedded broker accepts both); a mapping's other values are refused as there."""
    if not isinstance(attributes, Mapping):
        return attributes  # None, or something botocore refuses
    out = {}
    for name, value in attributes.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise InvalidAttributeValue(
                f"Invalid value for the parameter {name}: must be a string."
            )
        out[name] = value
    return out


class AwsQueue:
    """One SQS standard queue; get it from ``broker.create_queue`` or ``broker.queue``.

    Attributes:
        name: the queue's name.
        url: its QueueUrl.
        arn: its ARN.
    """

    fifo = False
    _other_type_only = ("MessageDeduplicationId",)  # send parameters this queue type refuses

    def __init__(self, broker: AwsBroker, name: str, url: str) -> None:
        self._broker = broker
        self.name = name
        self.url = url
        self._arn = broker._queue_arn(url)

    def __repr__(self) -> str:
        return f"AwsQueue({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AwsQueue) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def arn(self) -> str:
        if self._arn is None:  # a URL not shaped .../<account>/<name>: ask SQS
            self._arn = self.get_attributes(["QueueArn"])["QueueArn"]
        return self._arn

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return self._broker._call("sqs", operation, QueueUrl=self.url, **params)

    # -- send -----------------------------------------------------------------------------------

    def _entry(
        self,
        body: Any,
        delay_seconds: int | None,
        attributes: Any,
        group_id: str | None,
        deduplication_id: str | None,
    ) -> dict[str, Any]:
        """One message's SendMessage parameters (None ones are left out by the broker), checked
        (see _check_entry)."""
        fields = {
            "MessageBody": body_text(body),
            "DelaySeconds": delay_seconds,
            "MessageAttributes": wire_attributes(attributes),
            "MessageGroupId": group_id,
            "MessageDeduplicationId": deduplication_id,
        }
        self._check_entry(fields)
        return fields

    def send(
        self,
        body: bytes | str,
        *,
        delay_seconds: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send one message; returns its message id (as :meth:`millpond.Queue.send`).

        A bytes body must be UTF-8: SQS bodies are text. When the answer is lost botocore
        sends the request again: on a standard queue the message may then be stored twice;
        on a FIFO queue its deduplication id (or content) makes the retry harmless.
        """
        entry = self._entry(body, delay_seconds, attributes, group_id, deduplication_id)
        return self._call("send_message", **entry)["MessageId"]  # type: ignore[no-any-return]

    def _send_batch(self, entries: Sequence[Any]) -> list[dict[str, Any]]:
        """SendMessageBatch; the Successful entries in the order given."""
        check_batch(entries, "SendMessageBatchRequestEntry")
        wire = []
        for index, entry in enumerate(entries):
            if isinstance(entry, Mapping):
                fields = self._entry(*batch_entry_fields(entry, index + 1))
            else:
                fields = self._entry(entry, None, None, None, None)
            wire.append({"Id": str(index), **{k: v for k, v in fields.items() if v is not None}})
        answer = self._call("send_message_batch", Entries=wire)
        by_id = {ok["Id"]: ok for ok in answer.get("Successful", [])}
        slots = {str(index): index for index in range(len(entries))}
        stored = [by_id.get(wire_id, {}).get("MessageId") for wire_id in slots]
        raise_first_failure("sqs", answer.get("Failed") or [], stored, slots)
        return [by_id[wire_id] for wire_id in slots]

    def _check_entry(self, fields: Mapping[str, Any]) -> None:
        """Refuse a message (a send, or a batch entry) SQS would refuse, before it is sent.

        SQS answers a bad batch entry with a per-entry failure and stores the rest, while the
        embedded send_batch stores nothing when one entry is bad; checking the rules that do
        not depend on the queue's state here (body, message attributes, delay, a FIFO
        entry's group id, id formats) keeps that contract, raises the embedded classes, and
        keeps text botocore cannot encode (a lone surrogate) from failing the request with
        an error of the serialiser. Left to SQS: the size against the queue's
        MaximumMessageSize, and a FIFO message's missing deduplication id.
        """
        for name in self._other_type_only:
            if fields[name] is not None:
                raise InvalidParameterValue(  # the embedded (and SQS's) text
                    f"Value {fields[name]} for parameter {name} is invalid. Reason: The request "
                    "include parameter that is not valid for this queue type."
                )
        body = fields["MessageBody"]
        if not isinstance(body, str):  # botocore would refuse the batch, with another class
            raise InvalidParameterValue(
                f"The message body must be bytes or str, not {type(body).__name__}."
            )
        if not body:
            raise MissingParameter("The request must contain the parameter MessageBody.")
        validate_body_text(body)
        if fields["MessageAttributes"]:
            validate_message_attributes(fields["MessageAttributes"])
        if fields["DelaySeconds"] is not None:
            check_int("DelaySeconds", fields["DelaySeconds"], 0, 900)
        if self.fifo and fields["MessageGroupId"] is None:
            raise MissingParameter("The request must contain the parameter MessageGroupId.")
        for name in ("MessageGroupId", "MessageDeduplicationId"):
            if fields[name] is not None:
                check_message_id_field(name, fields[name])

    def send_batch(self, entries: Sequence[Any]) -> list[str]:
        """Send up to 10 messages; returns their ids in order (entries as embedded: bodies, or
        dicts with ``body``, ``delay_seconds``, ``attributes``, ``group_id``,
        ``deduplication_id``).

        Entries are checked before the batch is sent (see _check_entry); an entry SQS still
        refuses (too large for the queue; on a FIFO queue without ContentBasedDeduplication,
        no deduplication id) raises its error, and unlike the embedded broker SQS has then
        stored the others: the error's ``batch_results`` holds the message id of each stored
        entry and the error of each refused one, so that only those need sending again.
        """
        return [ok["MessageId"] for ok in self._send_batch(entries)]

    # -- receive --------------------------------------------------------------------------------

    def receive(
        self,
        max_messages: int = 1,
        *,
        visibility_timeout: int | None = None,
        wait_seconds: int | None = None,
        attempt_id: str | None = None,
    ) -> list[Message]:
        """Receive up to ``max_messages`` (1-10) messages (as :meth:`millpond.Queue.receive`).

        Each comes back as a :class:`millpond.Message` with its system attributes (receive
        count, timestamps, group and deduplication ids, sequence number, dead-letter source)
        and all its message attributes.

        On a FIFO queue a receive without ``attempt_id`` gets a fresh one: botocore sends a
        retried request unchanged, so a retry after a lost answer (a timeout, a dropped
        connection) gets the same messages back instead of finding their group in flight.
        (SQS refuses that id once its first use was throttled: the receive is then made
        again with another.) A retried receive on a standard queue cannot be told apart: the
        messages the lost answer held stay hidden until their visibility timeout ends.
        """
        params = {
            "MaxNumberOfMessages": max_messages,
            "VisibilityTimeout": visibility_timeout,
            "WaitTimeSeconds": wait_seconds,
            **self._broker._system_attributes,
            "MessageAttributeNames": MESSAGE_ATTRIBUTES,
        }
        if attempt_id is not None or not self.fifo:
            answer = self._call("receive_message", ReceiveRequestAttemptId=attempt_id, **params)
        else:
            try:
                answer = self._call("receive_message", ReceiveRequestAttemptId=_new_id(), **params)
            except InvalidParameterValue as exc:
                # SQS refuses the id again when its first use was throttled ("not retryable",
                # awslabs/amazon-sqs-java-messaging-lib#213): then a new receive, a new id
                if "ReceiveRequestAttemptId" not in str(exc):
                    raise
                answer = self._call("receive_message", ReceiveRequestAttemptId=_new_id(), **params)
        return [to_message(raw) for raw in answer.get("Messages", [])]

    # -- delete / change visibility ---------------------------------------------------------------

    def delete(self, receipt_handle: str) -> None:
        """Delete the message the handle was given for (as :meth:`millpond.Queue.delete`)."""
        self._call("delete_message", ReceiptHandle=_checked_handle(receipt_handle))

    def delete_batch(self, receipt_handles: Sequence[str]) -> None:
        """Delete up to 10 messages; raises the first refused handle's error.

        Unlike the embedded broker SQS has then deleted the others: the error's
        ``batch_results`` holds None for each deleted handle and the error of each refused
        one (as :meth:`delete_entries` returns).
        """
        check_batch(receipt_handles, "DeleteMessageBatchRequestEntry")
        for handle in receipt_handles:  # as embedded: refused before anything is deleted
            _checked_handle(handle)
        entries = [
            {"Id": str(index), "ReceiptHandle": handle}
            for index, handle in enumerate(receipt_handles)
        ]
        answer = self._call("delete_message_batch", Entries=entries)
        slots = {entry["Id"]: index for index, entry in enumerate(entries)}
        raise_first_failure("sqs", answer.get("Failed") or [], [None] * len(entries), slots)

    def change_visibility(self, receipt_handle: str, visibility_timeout: int) -> None:
        """Hide an in-flight message for ``visibility_timeout`` s (0-43200) from now."""
        self._call(
            "change_message_visibility",
            **_visibility_change((receipt_handle, visibility_timeout)),
        )

    def delete_entries(self, receipt_handles: Sequence[str]) -> list[MillpondError | None]:
        """Delete each handle on its own terms: an error per entry (None: deleted)."""
        handles = arguments.entries(receipt_handles, "The receipt handles")
        results: list[MillpondError | None] = [None] * len(handles)
        wire: dict[int, dict[str, Any]] = {}
        for index, handle in enumerate(handles):
            try:
                wire[index] = {"ReceiptHandle": _checked_handle(handle)}
            except ReceiptHandleIsInvalid as exc:
                results[index] = exc
        return self._per_entry("delete_message_batch", wire, results)

    def change_visibility_entries(
        self, entries: Sequence[tuple[str, int]]
    ) -> list[MillpondError | None]:
        """change_visibility for (handle, visibility_timeout) pairs; an error per entry.

        An entry botocore would refuse (not a pair, a timeout that is no int 0-43200, a handle
        that is no string) fails alone, as embedded, instead of failing the whole request.
        """
        entries = arguments.entries(entries, "The visibility changes")
        results: list[MillpondError | None] = [None] * len(entries)
        wire: dict[int, dict[str, Any]] = {}
        for index, entry in enumerate(entries):
            try:
                wire[index] = _visibility_change(entry)
            except MillpondError as exc:
                results[index] = exc
        return self._per_entry("change_message_visibility_batch", wire, results)

    def _per_entry(
        self,
        operation: str,
        entries: Mapping[int, dict[str, Any]],
        results: list[MillpondError | None],
    ) -> list[MillpondError | None]:
        """A batch verb over ``entries`` (by their index in ``results``), 10 per request;
        fills ``results`` with each entry's error."""
        slots = sorted(entries)
        for start in range(0, len(slots), MAX_BATCH):
            chunk = [
                {"Id": str(slot), **entries[slot]} for slot in slots[start : start + MAX_BATCH]
            ]
            answer = self._call(operation, Entries=chunk)
            for failed in answer.get("Failed", []):
                results[int(failed["Id"])] = from_batch_failure("sqs", failed)
        return results

    # -- whole queue ------------------------------------------------------------------------------

    def purge(self) -> None:
        """Delete every message (SQS PurgeQueue: once per 60 s)."""
        self._call("purge_queue")

    def get_attributes(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Queue attributes by their SQS names, values strings; None or ["All"]: every one."""
        wanted = ["All"]
        if names is not None:
            wanted = arguments.texts(names, "AttributeNames", InvalidAttributeName)
        return self._call("get_queue_attributes", AttributeNames=wanted).get("Attributes", {})  # type: ignore[no-any-return]

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Change queue attributes (SQS names and ranges); ints and bools are accepted."""
        self._call("set_queue_attributes", Attributes=wire_queue_attributes(attributes))

    def tags(self) -> dict[str, str]:
        """The queue's tags (SQS ListQueueTags)."""
        return dict(self._call("list_queue_tags").get("Tags", {}))

    def tag(self, tags: Mapping[str, str]) -> None:
        """Add or replace tags (SQS TagQueue)."""
        if isinstance(tags, Mapping) and not tags:
            # nothing to add, as embedded (SQS refuses an empty Tags); the read still
            # raises for a missing queue
            self.tags()
            return
        self._call("tag_queue", Tags=dict(tags) if isinstance(tags, Mapping) else tags)

    def untag(self, keys: Iterable[str]) -> None:
        """Remove tags by key (SQS UntagQueue); missing keys are ignored."""
        # a str is one key (not its characters); anything else as embedded checks it
        given = [keys] if isinstance(keys, str) else arguments.texts(keys, "TagKeys")
        if not given:
            # nothing to remove, as embedded (SQS refuses an empty TagKeys); the read still
            # raises for a missing queue
            self.tags()
            return
        self._call("untag_queue", TagKeys=given)


class AwsFifoQueue(AwsQueue):
    """An SQS FIFO queue (name ending in .fifo)."""

    fifo = True
    _other_type_only = ("DelaySeconds",)  # a FIFO queue takes only its own DelaySeconds

    def __repr__(self) -> str:
        return f"AwsFifoQueue({self.name!r})"

    def _entry(
        self,
        body: Any,
        delay_seconds: int | None,
        attributes: Any,
        group_id: str | None,
        deduplication_id: str | None,
    ) -> dict[str, Any]:
        # FIFO queues take only the queue's delay: 0 is "none given", as embedded (SQS
        # refuses the parameter on a FIFO queue whatever its value)
        return super()._entry(body, delay_seconds or None, attributes, group_id, deduplication_id)

    def send_batch_detailed(self, entries: Sequence[Any]) -> list[tuple[str, str]]:
        """As send_batch, returning (message id, sequence number) per entry."""
        return [(ok["MessageId"], ok["SequenceNumber"]) for ok in self._send_batch(entries)]


def _new_id() -> str:
    return uuid.uuid4().hex


def _checked_handle(handle: object) -> str:
    """``handle`` if it is a string, which SQS judges; else the embedded error (botocore
    would refuse it, and in a batch the whole batch, with another class)."""
    if not isinstance(handle, str):
        raise ReceiptHandleIsInvalid(
            f'The input receipt handle "{handle}" is not a valid receipt handle.'
        )
    return handle


def _visibility_change(entry: object) -> dict[str, Any]:
    """A (handle, timeout) pair of change_visibility(_entries) as its wire parameters; raises
    the embedded error for one botocore would refuse."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise InvalidParameterValue(
            "Each visibility change must be a (receipt handle, timeout) pair."
        )
    check_int("VisibilityTimeout", entry[1], 0, 43_200)
    return {"ReceiptHandle": _checked_handle(entry[0]), "VisibilityTimeout": entry[1]}

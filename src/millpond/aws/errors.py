"""AWS error codes back to millpond's exception classes.

The daemon turns a :class:`millpond.errors.MillpondError` into an AWS error (its ``code``); this
module goes the other way, so that code written against the embedded broker catches the same
classes over Amazon SQS/SNS. botocore reports the query-protocol code for SQS even over AWS JSON
1.0 (the ``x-amzn-query-error`` header), but an endpoint that leaves that header out gives the
JSON shape name instead, so both spellings are listed.

A code with no millpond class becomes :class:`AwsServiceError`, which keeps the code, message
and HTTP status AWS sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from millpond import errors
from millpond.errors import MillpondError
from millpond.sns_envelope import (
    InvalidParameter,
    ParameterValueInvalid,
    PublishBatchEmpty,
    PublishBatchEntryIdInvalid,
    PublishBatchIdsNotDistinct,
    PublishBatchTooLong,
    PublishBatchTooManyEntries,
    TagLimitExceeded,
    ValidationError,
)
from millpond.subscription import FilterPolicyLimitExceeded


class AwsServiceError(MillpondError):
    """An AWS error that has no millpond class of its own (throttling, access denied, ...).

    ``code``, ``http_status`` and ``sender_fault`` are the ones AWS sent.
    """

    def __init__(self, code: str, message: str, http_status: int, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = self.json_type = code
        self.http_status = http_status
        self.sender_fault = sender_fault
        self._message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle rebuilds an exception as cls(*self.args), and args holds only the joined text:
        # give it the constructor's arguments (and the extra attributes, as batch_results)
        arguments = (self.code, self._message, self.http_status, self.sender_fault)
        return type(self), arguments, vars(self)


def _both_spellings(*classes: type[MillpondError]) -> dict[str, type[MillpondError]]:
    """Each class under its query code and its JSON shape name."""
    table: dict[str, type[MillpondError]] = {}
    for cls in classes:
        table[cls.json_type] = cls
        table[cls.code] = cls
    return table


_SQS: dict[str, type[MillpondError]] = _both_spellings(
    errors.QueueDoesNotExist,
    errors.QueueAlreadyExists,
    errors.PurgeQueueInProgress,
    errors.ReceiptHandleIsInvalid,
    errors.MissingParameter,
    errors.InvalidMessageContents,
    errors.InvalidAttributeName,
    errors.InvalidAttributeValue,
    errors.MessageNotInflight,
    errors.TooManyEntriesInBatchRequest,
    errors.EmptyBatchRequest,
    errors.BatchEntryIdsNotDistinct,
    errors.BatchRequestTooLong,
    errors.InvalidBatchEntryId,
    errors.ResourceNotFound,
    errors.InvalidParameterValue,
)
_SQS["InvalidIdFormat"] = errors.ReceiptHandleIsInvalid  # SQS's older name for a bad handle

_SNS: dict[str, type[MillpondError]] = {
    "NotFound": errors.TopicNotFound,
    "NotFoundException": errors.TopicNotFound,
    "ResourceNotFound": errors.TopicNotFound,  # ListTagsForResource of a missing topic
    "InvalidParameter": InvalidParameter,
    "ParameterValueInvalid": ParameterValueInvalid,
    "InvalidParameterValue": ParameterValueInvalid,
    "ValidationError": ValidationError,
    "MissingParameter": errors.MissingParameter,
    "TagLimitExceeded": TagLimitExceeded,
    "FilterPolicyLimitExceeded": FilterPolicyLimitExceeded,
    "EmptyBatchRequest": PublishBatchEmpty,
    "TooManyEntriesInBatchRequest": PublishBatchTooManyEntries,
    "BatchEntryIdsNotDistinct": PublishBatchIdsNotDistinct,
    "InvalidBatchEntryId": PublishBatchEntryIdInvalid,
    "BatchRequestTooLong": PublishBatchTooLong,
}


def from_code(
    service: str, code: str, message: str, http_status: int = 400, sender_fault: bool = True
) -> MillpondError:
    """The millpond exception for an AWS error ``code`` of ``service`` ("sqs" or "sns")."""
    code = code.rpartition("#")[2]  # "com.amazonaws.sqs#QueueDoesNotExist" from some endpoints
    cls = (_SQS if service == "sqs" else _SNS).get(code)
    if cls is None:
        return AwsServiceError(code, message, http_status, sender_fault)
    if cls is errors.InvalidParameterValue and "must be shorter than" in message:
        cls = errors.MessageTooLong  # the one InvalidParameterValue the embedded API names
    elif cls is InvalidParameter and (
        "FilterPolicy:" in message or "filter policy" in message.lower()
    ):
        cls = errors.InvalidFilterPolicy  # embedded: the same code, its own class
    return cls(message)


def from_client_error(service: str, exc: ClientError) -> MillpondError:
    """The millpond exception for a ClientError boto3 raised."""
    error: Mapping[str, Any] = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
    return from_code(
        service,
        str(error.get("Code", "")),
        str(error.get("Message", "")),
        int(status),
        error.get("Type", "Sender") == "Sender",
    )


def from_param_error(service: str, exc: ParamValidationError | UnicodeEncodeError) -> MillpondError:
    """botocore refused a request before sending it (a wrong type, a missing member, text it
    cannot encode): the error the embedded broker gives for a bad argument."""
    text = str(exc)
    if service == "sns":
        return ValidationError(text) if "Missing required" in text else InvalidParameter(text)
    if "Missing required" in text:
        return errors.MissingParameter(text)
    return errors.InvalidParameterValue(text)


def from_batch_failure(service: str, failed: Mapping[str, Any]) -> MillpondError:
    """The exception for one Failed entry of a batch answer (Code, Message, SenderFault)."""
    return from_code(
        service,
        str(failed.get("Code", "")),
        str(failed.get("Message", "")),
        400,
        bool(failed.get("SenderFault", True)),
    )


def raise_first_failure(
    service: str, failed: Sequence[Mapping[str, Any]], results: list[Any], slots: Mapping[str, int]
) -> None:
    """Raise the error of the first Failed entry of a batch answer (in entry order), if any.

    SQS and SNS have done the other entries by then, which the embedded broker never does; so
    that the caller can tell what was stored (and resend only the rest), the error carries
    ``batch_results``: ``results`` (each entry's result, by its slot) with each failed
    entry's slot replaced by its error. ``slots`` maps the wire Ids to slots.
    """
    if not failed:
        return
    errors_by_slot = {slots[entry["Id"]]: from_batch_failure(service, entry) for entry in failed}
    for slot, error in errors_by_slot.items():
        results[slot] = error
    first = errors_by_slot[min(errors_by_slot)]
    vars(first)["batch_results"] = results  # an extra attribute, beside the class's own
    raise first

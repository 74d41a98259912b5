"""One exception tree for millpond.

Every leaf carries the AWS error it stands for, so the daemon can answer with exactly what
Amazon SQS/SNS would send (``code`` is the query-protocol / ``x-amzn-query-error`` code,
``json_type`` the AWS JSON 1.0 ``__type`` shape name, ``http_status`` the status code), and the
embedded API can be caught by concept (``except millpond.errors.QueueDoesNotExist``).

A raised error always means nothing was stored by the call that raised it.
"""

from __future__ import annotations


class MillpondError(Exception):
    """Base of every error millpond raises on purpose."""

    code = "InternalError"
    json_type = "InternalError"
    http_status = 500
    sender_fault = False


# -- invalid input (sender's fault) -------------------------------------------------------------


class InvalidInputError(MillpondError, ValueError):
    """The call's arguments are wrong; nothing was changed."""

    code = "InvalidParameterValue"
    json_type = "InvalidParameterValueException"
    http_status = 400
    sender_fault = True


class InvalidParameterValue(InvalidInputError):
    """A parameter has a value outside what SQS accepts (size, range, format)."""


class MissingParameter(InvalidInputError):
    """A required parameter is absent (MessageGroupId on a FIFO queue, say)."""

    code = "MissingParameter"
    json_type = "MissingRequiredParameterException"


class MessageTooLong(InvalidParameterValue):
    """Body plus message attributes exceed the queue's MaximumMessageSize."""


class InvalidMessageContents(InvalidInputError):
    """The body holds characters SQS does not allow."""

    code = "InvalidMessageContents"
    json_type = "InvalidMessageContents"


class InvalidAttributeName(InvalidInputError):
    """A queue attribute name SQS does not know (or not for this queue type)."""

    code = "InvalidAttributeName"
    json_type = "InvalidAttributeName"


class InvalidAttributeValue(InvalidInputError):
    """A queue attribute value outside its range."""

    code = "InvalidAttributeValue"
    json_type = "InvalidAttributeValue"


class ReceiptHandleIsInvalid(InvalidInputError):
    """The receipt handle is malformed or belongs to another queue."""

    code = "ReceiptHandleIsInvalid"
    json_type = "ReceiptHandleIsInvalid"


class MessageNotInflight(InvalidInputError):
    """Not raised any more: SQS answers a visibility change to a message that is visible again
    with success, and so does millpond. Kept so that code catching it still imports."""

    code = "AWS.SimpleQueueService.MessageNotInflight"
    json_type = "MessageNotInflight"


class BatchError(InvalidInputError):
    """Base of the batch-shape errors (too many entries, duplicate ids, ...)."""


class TooManyEntriesInBatchRequest(BatchError):
    code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    json_type = "TooManyEntriesInBatchRequest"


class EmptyBatchRequest(BatchError):
    code = "AWS.SimpleQueueService.EmptyBatchRequest"
    json_type = "EmptyBatchRequest"


class BatchEntryIdsNotDistinct(BatchError):
    code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    json_type = "BatchEntryIdsNotDistinct"


class BatchRequestTooLong(BatchError):
    code = "AWS.SimpleQueueService.BatchRequestTooLong"
    json_type = "BatchRequestTooLong"


class InvalidBatchEntryId(BatchError):
    code = "AWS.SimpleQueueService.InvalidBatchEntryId"
    json_type = "InvalidBatchEntryId"


class InvalidFilterPolicy(InvalidInputError):
    """An SNS filter policy that SNS would reject; the message names the bad part."""

    code = "InvalidParameter"
    json_type = "InvalidParameterException"


# -- state conflicts ------------------------------------------------------------------------------


class QueueDoesNotExist(MillpondError, LookupError):
    """No queue by that name (or it was deleted)."""

    code = "AWS.SimpleQueueService.NonExistentQueue"
    json_type = "QueueDoesNotExist"
    http_status = 400
    sender_fault = True


class QueueAlreadyExists(MillpondError):
    """create_queue with a name that exists with different attributes."""

    code = "QueueAlreadyExists"
    json_type = "QueueNameExists"
    http_status = 400
    sender_fault = True


class PurgeQueueInProgress(MillpondError):
    """A second purge of one queue within 60 seconds."""

    code = "AWS.SimpleQueueService.PurgeQueueInProgress"
    json_type = "PurgeQueueInProgress"
    http_status = 403
    sender_fault = True


class TopicNotFound(MillpondError, LookupError):
    """No topic (or subscription) by that name or ARN."""

    code = "NotFound"
    json_type = "NotFoundException"
    http_status = 404
    sender_fault = True


class ResourceNotFound(MillpondError, LookupError):
    """A message move task, or the queue an ARN names, does not exist."""

    code = "ResourceNotFoundException"
    json_type = "ResourceNotFoundException"
    http_status = 404
    sender_fault = True


# -- the store itself -----------------------------------------------------------------------------


class StorageFull(MillpondError):
    """The data directory reached its size limit; sends are refused, deletes still work."""

    code = "OverLimit"
    json_type = "OverLimit"
    http_status = 403
    sender_fault = True


class TooManyRegions(MillpondError):
    """The daemon already serves as many regions as it may (``max_regions``); a request signed
    for a new one is refused, and no directory is made for it."""

    code = "OverLimit"
    json_type = "OverLimit"
    http_status = 403
    sender_fault = True


class CorruptRecord(MillpondError):
    """A stored record failed its CRC32C check; it is reported, never served."""


class IncompatibleDataFormat(MillpondError):
    """The data directory was written by a millpond whose storage format this one cannot read."""


class AlreadyOpen(MillpondError):
    """The data directory is already open in this process: share that Broker instead.

    LMDB forbids opening one environment twice in a process (closing either would drop the
    other's locks).
    """


class BrokerClosed(MillpondError):
    """The broker was closed, or this process forked after opening it."""


def not_picklable(kind: str) -> TypeError:
    """The error for pickling a Broker or one of its objects (``kind``): pickle's own, "cannot
    pickle 'module' object", says nothing of why or what to do instead."""
    return TypeError(
        f"a millpond {kind} cannot be pickled: it stands for a data directory this process has "
        "open; in another process call millpond.open(path) (or millpond.connect(url)) and "
        "look the queue or topic up by name"
    )


class ConnectionLost(MillpondError, ConnectionError):
    """The connection to the daemon (native protocol) or to AWS (sqs://) closed, or never opened,
    before the answer came.

    A send that fails with this may or may not have been stored: the answer is what was lost.
    """

    code = "ConnectionLost"
    json_type = "ConnectionLost"

"""``publish`` from ``publish_message``, written once for the remote topics (native, sqs://)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PublishFromPublishMessage:
    """Gives a topic class :meth:`publish` in terms of its own ``publish_message``."""

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
        raise NotImplementedError

    def publish(
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
        """Publish one message; returns its SNS message id (as :meth:`millpond.Topic.publish`)."""
        return self.publish_message(
            message,
            subject=subject,
            attributes=attributes,
            group_id=group_id,
            deduplication_id=deduplication_id,
            message_structure=message_structure,
            trace_header=trace_header,
        )["MessageId"]

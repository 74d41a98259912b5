"""Topics: SNS fan-out to queues (being written; see issue 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from millpond.errors import TopicNotFound

if TYPE_CHECKING:
    from millpond.broker import Broker


class Topic:
    pass


class Topics:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def create(self, name: str, attributes: Any = None) -> Topic:
        raise NotImplementedError("topics are not implemented yet")

    def get(self, name: str) -> Topic:
        raise TopicNotFound(name)

    def delete(self, name: str) -> None:
        raise TopicNotFound(name)

    def list(self) -> list[str]:
        return []

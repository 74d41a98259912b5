"""The minimal round trip every backend must do (the rest of the suite builds on it)."""

from __future__ import annotations

from typing import Any


def test_send_receive_delete(broker: Any, name: str) -> None:
    q = broker.create_queue(name)
    message_id = q.send(b"hello")
    (m,) = q.receive(1, wait_seconds=5)
    assert (m.body, m.message_id, m.receive_count) == (b"hello", message_id, 1)
    q.delete(m.receipt_handle)
    assert q.receive(1) == []

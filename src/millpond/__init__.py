"""millpond: a durable, high-throughput message broker with Amazon SQS/SNS semantics.

import millpond
with millpond.open("./data") as broker:
    q = broker.create_queue("jobs")
    q.send(b"hello")
    for m in q.receive(10):
        q.delete(m.receipt_handle)
"""

from millpond.broker import Broker, open
from millpond.clock import Clock, ManualClock, SystemClock
from millpond.connection import connect
from millpond.message import Message
from millpond.queue import Queue
from millpond.topic import Subscription, Topic

__all__ = [
    "Broker",
    "Clock",
    "ManualClock",
    "Message",
    "Queue",
    "Subscription",
    "SystemClock",
    "Topic",
    "connect",
    "open",
]
__version__ = "0.1.0.dev0"

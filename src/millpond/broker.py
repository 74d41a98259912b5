"""Broker: the queues of one data directory and their definitions.

Queue definitions live in the ``meta`` table as msgpack maps under ``q:<name>``; queue ids are
never reused, so receipt handles of a deleted queue cannot touch a new queue of the same name.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import msgpack

from millpond import _core_fifo, arguments, dead_letters, queue_attributes
from millpond import core as core_module
from millpond.clock import Clock, SystemClock
from millpond.disk_reserve import DEFAULT_DISK_RESERVE
from millpond.errors import (
    IncompatibleDataFormat,
    InvalidParameterValue,
    QueueAlreadyExists,
    QueueDoesNotExist,
    not_picklable,
)
from millpond.fifo_queue import FifoQueue
from millpond.queue import Queue, check_tags, purged_key
from millpond.storage import (
    DEFAULT_MAP_SIZE,
    DEFAULT_MAX_MAP_SIZE,
    DEFAULT_RESERVE,
    Storage,
    key_names_after,
)
from millpond.topic import Subscription, Topic, Topics
from millpond.wakeups import Wakeups

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_FIFO_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
_ENV_KEY = b"env"
# 2: fresh messages live in the log alone; counters are floor | gone | fresh (see _core_py).
DATA_FORMAT = 2
_NEXT_QUEUE_ID_KEY = b"next_queue_id"
# bumped by every queue create/change/delete, and when a move task starts
_DEFINITIONS_VERSION_KEY = b"definitions_version"
REFRESH_INTERVAL_S = 1.0  # how stale another process's attribute change may look here


def _queue_key(name: str) -> bytes:
    return b"q:" + name.encode()


def _name_key(queue_id: int) -> bytes:
    # queue id -> name, kept after the queue is deleted if it may have dead-lettered messages:
    # they name their source (see _may_have_dead_lettered)
    return b"qn:" + queue_id.to_bytes(4, "big")


def _may_have_dead_lettered(definition: dict[str, Any]) -> bool:
    """Whether a queue ever had a RedrivePolicy (so messages in a dead-letter queue may name
    it as their DeadLetterQueueSourceArn); "dead_letters" is stored once it had one, a policy
    still set counts for definitions stored before that."""
    return bool(definition.get("dead_letters") or definition["attributes"].get("RedrivePolicy"))


class Broker:
    """The queues of one data directory; open it with :func:`millpond.open`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "fsync",
        clock: Clock | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        reserve: int = DEFAULT_RESERVE,
        disk_reserve: int = DEFAULT_DISK_RESERVE,
        core: str | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.region = region
        self.account_id = account_id
        self._core: core_module.Core = core_module.load(core)
        self._storage = Storage(
            path,
            self.clock,
            durability,
            map_size=map_size,
            max_map_size=max_map_size,
            reserve=reserve,
            disk_reserve=disk_reserve,
        )
        self._wakeups = Wakeups(self._storage.path)
        self.clock.on_advance(self._wakeups.notify_everyone)
        self._queues: dict[str, Queue] = {}
        # Replaced (after the change) whenever _queues or a cached queue's attributes change:
        # what was worked out from them (a topic's fan_out.Plan) holds while it is the same.
        self._queues_token = object()
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()  # one close() at a time: see close()
        self._closed = False
        try:
            self._env_id, self._secret = self._storage.write(_load_identity)
        except BaseException:  # not a directory this millpond can use: let go of it
            self.clock.off_advance(self._wakeups.notify_everyone)
            self._wakeups.close()
            self._storage.close()
            raise
        self._names: dict[int, str] = {}
        self._definitions_version = self._read_definitions_version()
        self._definitions_checked = time.monotonic()
        self._move_tasks = dead_letters.MoveTasks(self)
        self._topics = Topics(self)
        self._move_tasks.resume()

    @property
    def implementation(self) -> str:
        """Which core runs: "c" (Cython) or "py" (the pure-Python twin)."""
        return self._core.IMPLEMENTATION

    @property
    def durability(self) -> str:
        return self._storage.durability

    def arn(self, service: str, name: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{name}"

    # -- queues --------------------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Queue:
        """Create a queue, or return the existing one if every given attribute matches.

        Args:
            name: 1-80 characters of A-Z a-z 0-9 _ -.
            attributes: SQS attribute names to values (see queue_attributes), e.g.
                ``{"VisibilityTimeout": "60"}``.
            tags: cost-allocation tags for a new queue.

        Raises:
            QueueAlreadyExists: the queue exists with a different value for a given attribute,
                or for a given tag (TagQueue changes the tags of an existing queue).
        """
        requested = queue_attributes.normalize(attributes, creating=True)
        new_tags = check_tags(tags or {})
        if requested.get("FifoQueue") == "true":
            if not isinstance(name, str) or not _FIFO_QUEUE_NAME.fullmatch(name):
                raise InvalidParameterValue(
                    "The name of a FIFO queue can only include alphanumeric characters, hyphens, "
                    f"or underscores, must end with .fifo suffix and be 1 to 80 in length (got "
                    f"{name!r})."
                )
            queue_attributes.check_fifo_throughput(requested)
        elif not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
            raise InvalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. "
                f"1 to 80 in length (got {name!r})."
                + (
                    " A FIFO queue needs the attribute FifoQueue=true."
                    if isinstance(name, str) and name.endswith(".fifo")
                    else ""
                )
            )
        dead_letters.check_redrive_policy(self, name, requested)
        core = self._core

        def create(txn: Any, now_ms: int) -> dict[str, Any]:
            raw = txn.get(_queue_key(name), db=self._storage.tables.meta)
            if raw is not None:
                definition: dict[str, Any] = msgpack.unpackb(raw)
                different = queue_attributes.mismatch(definition["attributes"], requested)
                if different is not None:
                    raise QueueAlreadyExists(
                        "A queue already exists with the same name and a different value for "
                        f"attribute {different}"
                    )
                stored_tags = definition.get("tags", {})
                if any(stored_tags.get(key) != value for key, value in new_tags.items()):
                    # as SQS: given tags must match the queue's, they do not re-tag it
                    raise QueueAlreadyExists(
                        "A queue already exists with the same name and different tags"
                    )
                return definition
            queue_id = int(txn.get(_NEXT_QUEUE_ID_KEY, b"1", db=self._storage.tables.meta))
            txn.put(_NEXT_QUEUE_ID_KEY, str(queue_id + 1).encode(), db=self._storage.tables.meta)
            definition = {
                "id": queue_id,
                "attributes": requested,
                "created": now_ms // 1000,
                "modified": now_ms // 1000,
                "tags": new_tags,
            }
            if requested.get("RedrivePolicy"):
                definition["dead_letters"] = True
            txn.put(_queue_key(name), msgpack.packb(definition), db=self._storage.tables.meta)
            txn.put(_name_key(queue_id), name.encode(), db=self._storage.tables.meta)
            _bump_definitions_version(txn, self._storage.tables.meta)
            core.create(txn, self._storage.tables, queue_id)
            return definition

        return self._cache(name, self._storage.write(create))

    def queue(self, name: str) -> Queue:
        """The existing queue ``name``; raises QueueDoesNotExist."""
        self._refresh_definitions()  # deleted and re-created by another process, say
        # one dict read is atomic: no lock on the hot path (a cached name was checked already)
        cached = self._queues.get(name) if type(name) is str else None
        if cached is not None:
            return cached
        arguments.text(name, "The queue name")
        definition = self._definition(name)
        if definition is None:
            raise QueueDoesNotExist(f"The specified queue does not exist: {name}")
        return self._cache(name, definition)

    def _definition(self, name: str) -> dict[str, Any] | None:
        """The stored definition of queue ``name`` (id, attributes, timestamps), or None."""
        return self._storage.read(lambda txn: self._definition_in(txn, name))

    def _current_id_in(self, txn: Any, queue_id: int) -> int:
        """The id of the queue named now as ``queue_id``'s was, if that one was deleted and
        another created under its name (to SQS the same queue: its ARN); else ``queue_id``."""
        raw = txn.get(_name_key(queue_id), db=self._storage.tables.meta)
        definition = None if raw is None else self._definition_in(txn, raw.decode())
        return queue_id if definition is None else int(definition["id"])

    def _definition_in(self, txn: Any, name: str) -> dict[str, Any] | None:
        raw = txn.get(_queue_key(name), db=self._storage.tables.meta)
        return None if raw is None else msgpack.unpackb(raw)

    def _definitions_changed(self, txn: Any) -> None:
        """Tell the other processes (at their next refresh) to read the definitions again."""
        _bump_definitions_version(txn, self._storage.tables.meta)

    def _read_definitions_version(self) -> int:
        return int(
            self._storage.read(
                lambda txn: txn.get(_DEFINITIONS_VERSION_KEY, b"0", db=self._storage.tables.meta)
            )
        )

    def _refresh_definitions(self) -> None:
        """Pick up queue changes and move tasks of other processes (at most once per
        REFRESH_INTERVAL_S).

        SQS itself takes up to 60 s to propagate attribute changes; here it is about a second.
        """
        now = time.monotonic()
        if now - self._definitions_checked < REFRESH_INTERVAL_S:
            return
        self._definitions_checked = now
        version = self._read_definitions_version()
        if version == self._definitions_version:
            return
        self._definitions_version = version
        self._move_tasks.resume()  # a task another process started: waited on, taken over
        with self._lock:
            cached = list(self._queues.values())
        for queue in cached:
            definition = self._definition(queue.name)
            if definition is None or definition["id"] != queue.queue_id:
                self._forget(queue)
            else:
                queue._apply_definition(definition)
        self._queues_token = object()

    def _forget(self, queue: Queue) -> None:
        """Drop a cached queue object (its queue was deleted); the next lookup reloads."""
        with self._lock:
            if self._queues.get(queue.name) is queue:
                del self._queues[queue.name]
                self._queues_token = object()

    def _name_of(self, queue_id: int) -> str | None:
        """The name a queue id had (also after the queue was deleted)."""
        name = self._names.get(queue_id)
        if name is None:
            raw = self._storage.read(
                lambda txn: txn.get(_name_key(queue_id), db=self._storage.tables.meta)
            )
            if raw is None:
                return None
            name = self._names[queue_id] = raw.decode()
        return name

    def _cache(self, name: str, definition: dict[str, Any]) -> Queue:
        with self._lock:
            queue = self._queues.get(name)
            if queue is None or queue.queue_id != definition["id"]:
                kind = FifoQueue if definition["attributes"].get("FifoQueue") == "true" else Queue
                queue = kind(
                    self,
                    name,
                    definition["id"],
                    definition["attributes"],
                    definition["created"],
                    definition["modified"],
                )
                queue._apply_definition(definition)
                self._queues[name] = queue
                self._queues_token = object()
            return queue

    def delete_queue(self, name: str) -> None:
        """Delete a queue and every message in it."""
        arguments.text(name, "The queue name")
        core = self._core

        def delete(txn: Any, now_ms: int) -> int:
            raw = txn.get(_queue_key(name), db=self._storage.tables.meta)
            if raw is None:
                raise QueueDoesNotExist(f"The specified queue does not exist: {name}")
            definition = msgpack.unpackb(raw)
            if definition["attributes"].get("FifoQueue") == "true":
                _core_fifo.drop(core, txn, self._storage.tables, definition["id"])
            else:
                core.drop(txn, self._storage.tables, definition["id"])
            txn.delete(_queue_key(name), db=self._storage.tables.meta)
            txn.delete(purged_key(definition["id"]), db=self._storage.tables.meta)
            if not _may_have_dead_lettered(definition):  # a temporary queue leaves nothing
                txn.delete(_name_key(definition["id"]), db=self._storage.tables.meta)
            self._move_tasks.forget_queue(txn, definition["id"])
            _bump_definitions_version(txn, self._storage.tables.meta)
            return int(definition["id"])

        queue_id = self._storage.write(delete)
        with self._lock:
            self._queues.pop(name, None)
            self._queues_token = object()
        # Long polls on it end (with QueueDoesNotExist), in every process: the deleted queue's
        # id, not a cached object's (this process may never have looked the queue up).
        self._wakeups.notify(queue_id)
        self._wakeups.forget(queue_id)

    def list_queues(self, prefix: str = "") -> list[str]:
        """Names of the queues whose name starts with ``prefix``, sorted."""
        return self._queue_names(prefix)

    def _queue_names(self, prefix: str, after: str = "", limit: int | None = None) -> list[str]:
        """Names of the queues that start with ``prefix`` and sort after ``after``, sorted, at
        most ``limit`` (a ListQueues page): only those are read, not every queue's."""
        prefix = arguments.text(prefix, "QueueNamePrefix")
        meta = self._storage.tables.meta
        return self._storage.read(
            lambda txn: key_names_after(txn, meta, b"q:", prefix, after, limit)
        )

    def list_dead_letter_source_queues(self, name: str) -> list[str]:
        """Names of the queues whose RedrivePolicy targets queue ``name``."""
        target = self.queue(name).arn

        def scan(txn: Any) -> list[str]:
            sources = []
            with txn.cursor(db=self._storage.tables.meta) as cur:
                if cur.set_range(b"q:"):
                    for key, value in cur:
                        if not key.startswith(b"q:"):
                            break
                        policy = dead_letters.redrive_policy(msgpack.unpackb(value)["attributes"])
                        if policy is not None and policy.target_arn == target:
                            sources.append(key[2:].decode())
            return sources

        return self._storage.read(scan)

    def start_message_move_task(
        self,
        source_arn: str,
        destination_arn: str | None = None,
        max_messages_per_second: int | None = None,
    ) -> str:
        """Move the messages of a dead-letter queue back; returns the task handle.

        Args:
            source_arn: ARN of a dead-letter queue (some queue's RedrivePolicy targets it).
            destination_arn: where to move them; None sends each message back to the queue it
                was dead-lettered from.
            max_messages_per_second: 1-500; None moves as fast as the store allows.
        """
        return self._move_tasks.start(source_arn, destination_arn, max_messages_per_second)

    def list_message_move_tasks(
        self, source_arn: str, max_results: int = 1
    ) -> list[dict[str, Any]]:
        """The move tasks of a source queue, newest first, with status and counts (SQS shape)."""
        return self._move_tasks.list(source_arn, max_results)

    def cancel_message_move_task(self, task_handle: str) -> int:
        """Stop a running move task; returns how many messages it had moved."""
        return self._move_tasks.cancel(task_handle)

    # -- topics (SNS) ---------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Topic:
        """Create an SNS-style topic, or return the existing one (see millpond.topic)."""
        return self._topics.create(name, attributes, tags)

    def topic(self, name: str) -> Topic:
        """The existing topic ``name``; raises TopicNotFound."""
        return self._topics.get(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its subscriptions (idempotent, as SNS)."""
        self._topics.delete(name)

    def list_topics(self) -> list[str]:
        """Names of all topics, sorted."""
        return self._topics.list()

    def subscription(self, arn: str) -> Subscription:
        """The subscription with this ARN (of any topic); raises TopicNotFound."""
        return self._topics.subscription(arn)

    def list_subscriptions(self) -> list[Subscription]:
        """Every subscription of every topic (SNS ListSubscriptions)."""
        return self._topics.list_subscriptions()

    def _update_queue(
        self, queue: Queue, changes: dict[str, str], messages_change: Any = None
    ) -> None:
        """Store attribute changes; ``messages_change(txn, tables, queue_id, now_ms)``, when
        given, updates the queue's stored messages in the same write."""
        if "RedrivePolicy" in changes:
            dead_letters.check_redrive_policy(self, queue.name, {**queue._attributes, **changes})

        def change(definition: dict[str, Any], now_ms: int) -> None:
            if "MessageRetentionPeriod" in changes:
                queue_attributes.record_expired(definition, now_ms)
            merged = {**definition["attributes"], **changes}
            if merged.get("FifoQueue") == "true":
                # against the stored attributes, in the write: this process's copy may not
                # have another process's change yet
                queue_attributes.check_fifo_throughput(merged)
            definition["attributes"] = merged
            definition["modified"] = now_ms // 1000
            if changes.get("RedrivePolicy"):  # its dead letters name it, also once it is gone
                definition["dead_letters"] = True

        self._update_definition(queue, change, messages_change)

    def _update_definition(
        self, queue: Queue, change: Any, messages_change: Any = None
    ) -> dict[str, Any]:
        """Apply ``change(definition, now_ms)`` to the stored definition and the cached queue
        (and ``messages_change``, as in _update_queue, in the same transaction)."""

        def update(txn: Any, now_ms: int) -> dict[str, Any]:
            tables = self._storage.tables
            raw = txn.get(_queue_key(queue.name), db=tables.meta)
            if raw is None or msgpack.unpackb(raw)["id"] != queue.queue_id:
                raise QueueDoesNotExist(f"The specified queue does not exist: {queue.name}")
            definition: dict[str, Any] = msgpack.unpackb(raw)
            change(definition, now_ms)
            txn.put(_queue_key(queue.name), msgpack.packb(definition), db=tables.meta)
            _bump_definitions_version(txn, tables.meta)
            if messages_change is not None:
                messages_change(txn, tables, queue.queue_id, now_ms)
            # The cached copy follows the commits in their order: set by each caller after
            # its commit, concurrent changes could leave it on an older one than the stored.
            self._storage.after_commit(functools.partial(self._apply_definition, queue, definition))
            return definition

        definition: dict[str, Any] = self._storage.write(update)
        return definition

    def _apply_definition(self, queue: Queue, definition: dict[str, Any]) -> None:
        """A changed definition onto the cached ``queue`` (after its commit)."""
        queue._apply_definition(definition)
        self._queues_token = object()

    # -- lifecycle -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._storage.durability
        return f"<millpond.Broker {self._storage.path!r} ({state}, {self.region})>"

    def backup(self, destination: str | os.PathLike[str]) -> None:
        """Copy this data directory to ``destination`` (missing or empty) while it stays in
        use: a consistent snapshot of one moment, compacted, on disk when this returns. Open
        the copy with :func:`millpond.open` to restore it. (``millpond backup`` does the same
        from another process.)"""
        from millpond import admin

        admin.copy_store(self._storage, os.fspath(destination))

    def close(self) -> None:
        """Finish in-flight writes, flush, and close the data directory.

        Calls from several threads at once close it once: the others return when it is closed
        (each closer would otherwise flush and close an environment another one just closed).
        """
        with self._close_lock:
            if self._closed:
                return
            self._move_tasks.close()
            # a ManualClock outlives the brokers of a test session: it would keep them all
            self.clock.off_advance(self._wakeups.notify_everyone)
            self._storage.close()
            self._wakeups.close()
            self._closed = True

    def __enter__(self) -> Broker:
        return self

    def __reduce__(self) -> Any:
        raise not_picklable("Broker")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _bump_definitions_version(txn: Any, meta: Any) -> None:
    version = int(txn.get(_DEFINITIONS_VERSION_KEY, b"0", db=meta)) + 1
    txn.put(_DEFINITIONS_VERSION_KEY, str(version).encode(), db=meta)


def _load_identity(txn: Any, now_ms: int) -> tuple[int, bytes]:
    """(env_id, secret) of the data directory, made on first open.

    env_id makes message ids unique across data directories; the secret keys the receipt-handle
    check so a forged or mistyped handle is told apart from the handle of a deleted message.
    """
    raw = txn.get(_ENV_KEY)
    if raw is None:
        env_id, secret = secrets.randbits(32), secrets.token_bytes(16)
        identity = {"env_id": env_id, "secret": secret, "format": DATA_FORMAT}
        txn.put(_ENV_KEY, msgpack.packb(identity))
        return env_id, secret
    try:
        stored = msgpack.unpackb(raw)
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or {"env_id", "secret"} - stored.keys():
        raise IncompatibleDataFormat(
            "the data directory's identity record is unreadable: not a millpond directory "
            "this version can use"
        )
    if stored.get("format") != DATA_FORMAT:
        raise IncompatibleDataFormat(
            f"the data directory has storage format {stored.get('format')}; this "
            f"millpond reads format {DATA_FORMAT} only (where a message sent without a "
            "delay is stored in the log alone): drain it with the millpond that wrote it, "
            "or use a new directory"
        )
    return stored["env_id"], stored["secret"]


def open(  # noqa: A001 - millpond.open mirrors the built-in on purpose
    path: str | os.PathLike[str],
    durability: str = "fsync",
    clock: Clock | None = None,
    **options: Any,
) -> Broker:
    """Open (creating if needed) the data directory at ``path``.

    Args:
        path: a directory; several processes may open the same one.
        durability: "fsync" (default): an acknowledged write is on disk and survives power
            loss. "os": it survives a crash of the process but not of the machine.
        clock: a :class:`millpond.ManualClock` for tests; the system clock by default.
        **options: region, account_id (used in ARNs), map_size, max_map_size, reserve (bytes),
            disk_reserve (bytes of disk kept allocated so that a full disk can be drained; 0
            keeps none), core ("c" or "py" to force an implementation).
    """
    return Broker(path, durability=durability, clock=clock, **options)

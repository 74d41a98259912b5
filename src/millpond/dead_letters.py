"""Dead-letter queues: redrive policies, who may use a queue as one, and message move tasks.

A receive that would push a message past its queue's ``maxReceiveCount`` moves it to the
dead-letter queue in the same write transaction (see Queue.receive), so it is never lost and
never in both queues. A message move task (SQS StartMessageMoveTask) moves dead-lettered
messages back, in batches of one transaction each; the task's progress is stored in the same
transaction as the messages it moved, so a restart resumes it without loss or duplicates.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from millpond import _core_fifo
from millpond.errors import (
    InvalidAttributeValue,
    InvalidParameterValue,
    MillpondError,
    QueueDoesNotExist,
    ResourceNotFound,
)

if TYPE_CHECKING:
    from millpond.broker import Broker
    from millpond.queue import Queue

_TASK_PREFIX = b"task:"
_OLD_HANDLE = re.compile(r"[A-Za-z0-9_-]{32}")  # handles of earlier versions: 24 random bytes
MOVE_BATCH = 10  # messages per transaction of a move task
# Every process with the data directory open has a thread per running task (the task goes on
# if the process that started it ends); the one holding a task's lease moves its messages,
# renewing the lease at each step, and another takes over once a lease runs out unrenewed.
LEASE_S = 10.0
# How often a process waiting on another's lease looks again: the holder gives its leases up
# when it closes, and the task must go on then, not when the lease would have run out.
LEASE_CHECK_S = 1.0
MAX_RATE = 500  # SQS's limit for MaxNumberOfMessagesPerSecond
KEPT_TASKS = 10  # "the most recent message movement tasks (up to 10)" of a source queue


@dataclass(frozen=True)
class RedrivePolicy:
    target_name: str
    target_arn: str
    max_receive_count: int


def parse_arn(arn: str, service: str = "sqs") -> tuple[str, str, str] | None:
    """(region, account, name) of ``arn:aws:<service>:<region>:<account>:<name>``, else None."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[:3] != ["arn", "aws", service] or not parts[5]:
        return None
    return parts[3], parts[4], parts[5]


def redrive_policy(attributes: dict[str, str]) -> RedrivePolicy | None:
    """The queue's RedrivePolicy, already validated when it was set; None if it has none."""
    text = attributes.get("RedrivePolicy")
    if not text:
        return None
    policy = json.loads(text)
    arn = policy["deadLetterTargetArn"]
    parsed = parse_arn(arn)
    assert parsed is not None  # checked by check_redrive_policy
    return RedrivePolicy(parsed[2], arn, int(policy["maxReceiveCount"]))


def check_redrive_policy(broker: Broker, source_name: str, attributes: dict[str, str]) -> None:
    """Refuse a RedrivePolicy whose target is missing, of the other queue type, or unwilling
    (SQS's InvalidParameterValue, echoing the policy)."""
    text = attributes.get("RedrivePolicy")
    if not text:
        return
    arn = json.loads(text)["deadLetterTargetArn"]
    parsed = parse_arn(arn)
    if parsed is None or parsed[:2] != (broker.region, broker.account_id):
        raise InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Invalid value for "
            "deadLetterTargetArn."
        )
    definition = broker._definition(parsed[2])
    if definition is None:
        raise InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Dead letter target "
            "does not exist."
        )
    if parsed[2] == source_name:
        raise InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: A queue cannot be "
            "its own dead-letter queue."
        )
    target_attrs = definition["attributes"]
    if (target_attrs.get("FifoQueue") == "true") != (attributes.get("FifoQueue") == "true"):
        raise InvalidParameterValue(  # AWS's words, its two full stops included
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue "
            "must be same type of queue as the source.."
        )
    allow = target_attrs.get("RedriveAllowPolicy")
    if allow:
        rule = json.loads(allow)
        permission = rule.get("redrivePermission", "allowAll")
        sources = rule.get("sourceQueueArns", [])
        if permission == "denyAll" or (
            permission == "byQueue" and broker.arn("sqs", source_name) not in sources
        ):
            raise InvalidParameterValue(
                f"Value {text} for parameter RedrivePolicy is invalid. Reason: The "
                "RedriveAllowPolicy of the dead-letter target does not allow this queue to use "
                "it as a dead-letter queue."
            )


def check_redrive_allow_policy(value: str) -> None:
    """Shape of RedriveAllowPolicy: allowAll | denyAll | byQueue with 1-10 source ARNs."""
    rule = json.loads(value)
    permission = rule.get("redrivePermission")
    sources = rule.get("sourceQueueArns")
    if permission not in ("allowAll", "denyAll", "byQueue"):
        raise InvalidAttributeValue(
            "Value for parameter RedriveAllowPolicy is invalid. Reason: redrivePermission must "
            "be allowAll, denyAll or byQueue."
        )
    if permission == "byQueue":
        if not isinstance(sources, list) or not 1 <= len(sources) <= 10:
            raise InvalidAttributeValue(
                "Value for parameter RedriveAllowPolicy is invalid. Reason: byQueue needs 1 to "
                "10 sourceQueueArns."
            )
    elif sources:
        raise InvalidAttributeValue(
            "Value for parameter RedriveAllowPolicy is invalid. Reason: sourceQueueArns is only "
            "allowed with redrivePermission byQueue."
        )


# -- message move tasks ----------------------------------------------------------------------


class MoveTasks:
    """The message move tasks of a broker; each RUNNING task has one thread moving its batches."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._storage = broker._storage
        self._threads: dict[str, threading.Thread] = {}
        self._wakes: dict[str, threading.Event] = {}  # a task's pause ends early on cancel
        self._stop = threading.Event()
        self._owner = uuid.uuid4().hex  # this broker's name in the tasks' leases

    def _load(self, txn: Any, handle: str) -> dict[str, Any] | None:
        raw = txn.get(_TASK_PREFIX + handle.encode(), db=self._storage.tables.meta)
        return None if raw is None else msgpack.unpackb(raw)

    def _save(self, txn: Any, task: dict[str, Any]) -> None:
        txn.put(
            _TASK_PREFIX + task["handle"].encode(),
            msgpack.packb(task),
            db=self._storage.tables.meta,
        )

    def start(
        self, source_arn: str, destination_arn: str | None, max_per_second: int | None
    ) -> str:
        broker = self._broker
        source = self._queue_of(source_arn, "SourceArn")
        if not broker.list_dead_letter_source_queues(source.name):
            # AWS's text, without the usual "Value ... for parameter ..." preamble
            raise InvalidParameterValue("Source queue must be configured as a Dead Letter Queue.")
        destination = self._queue_of(destination_arn, "DestinationArn") if destination_arn else None
        fifo = source.name.endswith(".fifo")  # only FIFO queue names may end so
        if destination is not None and destination.name.endswith(".fifo") != fifo:
            # "if the dead-letter queue is a FIFO queue, the redrive destination queue must be a
            # FIFO queue as well" (SQS Developer Guide; AWS's error text is not recorded)
            raise InvalidParameterValue(
                "The destination queue must be of the same type as the source queue (both FIFO "
                "or both standard)."
            )
        if max_per_second is not None and (
            type(max_per_second) is not int or not 1 <= max_per_second <= MAX_RATE
        ):
            raise InvalidParameterValue(
                f"Value {max_per_second} for parameter MaxNumberOfMessagesPerSecond is invalid. "
                f"Reason: must be between 1 and {MAX_RATE}."
            )
        to_move = int(
            source.get_attributes(["ApproximateNumberOfMessages"])["ApproximateNumberOfMessages"]
        )
        handle = _new_handle(source.arn)

        def start(txn: Any, now_ms: int) -> None:
            earlier = [t for t in self._tasks(txn) if t["source_arn"] == source.arn]
            for task in earlier:
                active = task["status"] in ("RUNNING", "CANCELLING")
                if active and _on_queue(task, "source", source):
                    raise InvalidParameterValue(
                        "There is already a task running. Only one active task is allowed for a "
                        "source queue arn at a given time."
                    )
            self._forget_beyond(txn, earlier, KEPT_TASKS - 1)
            self._save(
                txn,
                {
                    "handle": handle,
                    "number": 1 + max((t.get("number", 0) for t in earlier), default=0),
                    "source": source.name,
                    "source_id": source.queue_id,
                    "source_arn": source.arn,
                    "destination": destination.name if destination else None,
                    "destination_id": destination.queue_id if destination else None,
                    "destination_arn": destination.arn if destination else None,
                    "rate": max_per_second,
                    "status": "RUNNING",
                    "moved": 0,
                    "to_move": to_move,
                    "started": now_ms,
                    "failure": None,
                },
            )
            # the other processes with the directory open wait on the task from now on, and
            # take it over if this one goes away (see _step's lease)
            self._broker._definitions_changed(txn)

        self._storage.write(start)
        self._spawn(handle)
        return handle

    def _forget_beyond(self, txn: Any, tasks: builtins.list[dict[str, Any]], kept: int) -> None:
        """Delete the finished ``tasks`` older than the ``kept`` most recent: ListMessageMoveTasks
        shows no more than KEPT_TASKS, and every start and list reads all that are stored."""
        for task in _newest_first(tasks)[kept:]:
            if task["status"] not in ("RUNNING", "CANCELLING"):
                txn.delete(_TASK_PREFIX + task["handle"].encode(), db=self._storage.tables.meta)

    def forget_queue(self, txn: Any, queue_id: int) -> None:
        """Delete the task records of a queue being deleted (caller holds the write txn): kept,
        they piled up with every deleted dead-letter queue, and a new queue of the same name (so
        the same ARN) listed them as its own. A running one ends at its next step."""
        for task in self._tasks(txn):
            if task.get("source_id") == queue_id:
                txn.delete(_TASK_PREFIX + task["handle"].encode(), db=self._storage.tables.meta)

    def _queue_of(self, arn: str, parameter: str) -> Any:
        parsed = parse_arn(arn)
        broker = self._broker
        if parsed is None or parsed[:2] != (broker.region, broker.account_id):
            raise ResourceNotFound(
                f"The resource that you specified for the {parameter} parameter doesn't exist."
            )
        try:
            return broker.queue(parsed[2])
        except LookupError:
            raise ResourceNotFound(
                f"The resource that you specified for the {parameter} parameter doesn't exist."
            ) from None

    def _tasks(self, txn: Any) -> list[dict[str, Any]]:
        tasks = []
        with txn.cursor(db=self._storage.tables.meta) as cur:
            if cur.set_range(_TASK_PREFIX):
                for key, value in cur:
                    if not key.startswith(_TASK_PREFIX):
                        break
                    tasks.append(msgpack.unpackb(value))
        return tasks

    def list(self, source_arn: str, max_results: int = 1) -> list[dict[str, Any]]:
        """Tasks of a source queue, newest first, in the SQS ListMessageMoveTasks shape."""
        self._queue_of(source_arn, "SourceArn")
        if type(max_results) is not int or not 1 <= max_results <= 10:
            raise InvalidParameterValue(
                f"Value {max_results} for parameter MaxResults is invalid. Reason: must be "
                "between 1 and 10."
            )
        tasks = [t for t in self._storage.read(self._tasks) if t["source_arn"] == source_arn]
        return [_public(t) for t in _newest_first(tasks)[:max_results]]

    def cancel(self, handle: str) -> int:
        """Cancel a RUNNING task; returns how many messages it had moved."""

        if not (isinstance(handle, str) and _OLD_HANDLE.fullmatch(handle)):
            source_arn = handle_source(handle)
            if source_arn is None:
                raise InvalidParameterValue("Value for parameter TaskHandle is invalid.")
            self._queue_of(source_arn, "SourceArn")  # as AWS: a missing source before the task

        def cancel(txn: Any, now_ms: int) -> int:
            task = self._load(txn, handle)
            if task is None:
                raise ResourceNotFound("Task does not exist.")
            if task["status"] != "RUNNING":
                raise InvalidParameterValue("Only active tasks can be cancelled.")
            task["status"] = "CANCELLING"
            self._save(txn, task)
            return int(task["moved"])

        moved: int = self._storage.write(cancel)
        wake = self._wakes.get(handle)
        if wake is not None:
            wake.set()  # a rate-limited task notices at once, not after its pause
        return moved

    def resume(self) -> None:
        """Start a thread for every task left RUNNING or CANCELLING by an earlier process."""
        for task in self._storage.read(self._tasks):
            if task["status"] in ("RUNNING", "CANCELLING"):
                self._spawn(task["handle"])

    def _spawn(self, handle: str) -> None:
        running = self._threads.get(handle)
        if running is not None and running.is_alive():
            return  # one thread per task in a process
        self._wakes[handle] = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(handle,), daemon=True, name=f"millpond-move-{handle[:8]}"
        )
        self._threads[handle] = thread
        thread.start()

    def _run(self, handle: str) -> None:
        try:
            while not self._stop.is_set():
                pause_s, targets = self._storage.write(
                    lambda txn, now_ms: self._step(txn, now_ms, handle),
                    atomic=True,  # a queue gone mid-step undoes the step's moves so far
                )
                for queue_id in targets:
                    self._broker._wakeups.notify(queue_id)
                if pause_s is None:
                    return
                if pause_s:
                    self._wakes[handle].wait(pause_s)
        except Exception as exc:  # the task fails visibly, it does not vanish
            # SQS reports its error code (AWS.SimpleQueueService.NonExistentQueue, say)
            reason = exc.code if isinstance(exc, MillpondError) else f"{type(exc).__name__}: {exc}"
            self._storage.write(lambda txn, now_ms: self._fail(txn, handle, reason))
        finally:
            self._forget_thread(handle)

    def _forget_thread(self, handle: str) -> None:
        """Drop an ended task's thread and wake-up event: a broker that runs for days runs
        ever new tasks, and kept them all."""
        if self._threads.get(handle) is threading.current_thread():
            del self._threads[handle]
            self._wakes.pop(handle, None)

    def _fail(self, txn: Any, handle: str, reason: str) -> None:
        task = self._load(txn, handle)
        if task is not None:
            task["status"], task["failure"] = "FAILED", reason
            self._save(txn, task)

    def _step(self, txn: Any, now_ms: int, handle: str) -> tuple[float | None, builtins.list[int]]:
        """Move one batch and record it, in the caller's transaction.

        Returns (seconds to pause before the next step, target queue ids); None when the task
        is over. While another process holds the task's lease, nothing moves here and the pause
        lasts until that lease would run out, LEASE_CHECK_S at most (it may be given up).
        """
        task = self._load(txn, handle)
        if task is None or task["status"] not in ("RUNNING", "CANCELLING"):
            return None, []
        if task["status"] == "CANCELLING":
            task["status"] = "CANCELLED"
            self._save(txn, task)
            return None, []
        wall = time.time()  # leases are shared across processes: not the broker's clock
        held_until = task.get("lease_until", 0.0)
        if task.get("owner", self._owner) != self._owner and held_until > wall:
            return min(held_until - wall, LEASE_CHECK_S), []
        task["owner"], task["lease_until"] = self._owner, wall + LEASE_S
        broker, core, tables = self._broker, self._broker._core, self._storage.tables
        source = _task_queue(broker, txn, task, "source")
        if source is None:
            raise QueueDoesNotExist(f"source queue {task['source']} was deleted")
        limit = min(MOVE_BATCH, task["rate"] or MOVE_BATCH, task["to_move"] - task["moved"])
        destination = task["destination"]
        # FIFO dead-letter queues keep their own layout; same verbs, same shapes.
        fifo = source["attributes"].get("FifoQueue") == "true"
        layout = _core_fifo if fifo else core
        # what is past the source's retention is never delivered, so never moved either
        from millpond import queue_attributes as attrs  # (it imports this module)

        retention_ms = int(attrs.effective(source["attributes"])["MessageRetentionPeriod"]) * 1000
        expired_before_ms = source.get(attrs.EXPIRED_BEFORE, 0)
        cutoff_ms = attrs.retention_cutoff_ms(now_ms, retention_ms, expired_before_ms)
        picked = (
            layout.peek(txn, tables, source["id"], now_ms, limit, destination is None, cutoff_ms)
            if limit > 0
            else []
        )
        moved = 0
        targets = _by_target(picked, broker, txn, task)
        # A redrive: the messages get new ids and their retention restarts (both moves).
        for target_id, entries in targets.items():
            try:
                if fifo:  # a FIFO move stamps the records anew: it needs the core's codec
                    moved += _core_fifo.move(
                        txn, tables, source["id"], now_ms, entries, target_id, False, core
                    )
                else:
                    moved += core.move(txn, tables, source["id"], now_ms, entries, target_id, False)
            except LookupError:  # the core's word for a queue id that no longer exists
                raise QueueDoesNotExist("the queue a message goes back to was deleted") from None
        task["moved"] += moved
        if moved == 0:
            task["status"] = "COMPLETED"
        self._save(txn, task)
        if not moved:
            return None, []
        return (moved / task["rate"] if task["rate"] else 0.0), list(targets)

    def close(self) -> None:
        self._stop.set()
        for wake in list(self._wakes.values()):  # (ending threads drop theirs meanwhile)
            wake.set()
        threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout=5)
        if threads:
            self._release_leases()

    def _release_leases(self) -> None:
        """Give up this broker's leases, so that another process goes on at once."""

        def release(txn: Any, now_ms: int) -> None:
            for task in self._tasks(txn):
                if task.get("owner") == self._owner and task["status"] == "RUNNING":
                    task["lease_until"] = 0.0
                    self._save(txn, task)

        try:
            self._storage.write(release)
        except MillpondError:  # closed or broken already: the lease runs out by itself
            pass


def _newest_first(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A source queue's tasks, the most recently started first. Start times alone do not order
    them: two tasks may start in the same millisecond (always so under a ManualClock), so each
    task has its number in its source's sequence (none for tasks of earlier versions: 0)."""
    return sorted(tasks, key=lambda t: (t.get("number", 0), t["started"]), reverse=True)


def _on_queue(task: dict[str, Any], role: str, queue: Queue) -> bool:
    """Whether the task's ``role`` ("source" or "destination") is ``queue``: the same name and,
    for tasks that record it (all but those of earlier versions), the same queue id. A queue
    deleted and created again under its name is another queue, which its tasks never touch."""
    return bool(
        task[role] == queue.name and task.get(f"{role}_id", queue.queue_id) == queue.queue_id
    )


def _task_queue(broker: Broker, txn: Any, task: dict[str, Any], role: str) -> Any:
    """The definition of the task's ``role`` queue, or None if that queue was deleted (even if
    another queue has its name now)."""
    definition = broker._definition_in(txn, task[role])
    if definition is None or task.get(f"{role}_id", definition["id"]) != definition["id"]:
        return None
    return definition


def _by_target(
    picked: list[tuple[int, int, int]], broker: Broker, txn: Any, task: dict[str, Any]
) -> dict[int, list[tuple[int, int]]]:
    """Group (seq, visible_at) by the queue each message goes to."""
    destination = task["destination"]
    if destination is not None:
        target = _task_queue(broker, txn, task, "destination")
        if target is None:
            raise QueueDoesNotExist(f"destination queue {destination} was deleted")
        return {target["id"]: [(seq, at) for seq, at, _ in picked]} if picked else {}
    # back to each message's source queue: by its ARN, as SQS (a source deleted and created
    # again under its name gets its dead letters back; one deleted for good fails the task)
    current = {source_id: broker._current_id_in(txn, source_id) for _, _, source_id in picked}
    groups: dict[int, list[tuple[int, int]]] = {}
    for seq, at, source_id in picked:
        groups.setdefault(current[source_id], []).append((seq, at))
    return groups


def _new_handle(source_arn: str) -> str:
    """A task handle shaped as AWS's: base64 of {"taskId": a UUID, "sourceArn": the source}."""
    doc = {"taskId": str(uuid.uuid4()), "sourceArn": source_arn}
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def handle_source(handle: Any) -> str | None:
    """The source queue ARN named in a task handle of AWS's shape; None if it is not one."""
    try:
        doc = json.loads(base64.b64decode(handle, validate=True))
    except (TypeError, ValueError, binascii.Error):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("taskId"), str):
        return None
    source = doc.get("sourceArn")
    return source if isinstance(source, str) else None


def _public(task: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "SourceArn": task["source_arn"],
        "Status": task["status"],
        "ApproximateNumberOfMessagesMoved": task["moved"],
        "ApproximateNumberOfMessagesToMove": task["to_move"],
        "StartedTimestamp": task["started"],
    }
    if task["status"] == "RUNNING":
        out["TaskHandle"] = task["handle"]
    if task["destination_arn"]:
        out["DestinationArn"] = task["destination_arn"]
    if task["rate"]:
        out["MaxNumberOfMessagesPerSecond"] = task["rate"]
    if task["failure"]:
        out["FailureReason"] = task["failure"]
    return out

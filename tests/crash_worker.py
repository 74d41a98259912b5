"""Crash-test worker for tests/test_durability.py: writes under load until it is SIGKILLed.

    python tests/crash_worker.py <data-dir> <log-file> <impl> [--durability fsync|os] [--threads N]
    python tests/crash_worker.py --hold <data-dir> <impl>

The first form opens the data directory, creates the queue "crash", prints "ready" and then lets
N threads send (single and batch), receive and delete, and one more thread scan the tables in
read transactions, until the process is killed. Each step is appended to the log file as whole
lines, written with one write() and fsynced:

    S? <body>               before a send is attempted
    S <message_id> <body>   after the send was acknowledged
    D? <message_id>         before a delete is attempted
    D <message_id>          after the delete was acknowledged

so the log is a lower bound of what was acknowledged and an upper bound of what was attempted.
Any unexpected error ends the process with exit status 3 and a traceback on stderr.

The second form opens the data directory, prints "ready" and keeps it open until its stdin is
closed, so that the LMDB lock table outlives a killed worker (stale reader slots, a dead owner
of the write lock) and the next open has to clean up after it.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import threading
import traceback
from collections.abc import Callable

import millpond

QUEUE = "crash"


class Log:
    """Appends whole lines to the history file; each call is one write() plus an fsync."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        # O_APPEND + one write: lines of concurrent threads never interleave.
        written = os.write(self._fd, data)
        if written != len(data):
            raise OSError(f"short write to the history log ({written} of {len(data)} bytes)")
        os.fsync(self._fd)


def work(broker: millpond.Broker, queue: millpond.Queue, log: Log, run: str, thread: int) -> None:
    rng = random.Random()
    n = 0

    def next_body() -> str:
        nonlocal n
        n += 1
        return f"{run}-{thread}-{n}"

    while True:
        r = rng.random()
        if r < 0.4:
            body = next_body()
            attributes = None
            if rng.random() < 0.3:
                attributes = {"n": {"DataType": "Number", "StringValue": str(n)}}
            log([f"S? {body}"])
            message_id = queue.send(
                body, delay_seconds=rng.choice((0, 0, 0, 1, 5)), attributes=attributes
            )
            log([f"S {message_id} {body}"])
        elif r < 0.65:
            bodies = [next_body() for _ in range(rng.randint(2, 10))]
            log([f"S? {body}" for body in bodies])
            ids = queue.send_batch(bodies)
            log([f"S {message_id} {body}" for message_id, body in zip(ids, bodies, strict=True)])
        elif r < 0.95:
            messages = queue.receive(10, visibility_timeout=30, wait_seconds=0)
            doomed = [m for m in messages if rng.random() < 0.7]
            if not doomed:
                continue
            log([f"D? {m.message_id}" for m in doomed])
            if len(doomed) == 1:
                queue.delete(doomed[0].receipt_handle)
            else:
                queue.delete_batch([m.receipt_handle for m in doomed])
            log([f"D {m.message_id}" for m in doomed])
        elif QUEUE not in broker.list_queues():
            raise AssertionError("the queue disappeared")


def read(broker: millpond.Broker) -> None:
    """Scans the tables in read snapshots, back to back: a kill leaves a reader slot behind."""
    storage = broker._storage

    def scan(txn: object) -> int:
        n = 0
        for name in ("log", "vis"):
            with txn.cursor(db=getattr(storage.tables, name)) as cur:  # type: ignore[attr-defined]
                n += sum(1 for _ in cur.iternext(values=False))
        return n

    while True:
        storage.read(scan)


def guarded(fn: Callable[..., None], *args: object) -> None:
    try:
        fn(*args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", action="store_true", help="only keep the directory open")
    parser.add_argument("--durability", default="fsync", choices=("fsync", "os"))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)

    if args.hold:
        data_dir, impl = args.paths
        broker = millpond.open(data_dir, durability=args.durability, core=impl)
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        broker.close()
        return

    data_dir, log_path, impl = args.paths
    broker = millpond.open(data_dir, durability=args.durability, core=impl)
    queue = broker.create_queue(QUEUE)
    log = Log(log_path)
    run = secrets.token_hex(4)
    threads = [
        threading.Thread(target=guarded, args=(work, broker, queue, log, run, t), daemon=True)
        for t in range(args.threads)
    ]
    threads.append(threading.Thread(target=guarded, args=(read, broker), daemon=True))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()  # the workers loop until the process is killed


if __name__ == "__main__":
    guarded(main, sys.argv[1:])

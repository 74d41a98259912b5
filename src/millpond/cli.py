"""The ``millpond`` command.

    millpond demo [--data DIR] [--messages N] [--durability fsync|os]
    millpond serve [--config millpond.toml] [--data DIR] [--host 127.0.0.1] [--port 9324]
                   [--native-port 9325]

``demo`` is the main job on an embedded broker: it sends, receives and deletes messages in a
data directory (default ``./millpond-data``, or $MILLPOND_DATA) and prints what it did and how
fast, checking that every message sent came back exactly once.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import millpond
from millpond import admin
from millpond.errors import MillpondError

DEFAULT_DATA_DIR = "./millpond-data"
MAX_BODY_SIZE = 1048576  # a queue's MaximumMessageSize: the default, and the most it may be
MAX_BATCH_SIZE = 1048576  # bytes of one send_batch, as SQS


def _default_data_dir() -> str:
    # MILLPOND_DATA= (set but empty, as shells and compose files unset it) means the default too
    return os.environ.get("MILLPOND_DATA") or DEFAULT_DATA_DIR


def _timed(label: str, count: int, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    print(f"  {label:<44} {count:>7} msgs in {elapsed:7.3f} s = {count / elapsed:>9,.0f} msgs/s")


def demo(data: str, messages: int, durability: str, threads: int, body_size: int) -> int:
    body = b"x" * body_size
    with millpond.open(data, durability=durability) as broker:
        print(
            f"millpond {millpond.__version__}: data directory {os.path.abspath(data)}, "
            f'durability "{durability}", core "{broker.implementation}"'
        )
        name = "demo"
        if name in broker.list_queues(name):
            broker.delete_queue(name)  # start clean: a previous run may have been interrupted
        queue = broker.create_queue(name)
        sent: set[str] = set()

        # a batch holds 10 messages and 1 MiB at most (SQS's limits): fewer of large bodies
        per_batch = min(10, MAX_BATCH_SIZE // body_size)

        def send_batches() -> None:
            for start in range(0, messages, per_batch):
                n = min(per_batch, messages - start)
                sent.update(queue.send_batch([body] * n))

        def send_singles_from_threads() -> None:
            per_thread = messages // threads

            def worker() -> None:
                ids = [queue.send(body) for _ in range(per_thread)]
                with lock:
                    sent.update(ids)

            workers = [threading.Thread(target=worker) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

        received: list[str] = []

        def receive_and_delete() -> None:
            while True:
                batch = queue.receive(10)
                if not batch:
                    return
                queue.delete_batch([m.receipt_handle for m in batch])
                received.extend(m.message_id for m in batch)

        lock = threading.Lock()
        print(f"queue {name!r} ({queue.arn}), {body_size}-byte bodies:")
        _timed(f"send, batches of {per_batch}", messages, send_batches)
        commits_before = broker._storage.commits
        _timed(
            f"send, 1 per call from {threads} threads",
            messages // threads * threads,
            send_singles_from_threads,
        )
        commits = broker._storage.commits - commits_before
        total = messages + messages // threads * threads
        _timed("receive 10 + delete_batch 10", total, receive_and_delete)
        left = queue.get_attributes()["ApproximateNumberOfMessages"]
        print(
            f"  group commit: {messages // threads * threads} threaded sends shared "
            f"{commits} write transactions"
        )
        ok = len(received) == len(set(received)) and set(received) == sent and left == "0"
        print(
            f"sent {len(sent)}, received and deleted {len(received)} "
            f"({len(set(received))} distinct), left in queue {left}: "
            + ("every message exactly once" if ok else "MISMATCH")
        )
        return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="millpond", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"millpond {millpond.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("demo", help="send, receive and delete messages; print the rates")
    d.add_argument("--data", default=_default_data_dir())
    d.add_argument("--messages", type=_positive, default=5000)
    d.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    d.add_argument("--threads", type=_positive, default=8)
    d.add_argument("--body-size", type=_body_size, default=100)
    sv = commands.add_parser("serve", help="run the daemon speaking the SQS and SNS APIs")
    sv.add_argument("--config", help="TOML file: [server] settings, predefined queues/topics")
    sv.add_argument(
        "--data",
        default=None,
        help=f"data directory (default $MILLPOND_DATA or {DEFAULT_DATA_DIR})",
    )
    sv.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=None, help="port (default 9324)")
    sv.add_argument(
        "--native-port",
        type=_port,
        default=None,
        help="also serve millpond's native protocol on this port (off unless given; 9325 usual)",
    )
    sv.add_argument("--durability", choices=("fsync", "os"), default=None)
    sv.add_argument("--region", type=_region, default=None, help="default region (us-east-1)")
    sv.add_argument(
        "--account-id", type=_account_id, default=None, help="account id in URLs and ARNs"
    )
    sv.add_argument(
        "--max-regions",
        type=_positive,
        default=None,
        help="the most regions served (default 64); a request for one more gets OverLimit",
    )
    sv.add_argument(
        "--max-http-connections",
        type=_positive,
        default=None,
        help="HTTP connections open at once (default a quarter of the open-file limit); a "
        "connection past it gets ServiceUnavailable",
    )
    sv.add_argument("--tls-cert", default=None, help="PEM certificate: HTTPS (with --tls-key)")
    sv.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    bk = commands.add_parser(
        "backup", help="copy a data directory, consistently, while it may be in use"
    )
    bk.add_argument("source", help="a data directory (millpond.open's, or serve's --data)")
    bk.add_argument("destination", help="where the copy goes (missing or empty)")
    ck = commands.add_parser(
        "check", help="read a data directory through and check every message's CRC"
    )
    ck.add_argument("path", help="a data directory (millpond.open's, or serve's --data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            return _backup(args.source, args.destination)
        if args.command == "check":
            return _check(args.path)
        if args.command == "demo":
            return demo(args.data, args.messages, args.durability, args.threads, args.body_size)
        if args.command == "serve":
            return _serve(args)
    except MillpondError as exc:  # a data directory it cannot use, say: the message says why
        print(f"millpond {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (`millpond demo | head`): stop quietly, as a tool
        # killed by SIGPIPE does; stdout goes to /dev/null so that the exit flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the data directory cannot be made, say
        print(f"millpond {args.command}: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


def _backup(source: str, destination: str) -> int:
    for store in admin.backup(source, destination):
        copied = os.path.normpath(os.path.join(destination, store))
        print(f"copied {os.path.normpath(os.path.join(source, store))} -> {copied}")
    return 0


def _check(path: str) -> int:
    results = admin.check(path)
    for result in results:
        where = os.path.normpath(os.path.join(path, result.store))
        print(
            f"{where}: {result.queues} queues, {result.records} message records, "
            f"{result.entries} entries read: {'ok' if result.ok else 'PROBLEMS'}"
        )
        if result.error:
            print(f"  unreadable: {result.error}")
        for queue, seq in result.corrupt:
            print(f"  queue {queue}: the record of seq {seq} fails its CRC32C check")
    return 0 if all(result.ok for result in results) else 1


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of at least 1")
    return int(text)


def _body_size(text: str) -> int:
    # an SQS body has at least one byte: 0 failed the demo half-way, as did one over the limit
    if not text.isdigit() or not 1 <= int(text) <= MAX_BODY_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a body size from 1 to {MAX_BODY_SIZE}")
    return int(text)


def _region(text: str) -> str:
    from millpond.server.context import valid_region

    if not valid_region(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a region name (like us-east-1)")
    return text


def _account_id(text: str) -> str:
    from millpond.server.config import valid_account_id

    if not valid_account_id(text):  # a "/" in it made every queue URL unusable
        raise argparse.ArgumentTypeError(f"{text!r} is not an account id (12 digits)")
    return text


def _serve(args: argparse.Namespace) -> int:
    from millpond import server
    from millpond.server import config as config_module

    try:
        return _run_server(args, server, config_module)
    except config_module.ConfigError as exc:
        print(f"millpond serve: {exc}", file=sys.stderr)
        return 1


def _run_server(args: argparse.Namespace, server: Any, config_module: Any) -> int:
    from millpond.server.context import DEFAULT_MAX_REGIONS

    config = config_module.load(args.config) if args.config else {}
    settings = config.get("server", {})

    def pick(name: str, default: object) -> object:
        given = getattr(args, name)
        return given if given is not None else settings.get(name, default)

    port = int(pick("port", server.DEFAULT_PORT))  # type: ignore[call-overload]
    native_port = pick("native_port", None)
    # else uvicorn's "address already in use", as if another program held the port (the
    # native protocol, bound first, does)
    if native_port == port != 0:
        raise config_module.ConfigError(
            f"the native protocol cannot share the HTTP port {port}: give it another "
            f"(native_port; {server.SUGGESTED_NATIVE_PORT} is usual)"
        )
    server.serve(
        str(pick("data", _default_data_dir())),
        host=str(pick("host", "127.0.0.1")),
        port=port,
        config=config,
        durability=str(pick("durability", "fsync")),
        region=str(pick("region", "us-east-1")),
        account_id=str(pick("account_id", "123456789012")),
        credentials=config_module.credentials(config),
        tls_cert=pick("tls_cert", None),
        tls_key=pick("tls_key", None),
        native_port=native_port,
        max_regions=int(pick("max_regions", DEFAULT_MAX_REGIONS)),  # type: ignore[call-overload]
        max_http_connections=pick("max_http_connections", None),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

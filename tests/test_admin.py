"""`millpond backup` and `millpond check` (millpond.admin): a consistent copy of a data
directory in use, and an integrity check that finds the records a receive would skip."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import lmdb
import pytest

import millpond
from millpond import admin, cli, errors


def _bodies(path: Path, queue: str) -> list[bytes]:
    with millpond.open(path, durability="os") as broker:
        q = broker.queue(queue)
        bodies = []
        while got := q.receive(10, visibility_timeout=600):
            bodies += [m.body for m in got]
        return bodies


def test_a_backup_taken_while_sends_go_on_is_one_moment_of_the_queue(tmp_path: Path) -> None:
    source, copy = tmp_path / "data", tmp_path / "copy"
    with millpond.open(source, durability="os") as broker:
        q = broker.create_queue("jobs")
        topic = broker.create_topic("events")
        topic.subscribe(q, filter_policy={"kind": ["a"]})
        for tens in range(30):
            q.send_batch([f"before-{tens * 10 + i}".encode() for i in range(10)])
        stop = threading.Event()
        sent = []

        def keep_sending() -> None:
            while not stop.is_set():
                q.send(f"during-{len(sent)}".encode())
                sent.append(True)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            while len(sent) < 50:  # the backup starts with sends under way
                stop.wait(0.001)
            broker.backup(copy)  # this process has it open: the Broker's own method
        finally:
            stop.set()
            sender.join()
    bodies = _bodies(copy, "jobs")
    before = [b for b in bodies if b.startswith(b"before-")]
    during = sorted(int(b.split(b"-")[1]) for b in bodies if b.startswith(b"during-"))
    assert len(before) == 300  # everything acknowledged before the backup
    assert during == list(range(len(during)))  # and sends in order up to one moment: no gaps
    assert len(during) >= 50
    with millpond.open(copy, durability="os") as restored:  # definitions came along
        (sub,) = restored.topic("events").list_subscriptions()
        assert json.loads(sub.get_attributes()["FilterPolicy"]) == {"kind": ["a"]}


def test_a_daemon_data_directory_is_copied_region_by_region(tmp_path: Path) -> None:
    source = tmp_path / "data"
    for region in ("us-east-1", "eu-west-1"):
        with millpond.open(source / region, durability="os") as broker:
            broker.create_queue(f"q-{region}").send(region.encode())
    assert cli.main(["backup", str(source), str(tmp_path / "copy")]) == 0
    for region in ("us-east-1", "eu-west-1"):
        assert _bodies(tmp_path / "copy" / region, f"q-{region}") == [region.encode()]


def test_a_backup_needs_data_and_an_empty_destination(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="holds no millpond data"):
        admin.backup(str(tmp_path / "nothing"), str(tmp_path / "copy"))
    with millpond.open(tmp_path / "data", durability="os") as broker:
        broker.create_queue("q")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(errors.InvalidParameterValue, match="is not empty"):
        admin.backup(str(tmp_path / "data"), str(occupied))
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]


def _corrupt_one_record(path: Path) -> None:
    env = lmdb.open(str(path), max_dbs=16)
    log = env.open_db(b"log")
    with env.begin(write=True) as txn:
        key, value = next(iter(txn.cursor(db=log)))
        txn.put(key, value[:-1] + bytes([value[-1] ^ 0x01]), db=log)  # one bit of the body
    env.close()


def test_check_finds_a_record_that_fails_its_crc_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data"
    with millpond.open(path, durability="os") as broker:
        broker.create_queue("orders").send_batch([b"one", b"two"])
    assert cli.main(["check", str(path)]) == 0
    assert "1 queues, 2 message records" in capsys.readouterr().out
    _corrupt_one_record(path)
    (result,) = admin.check(str(path))
    assert result.corrupt == [("orders", 1)] and not result.ok
    assert cli.main(["check", str(path)]) == 1
    assert "queue orders: the record of seq 1 fails its CRC32C check" in capsys.readouterr().out
    (again,) = admin.check(str(path))  # the check removed nothing: the record is still there
    assert again.corrupt == [("orders", 1)] and again.records == 2


def test_the_command_and_the_broker_say_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"millpond {millpond.__version__}"
    broker = millpond.open(tmp_path, durability="os")
    assert repr(broker) == f"<millpond.Broker {str(tmp_path)!r} (os, us-east-1)>"
    broker.close()
    assert "(closed," in repr(broker)

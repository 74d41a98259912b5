"""A full disk (issue: "when the map or disk is full, sends fail with a clear error while
deletes still succeed"): sends get StorageFull, nothing half-stored, and the store can still
be drained, because disk space is kept allocated ahead (millpond/disk_reserve.py)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import millpond
from millpond import disk_reserve, errors

# Fills an 8 MiB file system, drains it, then sends again; prints what happened as JSON.
FILL_AND_DRAIN = """
import json, sys, millpond
from millpond import errors
out = {"sent": 0}
with millpond.open(sys.argv[1] + "/data", durability="fsync") as broker:
    q = broker.create_queue("q")
    try:
        while True:
            q.send_batch([b"x" * int(sys.argv[2])] * 10)
            out["sent"] += 10
    except errors.StorageFull as exc:
        out["refused"] = str(exc)
    out["stored"] = int(q.get_attributes()["ApproximateNumberOfMessages"])
    out["drained"] = 0
    while got := q.receive(10):
        q.delete_batch([m.receipt_handle for m in got])
        out["drained"] += len(got)
    import time; time.sleep(millpond.disk_reserve.RETRY_INTERVAL_S)
    q.send(b"space is back")
    out["after"] = [m.body.decode() for m in q.receive(1)]
print(json.dumps(out))
"""


def _in_a_small_file_system(tmp_path: Path, body_size: int) -> dict[str, object]:
    """Run FILL_AND_DRAIN on a tmpfs of 8 MiB mounted in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small file system")
    mount = tmp_path / "small"
    mount.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FILL_AND_DRAIN)
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    shell = f'mount -t tmpfs -o size=8m tmpfs "{mount}" && exec "$0" "$@"'
    command = ["unshare", *user, "--mount", "sh", "-c", shell, sys.executable, str(script)]
    done = subprocess.run(
        [*command, str(mount), str(body_size)], capture_output=True, text=True, timeout=120
    )
    if "mount" in done.stderr and done.returncode != 0 and not done.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("body_size", [1000, 100_000], ids=["1KB", "100KB"])
def test_a_full_disk_refuses_sends_and_the_queue_still_drains(
    tmp_path: Path, body_size: int
) -> None:
    result = _in_a_small_file_system(tmp_path, body_size)
    assert result["refused"] == "the disk is full"  # StorageFull, not a raw lmdb.DiskError
    assert result["stored"] == result["sent"]  # the refused batch stored nothing
    assert result["drained"] == result["sent"] > 0  # every receive and delete committed
    assert result["after"] == ["space is back"]  # and sends resume once space is freed


def test_sends_are_refused_while_the_disk_gives_no_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file system refuses to allocate (ENOSPC) as the store grows past its allocation.
    with millpond.open(tmp_path, durability="os") as broker:
        q = broker.create_queue("q")
        q.send(b"kept")
        real = os.posix_fallocate

        def no_space(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "posix_fallocate", no_space)
        monkeypatch.setattr(disk_reserve, "RETRY_INTERVAL_S", 0.0)
        big = [b"y" * 100_000] * 10
        with pytest.raises(errors.StorageFull, match="the disk is full"):
            for _ in range(20):  # past the reserve allocated ahead
                q.send_batch(big)
        depth = int(q.get_attributes()["ApproximateNumberOfMessages"])
        with pytest.raises(errors.StorageFull):
            q.send(b"refused")
        assert int(q.get_attributes()["ApproximateNumberOfMessages"]) == depth
        (message,) = q.receive(1)  # receives and deletes go on
        q.delete(message.receipt_handle)
        monkeypatch.setattr(os, "posix_fallocate", real)  # space came back
        q.send(b"accepted again")
        assert int(q.get_attributes()["ApproximateNumberOfMessages"]) == depth

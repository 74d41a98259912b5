"""Creating a data directory so that it survives a power loss.

LMDB's fdatasync makes a commit's pages durable, not the directory entries that name data.mdb
and the directories above it: POSIX asks for an fsync of a directory to make a new entry in it
durable (ext4 and XFS usually journal it with the file's sync, but do not promise to), so a
power loss just after the first acknowledged sends to a new directory could leave no file to
find them in. A durable open therefore syncs each directory that gained an entry.
"""

from __future__ import annotations

import os


def make_dirs(path: str) -> list[str]:
    """``os.makedirs(path, exist_ok=True)`` that returns the directories it created,
    outermost first."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # another process made it meanwhile: its entry is that process's to sync
        created.append(directory)
    return created


def sync_new_entries(path: str, created: list[str], new_files: bool) -> None:
    """fsync the parent of each directory in ``created`` and, when files were created in it,
    ``path`` itself."""
    parents = [os.path.dirname(directory) for directory in created]
    if new_files:
        parents.append(os.path.abspath(path))
    for directory in dict.fromkeys(parents):  # each once, outermost first
        sync_dir(directory)


def sync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Folder locks held by one process at a time: an OS lock (``fcntl.flock``) on a lock file that
also names the holder's pid.

The OS drops a ``flock`` when its holder exits, however it exits (SIGKILL included), so a
lock is never left stale; the pid written into the file is only there to name the holder in
the message a second process gets. Used for pretraining run folders (one writer of
``last.pt`` and ``metrics.jsonl``) and, per job, by :mod:`clrbench.eval.claims`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from clrbench.errors import UserError

LOCK_NAME = ".lock"


class LockError(UserError, RuntimeError):
    """The folder is held by another process; the message names it and its pid."""


def holder(path: Path) -> str:
    """The pid written into a lock file, or '?' when it cannot be read."""
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def try_lock(path: Path) -> IO[Any] | None:
    """Take the exclusive lock on ``path`` without waiting; the open file, or None if held.

    The holder writes its pid into the file. Close the returned file to release the lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - the open file *is* the lock; the caller closes it
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def wait_lock(path: Path) -> IO[Any]:
    """Take the exclusive lock on ``path``, waiting for its holder to release it (or die)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - the open file *is* the lock; the caller closes it
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "run folder", enabled: bool = True) -> Iterator[None]:
    """Hold ``folder/.lock`` while the block runs.

    Raises:
        LockError: another process holds it (named by pid).
    """
    if not enabled:
        yield
        return
    path = Path(folder) / LOCK_NAME
    f = try_lock(path)
    if f is None:
        raise LockError(f"The {what} {folder} is in use by process {holder(path)}; wait for it to "
                        "finish, stop it, or choose another folder.")
    try:
        yield
    finally:
        f.close()


def check_free(folder: Path, what: str = "run folder") -> None:
    """Raise :class:`LockError` if another process holds ``folder``'s lock; holds nothing after."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return
    with folder_lock(folder, what):
        pass

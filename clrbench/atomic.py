"""Atomic file writes: readers see the old file or the new one, never a torn one.

Every file clrbench writes for others to read (checkpoints, records, split lists, plots,
exports) goes through :func:`atomic_file`: a temporary file in the same folder (same
filesystem, so ``os.replace`` is atomic), fsynced, given the permissions an ordinary
``open()`` would give (``mkstemp`` makes 0600 files, which other users of a shared results
folder could not read), then renamed over the target. On any error, a full disk or an
interrupt included, the temporary file is removed and the previous file is left intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _default_mode() -> int:
    """0o666 minus the process umask: what ``open(path, 'w')`` would create."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as e:
        raise _named(e, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except Exception as e:
        Path(tmp).unlink(missing_ok=True)
        # A writer may hide the disk's error behind its own (torch's zip writer raises a
        # RuntimeError while closing after a failed write): report the filesystem error.
        cause = _os_error_in(e)
        if cause is None:
            raise
        raise _named(cause, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Persist the rename itself; not possible on every OS/filesystem, hence best effort.
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _named(e: OSError, path: Path) -> OSError:
    """The same error naming the file the caller asked for, where it named the temporary file
    or nothing (a failed ``write`` on a full disk names nothing), so the message says what failed."""
    if e.filename is not None and not Path(e.filename).name.startswith(f".{path.name}."):
        return e  # names a real path (a parent folder that is a file, say): keep it
    return type(e)(e.errno, e.strerror, str(path)) if e.errno else e


def _os_error_in(e: BaseException | None, depth: int = 6) -> OSError | None:
    """``e`` itself if it is an OSError with an errno, else the first in its context chain."""
    while e is not None and depth > 0:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e, depth = e.__cause__ or e.__context__, depth - 1
    return None


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give a finished temporary file (e.g. a memmap written in place) ordinary permissions
    and rename it over ``path``."""
    os.chmod(tmp, _default_mode())
    os.replace(tmp, path)

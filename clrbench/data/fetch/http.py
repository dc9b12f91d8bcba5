"""Resumable, md5-checked HTTP(S) downloads with the standard library only.

A download writes ``<file>.part`` and asks the server for the missing tail with a ``Range``
request, so an interrupted multi-gigabyte archive (Food-101 5 GB, SUN397 37 GB) resumes where it
stopped; the file gets its final name only once complete and, where the md5 is known, verified.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clrbench.data.images import DatasetError

# (label, done, total or None): the CLI renders it as one progress bar per label.
Progress = Callable[[str, int, int | None], None]

USER_AGENT = "clrbench-data/1 (+https://github.com/clrbench)"
CHUNK = 1 << 20


class FetchError(DatasetError):
    """A download that failed or came back corrupt; one sentence, partial data kept."""


def md5_of(path: Path, chunk: int = CHUNK) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open(url: str, start: int, timeout: float) -> tuple[Any, int, int | None]:
    """Open ``url`` from byte ``start``; return (response, first byte it sends, total size)."""
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    length = resp.headers.get("Content-Length")
    if resp.status == 206:  # the server honoured the range: append
        return resp, start, (start + int(length)) if length else None
    return resp, 0, int(length) if length else None  # it sent the whole file: start over


def _stream(url: str, part: Path, label: str, progress: Progress | None, timeout: float) -> None:
    start = part.stat().st_size if part.exists() else 0
    try:
        resp, offset, total = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: the part file is already whole
            return
        raise
    with resp, part.open("r+b" if offset and part.exists() else "wb") as f:
        f.seek(offset)
        f.truncate()
        done = offset
        while block := resp.read(CHUNK):
            f.write(block)
            done += len(block)
            if progress:
                progress(label, done, total)
    if total is not None and done < total:
        raise FetchError(f"{url}: the connection closed after {done:,} of {total:,} bytes; "
                         "run the command again to resume.")


def _partial(part: Path) -> str:
    """What a rerun will do: resume the bytes kept in ``part``, or start over (nothing arrived)."""
    size = part.stat().st_size if part.exists() else 0
    if size:
        return f"the {size:,} bytes received are kept in {part}; run the command again to resume."
    if part.exists():
        part.unlink()  # an empty .part is no progress worth keeping
    return "nothing was received; run the command again to retry."


def download_file(url: str, dest: Path, md5: str | None = None, *,
                  progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``dest.part``, checking ``md5`` if given.

    A complete ``dest`` whose md5 matches is not fetched again.

    Returns:
        ``dest``.

    Raises:
        FetchError: the server failed (the partial file is kept for the next attempt), or the
            md5 does not match (the corrupt file is removed, so a rerun starts clean).
    """
    dest = Path(dest)
    if dest.exists() and (md5 is None or md5_of(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _stream(url, part, dest.name, progress, timeout)
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: the server answered HTTP {e.code} ({e.reason}).") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{url}: {reason}; {_partial(part)}") from None
    if md5 is not None:
        got = md5_of(part)
        if got != md5:
            part.unlink()
            raise FetchError(f"{dest.name} from {url} has md5 {got}, expected {md5}; the file "
                             "was removed, run the command again (or the source has changed).")
    os.replace(part, dest)
    return dest

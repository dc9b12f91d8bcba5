"""Fetch Birdsnap's images from its URL list: parallel, resumable, md5-checked, logged.

The v1.1 release lists 49,829 Flickr URLs with the md5 of each image (protocol.md §1.6); many
have rotted. Each image is fetched by one thread, checked against its md5 (a Flickr "photo
unavailable" placeholder fails it) and written atomically, so a killed run loses nothing.
``success.txt`` / ``fail.txt`` (path, url, reason) are rewritten at the end of every run and a
rerun only retries what is not yet on disk, like the release's own ``get_birdsnap.py``.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from clrbench.data.fetch.http import USER_AGENT, Progress, md5_of
from clrbench.data.sources.birdsnap import IMAGE_DIR, BirdsnapImage, read_images


@dataclass(frozen=True)
class BirdsnapFetch:
    """Outcome of one pass over the URL list."""

    listed: int  # rows of images.txt
    obtained: int  # images on disk with the right md5 after this pass
    fetched: int  # of which fetched by this pass
    failed: int  # still missing; listed in fail_log with the reason
    fail_log: Path


def _fetch_one(row: BirdsnapImage, dest: Path, timeout: float) -> str | None:
    """Download one image; None on success, else the reason it failed."""
    try:
        req = urllib.request.Request(row.url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        return f"download failed: {getattr(e, 'reason', e)}"
    got = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if got != row.md5:
        return f"md5 {got} != {row.md5} (image removed or changed at the source)"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return None


def _already(base: Path, rows: list[BirdsnapImage], image_dir: str) -> set[str]:
    """Paths already on disk: trusted if logged in success.txt, md5-checked otherwise."""
    log = base / "success.txt"
    logged = set(log.read_text().split("\n")) if log.exists() else set()
    ok = set()
    for r in rows:
        dest = base / image_dir / r.path
        if dest.is_file() and (r.path in logged or md5_of(dest) == r.md5):
            ok.add(r.path)
    return ok


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{s}\n" for s in lines))
    os.replace(tmp, path)


def fetch_birdsnap_images(base: Path, *, image_dir: str = IMAGE_DIR, workers: int = 16,
                          progress: Progress | None = None, timeout: float = 30.0) -> BirdsnapFetch:
    """Fetch every image of ``base/images.txt`` not yet under ``base/image_dir``.

    Args:
        base: the Birdsnap folder holding images.txt (``DATA/birdsnap``).
        image_dir: where images go, relative to ``base`` (``download/images/<path>``).
        workers: parallel downloads (threads; the work is network-bound).
        progress: called as ``progress("birdsnap images", done, total)``.
        timeout: seconds per request.
    """
    rows = read_images(base)
    ok = _already(base, rows, image_dir)
    todo = [r for r in rows if r.path not in ok]
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_fetch_one, r, base / image_dir / r.path, timeout): r for r in todo}
        for n, fut in enumerate(as_completed(futures), 1):
            row, reason = futures[fut], fut.result()
            if reason is None:
                ok.add(row.path)
            else:
                failures[row.path] = f"{row.path}\t{row.url}\t{reason}"
            if progress:
                progress("birdsnap images", n, len(todo))
    _write(base / "success.txt", [r.path for r in rows if r.path in ok])
    _write(base / "fail.txt", [failures[r.path] for r in rows if r.path in failures])
    with (base / "download.log").open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\tlisted {len(rows)}\tobtained {len(ok)}\t"
                f"fetched {len(todo) - len(failures)}\tfailed {len(failures)}\n")
    return BirdsnapFetch(len(rows), len(ok), len(todo) - len(failures), len(failures),
                         base / "fail.txt")

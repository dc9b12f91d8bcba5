"""Integrity of feature-cache entries: size and sha256 sealed at write, checked at read.

A cache entry is ``<key>.npy`` (features), ``<key>.valid.npy`` (decodable-image mask) and
``<key>.labels.npz`` (the labels, so a cached job needs no image).
Both are written atomically, but a disk can still damage them later, a copy between machines
can truncate them, and an older clrbench wrote the mask non-atomically. So after writing,
:func:`seal` stores ``<key>.check.json`` ({file: [size, sha256]}); :func:`read_verified`
trusts an entry only when every file matches its seal, and otherwise returns None, so the
caller recomputes it (the damaged files are simply replaced).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from clrbench.atomic import write_text
from clrbench.log import logger


def _digest(path: Path) -> list:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return [path.stat().st_size, h.hexdigest()]


def check_path(features: Path) -> Path:
    return features.with_suffix(".check.json")


def seal(features: Path, *others: Path) -> None:
    """Record the size and sha256 of every file of an entry just written (features first)."""
    write_text(check_path(features), json.dumps({p.name: _digest(p) for p in (features, *others)}))


def read_verified(features: Path, valid: Path, n: int,
                  labels: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(features memory-mapped, mask) of a sealed entry whose files match their seal and hold
    ``n`` rows; None (with a log line when something was there) for anything else. ``labels``
    (the labels sidecar) is checked too when the seal names it."""
    if not features.exists():
        return None
    try:
        sealed = json.loads(check_path(features).read_text())
        extra = [labels] if labels is not None and labels.name in sealed else []
        for p in (features, valid, *extra):
            size, sha = sealed[p.name]
            if p.stat().st_size != size or _digest(p) != [size, sha]:
                raise ValueError(f"{p.name} does not match its checksum")
        feats, mask = np.load(features, mmap_mode="r"), np.load(valid)
        if feats.ndim != 2 or len(feats) != n or mask.shape != (n,):
            raise ValueError(f"it holds {len(feats)} rows for {n} images")
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning(f"Feature cache entry {features} is unusable ({e}); recomputing it.")
        return None
    return feats, mask

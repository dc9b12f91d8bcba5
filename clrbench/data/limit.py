"""``--limit N``: a smoke run of any suite on at most N images per split.

The splits are first resolved exactly as for a full run (official splits, val carved by the
card's rule), then each of train / val / test is thinned to at most N images by a seeded draw
stratified by class: every class keeps a share proportional to its size (rounded so that, while
N allows, every class keeps at least one image), so the carves scale with the classes. A limited
split is a subset of the full one, so a smoke run never tests on a training image.

Limited records never collide with full ones: their protocol is recorded as ``<protocol>@limitN``
(:func:`limited_name`) and they carry ``tags["limited"] = N``; the leaderboard shows them in
their own table and only with ``--include-limited``.
"""

from __future__ import annotations

import numpy as np

LIMIT_SEED = 0
LIMIT_TAG = "limited"


def limited_name(protocol: str, limit: int | None) -> str:
    """The protocol name a (possibly) limited run records under."""
    return f"{protocol}@limit{int(limit)}" if limit else protocol


def is_limited(protocol: str) -> bool:
    return "@limit" in protocol


def check_limit(limit: int | None) -> int | None:
    from clrbench.data.images import DatasetError

    if limit is not None and limit < 2:
        raise DatasetError(f"--limit must be at least 2 images per split, not {limit}.")
    return limit


def thin(targets: np.ndarray, limit: int, seed: int = LIMIT_SEED) -> np.ndarray:
    """Sorted positions (into ``targets``) of at most ``limit`` rows, stratified by class.

    Each class is shuffled; its k-th image gets the key (k + u) / n_class with u uniform in
    [0, 1); the ``limit`` smallest keys are kept. Every class's first image has a key below 1 /
    n_class <= 1, so classes are kept in proportion to their size and, while ``limit`` >= the
    number of classes, nearly all keep at least one image. Multi-label targets (n, C) are
    stratified by their first positive class.
    """
    n = len(targets)
    if n <= limit:
        return np.arange(n)
    y = targets.argmax(1) if targets.ndim == 2 else targets
    rng = np.random.default_rng(seed)
    keys = np.empty(n)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        order = rng.permutation(len(idx))
        keys[idx[order]] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    # Ties are impossible in practice (continuous u); argsort is stable anyway.
    return np.sort(np.argsort(keys, kind="stable")[:limit])


def limit_indices(idx: dict[str, tuple[str, np.ndarray]], targets: dict[str, np.ndarray],
                  limit: int) -> dict[str, tuple[str, np.ndarray]]:
    """Each split's (source, indices) thinned to ``limit`` images; ``targets[source]`` are the
    source split's targets."""
    out = {}
    for name, (src, ind) in idx.items():
        keep = thin(targets[src][ind], limit, LIMIT_SEED + sum(map(ord, name)))
        out[name] = (src, ind[keep])
    return out

"""Labelled subsets of a train split: SimCLRv2's label fractions (Chen et al. 2020b, sec 3).

The semi-supervised protocols fine-tune on a subset, the label-fraction linear probes
(``linear-1pct``, ``linear-10pct``) fit on it, and both draw it with :func:`labelled_subset`
from the same seed, so a study compares them on the same labelled images. Its digest
(:func:`subset_digest`) goes into their records, like the splits' hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def labelled_subset(targets: np.ndarray, fraction: float | None = None, per_class: int | None = None,
                    seed: int = 0) -> np.ndarray:
    """Sorted train indices of a class-balanced labelled subset.

    Args:
        targets: (n,) class ids, or (n, C) multi-hot (stratified by the first positive class,
            as :func:`clrbench.data.splits.carve` does).
        fraction: share of each class, at least one image per class; or
        per_class: images per class (all of a class that has fewer).
        seed: the draw of class c uses ``default_rng([seed, c])``, so adding a class never
            changes another class's images.
    """
    if (fraction is None) == (per_class is None):
        raise ValueError("give exactly one of fraction and per_class.")
    y = targets.argmax(1) if targets.ndim == 2 else np.asarray(targets)
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = per_class if per_class is not None else max(1, round(fraction * len(members)))  # type: ignore[operator]
        order = np.random.default_rng([seed, int(c)]).permutation(len(members))
        picked.append(members[order[: min(k, len(members))]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def subset_digest(split_hash: str, indices: Any) -> str:
    """sha256 of a labelled subset: the task's split hash and the sorted train indices chosen."""
    idx = np.asarray(sorted(int(i) for i in indices), dtype=np.int64)
    return hashlib.sha256(split_hash.encode() + b":" + idx.tobytes()).hexdigest()

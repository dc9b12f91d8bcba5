"""Labelled subsets (S-v2's label fractions): class balance, determinism, the digest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from clrbench.data.subsets import labelled_subset, subset_digest


def test_fraction_subset_is_stratified_seeded_and_at_least_one_per_class() -> None:
    y = np.repeat(np.arange(5), [200, 100, 50, 3, 1])
    a = labelled_subset(y, fraction=0.1, seed=0)
    counts = np.bincount(y[a], minlength=5)
    assert counts.tolist() == [20, 10, 5, 1, 1]  # round(0.1 n_c), never below one
    assert np.array_equal(a, labelled_subset(y, fraction=0.1, seed=0))  # deterministic
    assert not np.array_equal(a, labelled_subset(y, fraction=0.1, seed=1))
    assert np.all(np.diff(a) > 0)  # sorted, no repeats
    # a class's draw depends only on (seed, class): dropping class 4 leaves the others' images alone
    b = labelled_subset(y[y != 4], fraction=0.1, seed=0)
    assert np.array_equal(b, a[y[a] != 4])


def test_per_class_subset_and_multilabel() -> None:
    y = np.repeat(np.arange(3), [10, 4, 7])
    a = labelled_subset(y, per_class=5)
    assert np.bincount(y[a]).tolist() == [5, 4, 5]
    multi = np.eye(3, dtype=np.uint8)[y]
    assert np.array_equal(labelled_subset(multi, per_class=5), a)
    with pytest.raises(ValueError):
        labelled_subset(y)


def test_digest_depends_on_the_split_and_the_images_not_their_order() -> None:
    a = subset_digest("abc", [3, 1, 2])
    assert a == subset_digest("abc", np.array([1, 2, 3])) != subset_digest("abd", [1, 2, 3])
    assert a != subset_digest("abc", [1, 2, 4])
    assert a == hashlib.sha256(b"abc:" + np.array([1, 2, 3], dtype=np.int64).tobytes()).hexdigest()

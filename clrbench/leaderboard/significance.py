"""Paired permutation test between two models' per-example test outcomes (S-v1 B.8.1).

SimCLR tests whether two fine-tuned models differ with a permutation test of 100,000
random swaps of the two models' per-example predictions; for VOC2007 it tests accuracy
instead of mAP, because AP is not a mean over exchangeable examples (protocol.md §1.7).

Swapping example i's outcomes flips the sign of d_i = a_i - b_i and leaves every other
term alone, so examples where the models agree never move the statistic. For binary
outcomes every discordant example contributes ±1, and the number of +1s after a random
swap is Binomial(m, 1/2): drawing that count is *exactly* equivalent in distribution to
drawing m coin flips, at O(1) cost per permutation instead of O(n). Outcomes taking a few
distinct values (VOC's per-example fraction of 20 labels right) are grouped by |d_i| and get
one binomial draw per group. :func:`exact_permutation_test` enumerates every swap by
brute force for tiny n and is the reference the tests check the fast test against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_CHUNK = 1 << 20  # draws per block: bounds memory for very large n_permutations
_ENUM_MAX = 20  # 2^20 swap patterns is the most the brute-force reference will enumerate
_TOL = 1e-9  # float sums of per-example fractions tie only up to rounding


def _outcomes(correct_a: Any, correct_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"per-example outcomes must be two 1-D arrays of one length, got {a.shape} and {b.shape}.")
    if a.size == 0:
        raise ValueError("per-example outcomes are empty: there is nothing to test.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-example outcomes must be finite.")
    return a, b


def paired_permutation_test(correct_a: Any, correct_b: Any, n_permutations: int = 100_000,
                            seed: int = 0) -> float:
    """Two-sided Monte Carlo p-value of the difference in mean outcome (accuracy) of a and b.

    Each permutation swaps the two models' outcomes on every example independently with
    probability 1/2 (S-v1 B.8.1). The p-value counts the observed statistic among the
    permutations ((count + 1) / (n_permutations + 1)), so it is never 0 and is exactly 1
    when the two models agree on every example.

    Args:
        correct_a: (n,) per-example outcome of model a: bool correctness, or a score in [0, 1]
            such as the fraction of labels right (multi-label).
        correct_b: (n,) the same for model b, on the same examples in the same order.
        n_permutations: random swaps drawn (100,000 in SimCLR).
        seed: seed of the random generator; the result is deterministic given it.

    Returns:
        The p-value in (0, 1].
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, not {n_permutations}.")
    a, b = _outcomes(correct_a, correct_b)
    d = a - b
    observed = abs(d.sum())
    # Group discordant examples by |d_i|: within a group the swapped sum is
    # |d| * (2K - c) with K ~ Binomial(c, 1/2), one draw per group and permutation.
    mags, counts = np.unique(np.round(np.abs(d[d != 0]), 12), return_counts=True)
    if mags.size == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    hits, left = 0, n_permutations
    per_block = max(1, _CHUNK // mags.size)
    while left:
        k = min(left, per_block)
        heads = rng.binomial(counts, 0.5, size=(k, mags.size))
        stat = np.abs((2 * heads - counts) @ mags)
        hits += int(np.count_nonzero(stat >= observed - _TOL))
        left -= k
    return (hits + 1) / (n_permutations + 1)


def exact_permutation_test(correct_a: Any, correct_b: Any) -> float:
    """Exact two-sided p-value by enumerating all 2^n swap patterns (reference for tiny n).

    Independent of the shortcut in :func:`paired_permutation_test`: it swaps whole outcome
    vectors and recomputes both accuracies for every pattern.

    Args:
        correct_a: (n,) per-example outcomes of model a, n <= 20.
        correct_b: (n,) per-example outcomes of model b.

    Returns:
        The fraction of swap patterns whose |difference in mean| is at least the observed one.
    """
    a, b = _outcomes(correct_a, correct_b)
    n = a.size
    if n > _ENUM_MAX:
        raise ValueError(f"exact enumeration is for n <= {_ENUM_MAX} examples, got {n}; use paired_permutation_test.")
    patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # (2^n, n), row = which examples swap
    swap = patterns.astype(bool)
    acc_a = np.where(swap, b, a).mean(axis=1)
    acc_b = np.where(swap, a, b).mean(axis=1)
    observed = abs(a.mean() - b.mean())
    return float(np.mean(np.abs(acc_a - acc_b) >= observed - _TOL))


def correctness(predictions: dict[str, Any], metric: str) -> np.ndarray:
    """Per-example outcome of a record's test predictions, the unit the permutation test swaps.

    Single-label metrics (``top1``, ``mean_per_class``): ``pred == y`` per example. The
    test is then on top-1 accuracy even for mean-per-class datasets, as a per-example
    statistic must be. Multi-label (``map11``, VOC2007): the fraction of the labels whose
    thresholded prediction is right, because AP is not exchangeable (S-v1 B.8.1).

    Args:
        predictions: ``{"y": [...], "pred": [...]}`` as stored in a record; single-label:
            class ids (n,); multi-label: 0/1 lists (n, C).
        metric: the record's metric.

    Returns:
        (n,) bool for single-label metrics, (n,) float in [0, 1] for ``map11``.
    """
    if "y" not in predictions or "pred" not in predictions:
        raise ValueError("predictions need both 'y' and 'pred' to test significance.")
    y, pred = np.asarray(predictions["y"]), np.asarray(predictions["pred"])
    if y.shape != pred.shape or y.size == 0:
        raise ValueError(f"predictions 'y' {y.shape} and 'pred' {pred.shape} must be non-empty and of one shape.")
    if metric == "map11":
        if y.ndim != 2:
            raise ValueError(f"multi-label predictions must be (n, classes) 0/1 lists, got shape {y.shape}.")
        return np.asarray((y.astype(bool) == pred.astype(bool)).mean(axis=1), dtype=np.float64)
    if metric in ("top1", "mean_per_class"):
        if y.ndim != 1:
            raise ValueError(f"single-label predictions must be (n,) class ids, got shape {y.shape}.")
        return np.asarray(y == pred, dtype=bool)
    raise ValueError(f"unknown metric {metric!r}; expected top1, mean_per_class or map11.")

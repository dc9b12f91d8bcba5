"""Test metrics of the transfer benchmark: top-1, mean per-class accuracy and VOC2007 11-point mAP.

References: Kornblith, Shlens, Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019;
the PASCAL VOC2007 development kit (``VOCevalcls``); protocol.md §1.7. Pure numpy; every metric
returns a fraction in [0, 1] (callers multiply by 100 for records).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# The eleven recall thresholds, built as the reference Python ports of the devkit build them
# (np.arange, so t[3] == 0.30000000000000004): a recall of exactly 3/10 does not reach t = 0.3.
_RECALL_THRESHOLDS = np.arange(0.0, 1.1, 0.1)


def _check_single_label(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, scores = np.asarray(y), np.asarray(scores)
    if y.ndim != 1 or scores.ndim != 2 or len(y) != len(scores):
        raise ValueError(f"Expected y (n,) and scores (n, C); got {y.shape} and {scores.shape}.")
    if len(y) == 0:
        raise ValueError("Cannot score an empty set of examples.")
    return y, scores


def top1(y: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of examples whose highest-scoring class is the label.

    Args:
        y: (n,) integer labels in [0, C).
        scores: (n, C) class scores (logits, probabilities or any monotone transform).

    Returns:
        Accuracy in [0, 1].
    """
    y, scores = _check_single_label(y, scores)
    return float(np.mean(scores.argmax(axis=1) == y))


def mean_per_class(y: np.ndarray, scores: np.ndarray) -> float:
    """Unweighted mean over the classes present in ``y`` of each class's top-1 accuracy.

    Classes absent from ``y`` are left out (their accuracy is undefined), as
    ``sklearn.metrics.balanced_accuracy_score`` does.

    Args:
        y: (n,) integer labels in [0, C).
        scores: (n, C) class scores.

    Returns:
        Mean per-class accuracy in [0, 1].
    """
    y, scores = _check_single_label(y, scores)
    y = y.astype(np.int64)
    n_classes = max(int(y.max()) + 1, scores.shape[1])
    correct = np.bincount(y, weights=scores.argmax(axis=1) == y, minlength=n_classes)
    count = np.bincount(y, minlength=n_classes)
    present = count > 0
    return float(np.mean(correct[present] / count[present]))


def ap11(positive: np.ndarray, score: np.ndarray) -> float:
    """11-point interpolated average precision of one class (VOC2007 devkit).

    Examples are ranked by decreasing score (ties keep their input order); the AP is the mean over
    t in {0, 0.1, ..., 1} of the highest precision reached at a recall >= t (0 where none is).

    Args:
        positive: (m,) bool, whether each example belongs to the class.
        score: (m,) decision values, higher = more confident.

    Returns:
        AP in [0, 1]; NaN when there is no positive example (the AP is undefined).
    """
    hits = np.asarray(positive, dtype=bool)[np.argsort(-np.asarray(score), kind="stable")]
    n_pos = int(hits.sum())
    if n_pos == 0:
        return float("nan")
    tp = np.cumsum(hits)
    recall = tp / n_pos
    precision = tp / np.arange(1, len(hits) + 1)
    # Highest precision at recall >= t is a suffix maximum, since recall is non-decreasing.
    best_from = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, _RECALL_THRESHOLDS, side="left")
    reached = first < len(recall)
    return float(np.sum(best_from[first[reached]]) / len(_RECALL_THRESHOLDS))


def map11(y_multi_hot: np.ndarray, scores: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """VOC2007 mean average precision: the mean over classes of the 11-point AP.

    Args:
        y_multi_hot: (n, C) 0/1 labels, one column per class.
        scores: (n, C) decision values, higher = more confident.
        ignore: (n, C) bool or None; True marks an example that holds only "difficult" objects of
            that class. The devkit leaves such examples out of that class's ranking altogether
            (neither positive nor negative); pass None to count every entry.

    Returns:
        mAP in [0, 1], averaged over the classes with at least one counted positive (a class with
        none has no defined AP); 0.0 when no class has one.
    """
    y = np.asarray(y_multi_hot)
    scores = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != scores.shape:
        raise ValueError(f"Expected y_multi_hot and scores of one (n, C) shape; got {y.shape} and {scores.shape}.")
    if ignore is not None and np.shape(ignore) != y.shape:
        raise ValueError(f"ignore must have the labels' shape {y.shape}, not {np.shape(ignore)}.")
    keep = np.ones(y.shape, dtype=bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    aps = [ap11(y[keep[:, c], c] > 0, scores[keep[:, c], c]) for c in range(y.shape[1])]
    defined = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(defined)) if defined else 0.0


METRICS: dict[str, Callable[..., float]] = {"top1": top1, "mean_per_class": mean_per_class, "map11": map11}


def score(metric_name: str, y: np.ndarray, scores: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Evaluate a task card's metric by name.

    Args:
        metric_name: "top1", "mean_per_class" or "map11".
        y: (n,) integer labels, or (n, C) 0/1 labels for "map11".
        scores: (n, C) decision values.
        ignore: (n, C) bool "difficult-only" mask, used by "map11" only.

    Returns:
        The metric as a fraction in [0, 1].
    """
    if metric_name not in METRICS:
        raise ValueError(f"Unknown metric {metric_name!r}; use one of {', '.join(METRICS)}.")
    if metric_name == "map11":
        return map11(y, scores, ignore)
    return METRICS[metric_name](y, scores)

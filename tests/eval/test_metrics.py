"""Transfer metrics against scikit-learn and against hand-computed VOC2007 11-point APs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from clrbench.eval.metrics import METRICS, ap11, map11, mean_per_class, score, top1


@pytest.mark.parametrize("seed", range(5))
def test_accuracies_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 300, 7
    y = rng.integers(0, c - 1, n)  # the last class never occurs in y, but may be predicted
    y[: n // 2] = 0  # imbalanced, so the two metrics differ
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), y] += rng.normal(0.5, 1.0, n)
    pred = scores.argmax(1)
    assert top1(y, scores) == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that pred holds a class absent from y
        expected = balanced_accuracy_score(y, pred)
    assert mean_per_class(y, scores) == pytest.approx(expected, abs=1e-12)
    assert mean_per_class(y, scores) != pytest.approx(top1(y, scores))


def test_mean_per_class_weights_classes_equally() -> None:
    y = np.array([0] * 8 + [1] * 2)
    scores = np.zeros((10, 2))
    scores[:, 0] = 1.0  # always predict class 0: top-1 8/10, per-class (8/8 + 0/2) / 2
    assert top1(y, scores) == pytest.approx(0.8)
    assert mean_per_class(y, scores) == pytest.approx(0.5)


def test_ap11_hand_computed() -> None:
    # Ranked hits 1 0 1 1 0 0 1 0 (4 positives):
    #   precision 1, 1/2, 2/3, 3/4, 3/5, 1/2, 4/7, 1/2 ; recall .25 .25 .5 .75 .75 .75 1 1
    #   t = 0, .1, .2      -> max precision over all ranks            = 1     (3 points)
    #   t = .3, .4, .5     -> ranks with recall >= .5  (3..8): max     = 3/4   (3 points)
    #   t = .6, .7         -> ranks with recall >= .75 (4..8): max     = 3/4   (2 points)
    #   t = .8, .9, 1      -> ranks with recall  = 1   (7..8): max     = 4/7   (3 points)
    #   AP = (3 * 1 + 5 * 3/4 + 3 * 4/7) / 11 = (237/28) / 11 = 237/308 = 0.76948...
    hits = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    scores = np.linspace(1.0, 0.1, 8)
    assert ap11(hits, scores) == pytest.approx(237 / 308, abs=1e-12)
    # Only the ranking by score matters, not the input order.
    perm = np.random.default_rng(0).permutation(8)
    assert ap11(hits[perm], scores[perm]) == pytest.approx(237 / 308, abs=1e-12)


def test_ap11_threshold_is_built_like_the_devkit_ports() -> None:
    # 10 positives: 3 positives, 7 negatives, 7 positives. Recall 0.3 (= 3/10) is *below*
    # t[3] = 0.1 * 3 = 0.30000000000000004, so t = .3 takes the best precision at recall >= .4,
    # which is 10/17 at the last rank; t = 0, .1, .2 take 1.
    #   AP = (3 * 1 + 8 * 10/17) / 11 = 131/187
    hits = np.array([1] * 3 + [0] * 7 + [1] * 7, bool)
    assert ap11(hits, -np.arange(17.0)) == pytest.approx(131 / 187, abs=1e-12)


def test_map11_mean_over_classes_and_ignore_mask() -> None:
    # Class 0, five images ranked by score, hits at ranks 1, 3, 5 (3 positives):
    #   precision 1, 1/2, 2/3, 2/4, 3/5 ; recall 1/3, 1/3, 2/3, 2/3, 1
    #   t <= .3: 1 (4 points); t = .4 .. .6: 2/3 (3 points); t >= .7: 3/5 (4 points)
    #   AP = (4 * 1 + 3 * 2/3 + 4 * 3/5) / 11 = 8.4 / 11
    # Class 1: its only positive ranked first -> AP 1. mAP = (8.4/11 + 1) / 2.
    y = np.array([[1, 1], [0, 0], [1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.9], [0.8, 0.1], [0.7, 0.2], [0.6, 0.3], [0.5, 0.4]])
    assert map11(y, s) == pytest.approx((8.4 / 11 + 1) / 2)
    # Ignoring the 2nd image for class 0 (difficult-only) removes its false positive:
    #   hits 1 1 0 1 -> precision 1, 1, 2/3, 3/4 ; recall 1/3, 2/3, 2/3, 1
    #   t <= .6: 1 (7 points); t >= .7: 3/4 (4 points). AP = (7 + 3) / 11 = 10/11.
    ignore = np.zeros_like(y, dtype=bool)
    ignore[1, 0] = True
    assert map11(y, s, ignore) == pytest.approx((10 / 11 + 1) / 2)
    assert score("map11", y, s, ignore) == pytest.approx((10 / 11 + 1) / 2)
    # An ignored positive is not counted either: class 1 then has no positive, hence no AP.
    ignore = np.zeros_like(y, dtype=bool)
    ignore[0, 1] = True
    assert map11(y, s, ignore) == pytest.approx(8.4 / 11)


def test_perfect_scores_and_registry() -> None:
    y = np.array([0, 1, 2, 2])
    scores = np.eye(3)[y]
    assert set(METRICS) == {"top1", "mean_per_class", "map11"}
    assert score("top1", y, scores) == 1.0
    assert score("mean_per_class", y, scores) == 1.0
    assert score("map11", np.eye(3)[y], scores) == 1.0
    with pytest.raises(ValueError, match="Unknown metric"):
        score("top5", y, scores)
    with pytest.raises(ValueError, match="Expected"):
        top1(y[:3], scores)

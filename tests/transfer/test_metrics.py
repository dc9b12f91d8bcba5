"""Metrics against scikit-learn and a hand-computed VOC 11-point example."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from clrbench.transfer.metrics import map11, mean_per_class, score, top1


def test_top1_and_mean_per_class_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    scores = rng.normal(size=(200, 5)) + 1.5 * np.eye(5)[y]
    pred = scores.argmax(1)
    assert top1(y, scores) == pytest.approx(accuracy_score(y, pred))
    assert mean_per_class(y, scores) == pytest.approx(balanced_accuracy_score(y, pred))


def test_map11_hand_computed() -> None:
    # One class, 5 images ranked by score: hits at ranks 1, 3, 5 (3 positives).
    # precision/recall after each rank: (1, 1/3), (1/2, 1/3), (2/3, 2/3), (2/4, 2/3), (3/5, 1).
    # max precision at recall >= t: t in {0, .1, .2, .3}: 1; t in {.4, .5, .6}: 2/3;
    # t in {.7, .8, .9, 1.0}: 3/5. AP = (4*1 + 3*2/3 + 4*3/5) / 11 = 8.4 / 11.
    y = np.array([[1], [0], [1], [0], [1]])
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    assert map11(y, s) == pytest.approx(8.4 / 11)
    # Ignoring the 2nd image (a "difficult-only" entry) removes a false positive:
    # ranks: hit, hit, miss, hit -> precisions 1, 1, 2/3, 3/4; recalls 1/3, 2/3, 2/3, 1.
    # t <= .6: 1; t >= .7: 3/4. AP = (7*1 + 4*0.75) / 11 = 10 / 11.
    ignore = np.array([[False], [True], [False], [False], [False]])
    assert map11(y, s, ignore) == pytest.approx(10 / 11)


def test_map11_perfect_and_mean_over_classes() -> None:
    y = np.array([[1, 0], [0, 1], [1, 0]])
    assert map11(y, y.astype(float)) == pytest.approx(1.0)
    assert score("map11", y, y.astype(float)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Unknown metric"):
        score("top5", y, y)

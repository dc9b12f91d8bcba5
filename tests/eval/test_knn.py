"""Weighted kNN (clrbench.eval.knn) against scikit-learn and a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from clrbench.eval.knn import choose_k, knn_votes, predictions


def _blobs(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = rng.standard_normal((c, d))[y] + rng.standard_normal((n, d))
    return x.astype(np.float32), y


@pytest.mark.parametrize("k", [1, 5, 20])
def test_uniform_votes_are_scikit_learns_cosine_knn(k: int) -> None:
    bank_x, bank_y = _blobs(300, 16, 4, 0)
    query, _ = _blobs(120, 16, 4, 1)
    ours = knn_votes(bank_x, bank_y, query, [k], n_classes=4, weighting="uniform", batch=7)[k]
    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(bank_x, bank_y)
    np.testing.assert_allclose(ours, sk.predict_proba(query), atol=1e-9)
    assert (predictions(ours, False) == sk.predict(query)).all()


def test_exponential_weights_by_hand() -> None:
    # Unit vectors at angles 0, 60, 90 and 180 degrees from the query (1, 0): cosines 1, 0.5, 0, -1.
    bank_x = np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 2.0], [-3.0, 0.0]], dtype=np.float32)
    bank_y = np.array([0, 1, 1, 0])
    query = np.array([[2.0, 0.0]], dtype=np.float32)  # norms differ: only the cosine counts
    t = 0.5
    votes = knn_votes(bank_x, bank_y, query, [3, 4], n_classes=2, temperature=t)
    w = [math.exp(1 / t), math.exp(0.5 / t), math.exp(0 / t), math.exp(-1 / t)]
    np.testing.assert_allclose(votes[3][0], [w[0] / sum(w[:3]), (w[1] + w[2]) / sum(w[:3])], rtol=1e-6)
    np.testing.assert_allclose(votes[4][0], [(w[0] + w[3]) / sum(w), (w[1] + w[2]) / sum(w)], rtol=1e-6)
    # Uniform votes of the same neighbours: class 1 wins 2 to 1; the weights turn it to class 0.
    assert predictions(knn_votes(bank_x, bank_y, query, [3], 2, weighting="uniform")[3], False)[0] == 1
    assert predictions(votes[3], False)[0] == 0


def test_multilabel_votes_are_weighted_class_fractions() -> None:
    bank_x = np.eye(3, dtype=np.float32)
    bank_y = np.array([[1, 0], [1, 1], [0, 1]])
    query = np.array([[1.0, 0.2, 0.0]], dtype=np.float32)
    votes = knn_votes(bank_x, bank_y, query, [2], n_classes=2, temperature=0.1)[2][0]
    s = np.array([1.0, 0.2]) / np.linalg.norm([1.0, 0.2])
    w = np.exp(s / 0.1)
    np.testing.assert_allclose(votes, [1.0, w[1] / w.sum()], rtol=1e-6)
    assert predictions(votes[None], True).tolist() == [[1, 0]]


def test_batches_k_larger_than_the_bank_and_choosing_k() -> None:
    bank_x, bank_y = _blobs(50, 8, 3, 2)
    query, _ = _blobs(33, 8, 3, 3)
    one = knn_votes(bank_x, bank_y, query, [10, 500], 3, batch=1000)
    many = knn_votes(bank_x, bank_y, query, [10, 500], 3, batch=4)
    for k in (10, 500):
        np.testing.assert_allclose(one[k], many[k], atol=1e-6)
    uniform_all = knn_votes(bank_x, bank_y, query, [500], 3, weighting="uniform")[500]
    np.testing.assert_allclose(uniform_all, np.tile(np.bincount(bank_y, minlength=3) / 50, (33, 1)))
    assert choose_k([(10, 80.0), (20, 82.5), (50, 82.5)]) == 20

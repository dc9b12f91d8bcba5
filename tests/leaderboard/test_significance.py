"""Paired permutation test (S-v1 B.8.1): the fast Monte Carlo test against brute-force enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clrbench.leaderboard.significance import (
    correctness,
    exact_permutation_test,
    paired_permutation_test,
)

N_MC = 20_000  # enough to pin p to about ±0.01; the shipped default is 100,000


def _mc_tolerance(p: float, n: int = N_MC) -> float:
    # 5 standard errors of a Monte Carlo proportion, plus the (count + 1)/(n + 1) offset.
    return 5 * math.sqrt(max(p * (1 - p), 1e-4) / n) + 2 / n


@pytest.mark.parametrize("seed", range(4))
def test_binary_outcomes_match_brute_force_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random(11) < 0.7
    b = rng.random(11) < 0.45
    exact = exact_permutation_test(a, b)
    mc = paired_permutation_test(a, b, n_permutations=N_MC, seed=seed)
    assert abs(mc - exact) < _mc_tolerance(exact)


@pytest.mark.parametrize("seed", range(3))
def test_fractional_outcomes_match_brute_force_enumeration(seed: int) -> None:
    # Multi-label outcomes: fraction of 4 labels right per example.
    rng = np.random.default_rng(100 + seed)
    a = rng.integers(0, 5, 10) / 4
    b = rng.integers(0, 5, 10) / 4
    exact = exact_permutation_test(a, b)
    mc = paired_permutation_test(a, b, n_permutations=N_MC, seed=seed)
    assert abs(mc - exact) < _mc_tolerance(exact)


def test_hand_computed_exact_value() -> None:
    # 3 discordant examples all favouring a: |D| = 3 only when all three keep or all swap,
    # so p = 2 / 2^3 = 0.25, whatever the 2 concordant examples do.
    a = np.array([1, 1, 1, 1, 0], bool)
    b = np.array([0, 0, 0, 1, 0], bool)
    assert exact_permutation_test(a, b) == pytest.approx(0.25)
    assert paired_permutation_test(a, b, N_MC) == pytest.approx(0.25, abs=_mc_tolerance(0.25))


def test_matches_the_exact_sign_test_on_many_examples() -> None:
    # For binary outcomes the permutation distribution is the two-sided sign test on the
    # discordant pairs: P(|2K - m| >= |n10 - n01|), K ~ Binomial(m, 1/2).
    n10, n01, n_same = 30, 14, 956
    a = np.r_[np.ones(n10), np.zeros(n01), np.ones(n_same // 2), np.zeros(n_same - n_same // 2)].astype(bool)
    b = np.r_[np.zeros(n10), np.ones(n01), np.ones(n_same // 2), np.zeros(n_same - n_same // 2)].astype(bool)
    m, d = n10 + n01, abs(n10 - n01)
    exact = sum(math.comb(m, k) for k in range(m + 1) if abs(2 * k - m) >= d) / 2**m
    assert paired_permutation_test(a, b, N_MC) == pytest.approx(exact, abs=_mc_tolerance(exact))


def test_identical_models_give_p_one() -> None:
    a = np.random.default_rng(0).random(500) < 0.6
    assert paired_permutation_test(a, a.copy()) == 1.0
    assert exact_permutation_test(a[:8], a[:8]) == 1.0


def test_clearly_different_models_give_the_smallest_p() -> None:
    a = np.ones(2000, bool)
    b = np.r_[np.ones(1000), np.zeros(1000)].astype(bool)
    assert paired_permutation_test(a, b, n_permutations=1000) == pytest.approx(1 / 1001)


def test_deterministic_and_symmetric() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.65
    p = paired_permutation_test(a, b, 5000, seed=7)
    assert p == paired_permutation_test(a, b, 5000, seed=7)
    assert p == paired_permutation_test(b, a, 5000, seed=7)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        paired_permutation_test([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="empty"):
        paired_permutation_test([], [])
    with pytest.raises(ValueError, match="at least 1"):
        paired_permutation_test([1], [0], n_permutations=0)
    with pytest.raises(ValueError, match="n <= 20"):
        exact_permutation_test(np.ones(21), np.zeros(21))


def test_correctness_single_label() -> None:
    got = correctness({"y": [0, 1, 2, 2], "pred": [0, 2, 2, 1]}, "top1")
    assert got.dtype == bool
    assert got.tolist() == [True, False, True, False]
    assert correctness({"y": [3], "pred": [3]}, "mean_per_class").tolist() == [True]


def test_correctness_multi_label_is_per_example_fraction_of_labels_right() -> None:
    y = [[1, 0, 0, 1], [0, 0, 1, 0]]
    pred = [[1, 0, 1, 1], [0, 0, 1, 0]]
    assert correctness({"y": y, "pred": pred}, "map11").tolist() == [0.75, 1.0]


def test_correctness_rejects_bad_predictions() -> None:
    with pytest.raises(ValueError, match="'y' and 'pred'"):
        correctness({"y": [1]}, "top1")
    with pytest.raises(ValueError, match="one shape"):
        correctness({"y": [1, 2], "pred": [1]}, "top1")
    with pytest.raises(ValueError, match="unknown metric"):
        correctness({"y": [1], "pred": [1]}, "auc")

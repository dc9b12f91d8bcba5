"""Linear protocol version 2 (clrbench.eval.probe_path): the answer does not depend on the path."""

from __future__ import annotations

import numpy as np
import pytest

from clrbench.eval.probe import ProbeData, ProbeOptions, fit_probe, lambda_grid
from clrbench.eval.probe_path import eligible, floor, relative_rule, walk_order


def _features(signal: float, seed: int = 0, n: int = 600, d: int = 32, k: int = 5) -> tuple:
    """Pooled-CNN-like features (power-law spectrum, ReLU, mean ~0.5); 10% labels redrawn."""
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.sqrt(np.arange(1, d + 1))
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    y = rng.integers(0, k, n)
    z = (signal * rng.standard_normal((k, d))[y] * spectrum + rng.standard_normal((n, d)) * spectrum) @ basis.T
    x = np.maximum(z + 0.5 * z.std(), 0.0)
    x = (x * (0.5 / x.mean())).astype(np.float32)
    noisy = rng.random(n) < 0.1
    y[noisy] = rng.integers(0, k, int(noisy.sum()))
    a, b = int(0.6 * n), int(0.8 * n)
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


@pytest.mark.parametrize("signal", [1.5, 0.5], ids=["easy", "hard"])
def test_v2_answer_is_the_same_whichever_way_the_grid_is_walked(signal: float) -> None:
    tr, va, te = _features(signal)
    grid = lambda_grid()
    # linear-v2.yaml's tolerance (1e-3), walked three ways, and the same rule ten times tighter.
    data = ProbeData(*tr, *va, *te)
    runs = {w: fit_probe(data, "top1", ProbeOptions(stopping="path-free", tol=1e-3, walk=w))
            for w in ("down", "up", "cold")}
    runs["tighter"] = fit_probe(data, "top1", ProbeOptions(stopping="path-free", tol=1e-4))
    index = {name: int(np.argmin(abs(grid - r.best_lambda))) for name, r in runs.items()}
    assert max(index.values()) - min(index.values()) <= 1, index  # equal or adjacent grid points
    tests = [r.test for r in runs.values()]
    assert max(tests) - min(tests) <= 0.2 + 1e-9, tests
    floors = {r.floor for r in runs.values()}
    assert len(floors) == 1  # a property of the data, not of the walk
    for r in runs.values():  # below the floor: not fitted, not eligible
        assert all(np.isnan(v) == (lam < r.floor) for lam, v in r.val_curve)
    assert all(its > 0 for its in runs["down"].iterations)  # no stale warm start is ever accepted


def test_v1_is_unchanged_by_the_new_options() -> None:
    tr, va, te = _features(0.5, seed=1)
    data = ProbeData(*tr, *va, *te)
    a = fit_probe(data, "top1")
    b = fit_probe(data, "top1", ProbeOptions(stopping="gradient", walk="down", condition_max=1.0))
    assert a.val_curve == b.val_curve and a.best_lambda == b.best_lambda and a.test == b.test and b.floor is None


def test_rule_floor_and_order_by_hand() -> None:
    import torch

    theta = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # W = (3, 4): ||W|| = 5; the bias row is free
    rule = relative_rule(0.1, 2.0)  # stop when ||g|| <= 0.1 * 2 * 5 = 1
    assert rule(torch.tensor([[0.3, 0.4], [0.5, 0.0]]), theta)  # ||g|| = 0.71
    assert not rule(torch.tensor([[0.3, 0.4], [0.9, 0.0]]), theta)  # ||g|| = 1.03
    assert floor(0.25, 400.0, 1e4) == pytest.approx(0.01)
    grid = np.array([1e-3, 1e-2, 1e-1])
    assert eligible(grid, 0.01).tolist() == [1e-2, 1e-1] and eligible(grid, 5.0).tolist() == [1e-1]
    assert walk_order(grid, "up") == [1e-3, 1e-2, 1e-1] and walk_order(grid, "cold") == [1e-1, 1e-2, 1e-3]

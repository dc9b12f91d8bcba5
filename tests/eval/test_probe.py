"""The linear probe: scikit-learn parity (model, lambda choice, test score), no test leak, inputs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from clrbench.eval.metrics import top1
from clrbench.eval.probe import ProbeData, ProbeInputError, ProbeOptions, fit_probe, lambda_grid
from clrbench.eval.probe_file import load_npz, probe_npz


def _fit(tx: Any, ty: Any, vx: Any, vy: Any, sx: Any, sy: Any, metric: str, *, val_ignore: Any = None,
         test_ignore: Any = None, **options: Any) -> Any:
    """fit_probe on six arrays, as the tests below were written."""
    return fit_probe(ProbeData(tx, ty, vx, vy, sx, sy, val_ignore, test_ignore), metric, ProbeOptions(**options))


def _digits() -> tuple[np.ndarray, ...]:
    """sklearn digits (64-d, 10 classes), shuffled: 900 train, 400 val, 497 test."""
    x, y = load_digits(return_X_y=True)
    p = np.random.default_rng(0).permutation(len(y))
    x, y = x[p], y[p]
    return x[:900], y[:900], x[900:1300], y[900:1300], x[1300:], y[1300:]


def _blobs(n: int = 300, d: int = 50, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes with non-zero-mean features and 10% label noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = 2.0 + rng.normal(size=(k, d))[y] * 0.4 + rng.normal(size=(n, d))
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, k, int(flip.sum()))
    return x, y


def _sklearn_probe(data: tuple[np.ndarray, ...], grid: np.ndarray, tol: float) -> tuple[float, float, dict]:
    """The protocol with scikit-learn, warm-started down the grid as clrbench sweeps it."""
    xt, yt, xv, yv, xs, ys = data
    clf = LogisticRegression(tol=tol, max_iter=1000, warm_start=True)
    curve, best = {}, (-1.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lam in sorted(grid, reverse=True):
            curve[lam] = 100 * top1(yv, clf.set_params(C=1 / lam).fit(xt, yt).decision_function(xv))
            best = max(best, (curve[lam], lam), key=lambda b: b[0])  # first max: the larger lambda
        final = LogisticRegression(C=1 / best[1], tol=tol, max_iter=1000)
        final.fit(np.concatenate([xt, xv]), np.concatenate([yt, yv]))
    return best[1], 100 * top1(ys, final.decision_function(xs)), curve


def _adjacent(a: float, b: float, grid: np.ndarray) -> bool:
    order = sorted(grid)
    return abs(order.index(a) - order.index(b)) <= 1


def test_grid_is_the_papers() -> None:
    g = lambda_grid()
    assert g.shape == (45,) and g[0] == pytest.approx(1e-6) and g[-1] == pytest.approx(1e5)
    assert np.allclose(np.diff(np.log10(g)), 0.25)


@pytest.mark.parametrize("case", ["digits", "blobs"])
def test_agrees_with_sklearn_swept_the_same_way(case: str) -> None:
    if case == "digits":
        data = _digits()
    else:
        x, y = _blobs()
        data = (x[:180], y[:180], x[180:240], y[180:240], x[240:], y[240:])
    grid = lambda_grid()
    ours = _fit(*data, metric="top1", lambdas=grid)
    best, test, _ = _sklearn_probe(data, grid, tol=1e-4)
    assert _adjacent(ours.best_lambda, best, grid), (ours.best_lambda, best)
    assert abs(ours.test - test) <= 0.5, (ours.test, test)
    assert [lam for lam, _ in ours.val_curve] == list(grid)  # every grid point reported, in order


def test_converged_val_curve_matches_sklearn() -> None:
    # With a tight tolerance both solvers reach the same optimum at every lambda, so the whole
    # validation curve, not only its arg-max, must agree.
    x, y = _blobs(seed=1)
    data = (x[:180], y[:180], x[180:240], y[180:240], x[240:], y[240:])
    grid = lambda_grid()[16:45:2]
    ours = _fit(*data, metric="top1", lambdas=grid, tol=1e-7, dtype=torch.float64)
    best, test, curve = _sklearn_probe(data, grid, tol=1e-7)
    assert ours.best_lambda == best and ours.test == pytest.approx(test)
    assert all(v == pytest.approx(curve[lam]) for lam, v in ours.val_curve)


@pytest.mark.parametrize(("n", "d", "k"), [(150, 20, 4), (60, 200, 3), (150, 20, 2)])
def test_solution_is_sklearns_model(n: int, d: int, k: int) -> None:
    # One lambda: the probe refits on train+val, which must be sklearn's C = 1/lambda model
    # (summed loss, unpenalised bias; binomial for two classes). (60, 200): n <= d / 2, so the
    # solve runs in the row span of the features.
    x, y = _blobs(n=n + 20, d=d, k=k, seed=2)
    lam = 3.0
    res = _fit(x[:n - 40], y[:n - 40], x[n - 40:n], y[n - 40:n], x[n:], y[n:], "top1", lambdas=[lam],
                    tol=1e-8, dtype=torch.float64)
    ref = LogisticRegression(C=1 / lam, tol=1e-10, max_iter=10_000).fit(x[:n], y[:n])
    z = ref.decision_function(x[n:])
    expected = np.stack([-z / 2, z / 2], 1) if k == 2 else z
    np.testing.assert_allclose(res.test_scores, expected, atol=1e-4 * np.abs(expected).max())


def test_without_refit_test_is_scored_by_the_train_fit() -> None:
    # A label-fraction probe (linear-1pct) must not refit on train+val: its test scores are
    # sklearn's C = 1/lambda model of the train rows alone, and differ from the refitted ones.
    x, y = _blobs(n=240, d=20, k=4, seed=3)
    lam = 3.0
    split = (x[:60], y[:60], x[60:140], y[60:140], x[140:], y[140:])
    res = _fit(*split, "top1", lambdas=[lam], tol=1e-8, dtype=torch.float64, refit=False)
    ref = LogisticRegression(C=1 / lam, tol=1e-10, max_iter=10_000).fit(x[:60], y[:60]).decision_function(x[140:])
    np.testing.assert_allclose(res.test_scores, ref, atol=1e-4 * np.abs(ref).max())
    refitted = _fit(*split, "top1", lambdas=[lam], tol=1e-8, dtype=torch.float64)
    assert np.abs(refitted.test_scores - ref).max() > 1e-2 * np.abs(ref).max()


def test_test_set_is_read_only_after_lambda_is_chosen() -> None:
    xt, yt, xv, yv, xs, ys = _digits()
    grid = lambda_grid()[16:40:3]
    scored: list[float] = []

    class Guard:
        """Exposes a shape; records how many grid points were scored when content is first read."""

        def __init__(self, a: np.ndarray) -> None:
            self.a, self.shape, self.read_after = a, a.shape, None

        def __array__(self, dtype=None, copy=None) -> np.ndarray:
            if self.read_after is None:
                self.read_after = len(scored)
            return self.a

    gx, gy = Guard(xs), Guard(ys)
    a = _fit(xt, yt, xv, yv, gx, gy, "top1", lambdas=grid, callback=lambda lam, v: scored.append(lam))
    assert gx.read_after == gy.read_after == len(grid)
    # And the choice does not depend on test: noise features and shuffled labels change nothing
    # before the test score.
    rng = np.random.default_rng(1)
    b = _fit(xt, yt, xv, yv, rng.normal(size=xs.shape), rng.permutation(ys), "top1", lambdas=grid)
    assert (a.best_lambda, a.val_curve) == (b.best_lambda, b.val_curve) and a.test != b.test


def test_ties_go_to_the_larger_lambda() -> None:
    x, y = _blobs(k=3, seed=3)
    y[:140] = 0  # a majority class; val holds only it, far from the others: every fit gets it right
    xv = x[:60] + 5.0 * (x[y == 0].mean(0) - x.mean(0))
    res = _fit(x[:200], y[:200], xv, np.zeros(60, int), x[200:], y[200:], "top1",
                    lambdas=lambda_grid()[30:45:2])
    assert all(v == 100.0 for _, v in res.val_curve)
    assert res.best_lambda == lambda_grid()[44]


def test_multilabel_map11_with_ignore() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) + 1.0
    y = (x[:, :3] - 1.0 + 0.5 * rng.normal(size=(300, 3)) > 0).astype(int)
    ignore = np.zeros((80, 3), bool)
    ignore[:10, 0] = True
    res = _fit(x[:150], y[:150], x[150:220], y[150:220], x[220:], y[220:], "map11",
                    lambdas=lambda_grid()[20:40:4], test_ignore=ignore)
    assert res.test_scores.shape == (80, 3) and 80 < res.test <= 100
    lam = res.best_lambda  # each column is sklearn's binary model at that lambda
    ref = LogisticRegression(C=1 / lam, tol=1e-10).fit(x[:220], y[:220, 1]).decision_function(x[220:])
    np.testing.assert_allclose(res.test_scores[:, 1], ref, atol=0.05 * np.abs(ref).max())


def test_mean_per_class_and_json() -> None:
    x, y = _blobs(seed=4)
    res = _fit(x[:180], y[:180], x[180:240], y[180:240], x[240:], y[240:], "mean_per_class",
                    lambdas=lambda_grid()[20:44:4])
    j = res.to_json()
    assert {"metric", "test", "best_lambda", "val_curve", "seconds"} <= set(j)
    assert j["metric"] == "mean_per_class" and 0 <= j["test"] <= 100 and len(j["val_curve"]) == 6
    assert (res.n_train, res.n_val, res.n_test) == (180, 60, 60)


def _npz(tmp_path: Path, **over: np.ndarray | None) -> Path:
    x, y = _blobs(n=120, d=8, k=3)
    arrays = {"train_x": x[:60], "train_y": y[:60], "val_x": x[60:90], "val_y": y[60:90],
              "test_x": x[90:], "test_y": y[90:], **over}
    p = tmp_path / "features.npz"
    np.savez(p, **{k: v for k, v in arrays.items() if v is not None})
    return p


def test_probe_npz_round_trip(tmp_path: Path) -> None:
    res = probe_npz(_npz(tmp_path))
    assert res.metric == "top1" and res.n_test == 30 and len(res.val_curve) == 45
    assert set(load_npz(_npz(tmp_path))) >= {"train_x", "test_y"}


@pytest.mark.parametrize(("over", "match"), [
    ({"val_y": None, "test_x": None}, r"lacks val_y, test_x;"),
    ({"test_y": np.zeros(3, int)}, r"test_x \(30, 8\) and test_y \(3,\) do not match"),
    ({"val_x": np.zeros((30, 5))}, r"train_x, val_x and test_x do not match"),
    ({"train_x": np.where(np.eye(60, 8) > 0, np.nan, 1.0)}, r"train_x holds 8 NaN or infinite"),
    ({"test_x": np.full((30, 8), np.inf)}, r"test_x holds 240 NaN or infinite"),
    ({"train_y": np.full(60, 0.5)}, r"train_y must hold non-negative integer"),
])
def test_npz_errors_are_one_clear_sentence(tmp_path: Path, over: dict, match: str) -> None:
    with pytest.raises(ProbeInputError, match=match) as e:
        probe_npz(_npz(tmp_path, **over))
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_not_an_npz(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ProbeInputError, match=r"not a readable .npz"):
        probe_npz(junk)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ProbeInputError, match=r"not a readable .npz"):
        probe_npz(tmp_path / "one.npy")
    with pytest.raises(ProbeInputError, match="No such file"):
        probe_npz(tmp_path / "missing.npz")


def test_metric_must_fit_the_labels() -> None:
    x, y = _blobs(n=90, d=4, k=3)
    with pytest.raises(ProbeInputError, match="metric map11 needs"):
        _fit(x[:30], y[:30], x[30:60], y[30:60], x[60:], y[60:], "map11")
    with pytest.raises(ProbeInputError, match="Unknown metric"):
        _fit(x[:30], y[:30], x[30:60], y[30:60], x[60:], y[60:], "top5")


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    data = _digits()
    grid = lambda_grid()[16:40:2]
    cpu = _fit(*data, metric="top1", lambdas=grid)
    gpu = _fit(*data, metric="top1", lambdas=grid, device="cuda")
    assert _adjacent(cpu.best_lambda, gpu.best_lambda, grid) and abs(cpu.test - gpu.test) <= 0.5

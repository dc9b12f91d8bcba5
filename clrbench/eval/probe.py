"""The linear probe on frozen features: lambda swept on train, chosen on val, refit, scored on test.

References: Kornblith, Shlens & Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019, as used
by SimCLR (Chen et al. 2020, appendix B.8.1); protocol.md §2.1.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clrbench.errors import UserError
from clrbench.eval import metrics
from clrbench.eval.lbfgs import Lbfgs, Objective, Preconditioner, threads_for

# Leading eigenpairs of the features' Gram kept by the preconditioner (lbfgs.Preconditioner).
_RANK = 256

__all__ = ["ProbeInputError", "ProbeResult", "fit_probe", "lambda_grid", "load_npz", "probe_npz"]


def lambda_grid() -> np.ndarray:
    """The 45 regularisation strengths 10^(-6 + 0.25 k), k = 0..44 (S-v1 B.8.1), ascending."""
    return 10.0 ** (-6.0 + 0.25 * np.arange(45))


@dataclass
class ProbeResult:
    """One probe: the chosen lambda, the whole validation curve and the test score.

    Attributes:
        metric: "top1", "mean_per_class" or "map11".
        test: test metric in percent (0-100), of the model refitted on train+val.
        best_lambda: the lambda with the best val score; ties go to the larger lambda.
        val_curve: (lambda, val score in percent) for every lambda of the grid, in grid order.
            Every point is fitted to the tolerance and scored; none is skipped or interpolated.
            A warm start that already meets the tolerance is that point's fit, as in
            scikit-learn (0 iterations; typical of the smallest lambdas).
        test_scores: (n_test, C) decision values (logits; for map11 one logit per class).
        seconds: wall time of the whole probe.
        n_train, n_val, n_test: examples in each split.
        n_evals: loss-and-gradient evaluations spent (sweep + refit), a machine-free cost.
        iterations: L-BFGS iterations per solve, in solve order (largest lambda first, refit last).
    """

    metric: str
    test: float
    best_lambda: float
    val_curve: list[tuple[float, float]]
    test_scores: np.ndarray
    seconds: float
    n_train: int
    n_val: int
    n_test: int
    n_evals: int = 0
    iterations: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able summary (the per-example scores are left out)."""
        return {
            "metric": self.metric, "test": self.test, "best_lambda": self.best_lambda,
            "val_curve": [[lam, val] for lam, val in self.val_curve], "seconds": self.seconds,
            "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test, "n_evals": self.n_evals,
        }


class ProbeInputError(UserError, ValueError):
    """Features or labels that cannot be probed; the message is one sentence naming the problem."""


class _Design:
    """Train+val features centred, reduced to their row span when n <= d / 2, plus a ones column.

    Both are exact reparametrisations of scikit-learn's problem, not a change of it (nothing is
    standardised): the unpenalised bias absorbs the centring, an orthonormal basis keeps ||W||,
    and the optimal W lies in the span of the centred rows. They only make L-BFGS converge faster
    (the mean of non-negative pooled features dominates their Gram) and, for n <= d / 2, cheaper.
    """

    def __init__(self, train_x: np.ndarray, val_x: np.ndarray, device: torch.device, dtype: torch.dtype) -> None:
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        a = torch.from_numpy(np.concatenate([train_x, val_x]).astype(np_dtype, copy=False)).to(device)
        self.mu = a.mean(0)
        a = a - self.mu
        self.n_train, self.d = len(train_x), a.shape[1]
        self.basis: Tensor | None = None
        if 2 * a.shape[0] <= a.shape[1]:
            # a.T = Q R with Q (d, n) orthonormal, so a @ Q = R.T: n coordinates instead of d.
            # The QR costs ~4 d n^2, repaid within a few evaluations when n <= d / 2.
            self.basis, r = torch.linalg.qr(a.T)
            a = r.T.contiguous()
        self.centred = a
        self.x = torch.cat([a, torch.ones(len(a), 1, device=device, dtype=dtype)], 1)

    def weights(self, theta: Tensor) -> Tensor:
        """(d, K) weights in the original feature space."""
        return theta[:-1] if self.basis is None else self.basis @ theta[:-1]

    def converged(self, n_fit: int, tol: float) -> Callable[[Tensor], bool]:
        """scikit-learn's rule, max |gradient| / n_fit <= tol, with the gradient taken with
        respect to the original (uncentred, unreduced) weights and bias."""
        mu, basis, limit = self.mu, self.basis, tol * n_fit
        mu_norm, sqrt_d = float(mu.norm()), float(self.d) ** 0.5

        def rule(g: Tensor) -> bool:
            gb = g[-1]
            if float(gb.abs().max()) > limit:
                return False
            if basis is None:  # d/dW of the uncentred problem = d/dW + mu * d/db
                return float((g[:-1] + mu[:, None] * gb).abs().max()) <= limit
            col, spill = g[:-1].norm(dim=0), gb.abs() * mu_norm
            if float((col + spill).max()) <= limit:  # the 2-norm bounds the max
                return True
            if float(((col - spill) / sqrt_d).max()) > limit:  # and the max bounds it below
                return False
            return float((basis @ g[:-1] + mu[:, None] * gb).abs().max()) <= limit

        return rule


class _Task:
    """Labels as the objective's targets, and logits back to (n, C) decision values."""

    def __init__(self, train_y: np.ndarray, val_y: np.ndarray, device: torch.device) -> None:
        self.multilabel = train_y.ndim == 2
        both = np.concatenate([train_y, val_y])
        self.n_classes = both.shape[1] if self.multilabel else int(both.max()) + 1
        # Two classes: scikit-learn fits one binomial logit, whose penalty differs from a
        # two-column softmax's, so the parity needs the same model.
        self.kind = "sigmoid" if self.multilabel or self.n_classes == 2 else "softmax"
        self.n_out = 1 if self.n_classes == 2 and not self.multilabel else self.n_classes
        as_target = (lambda y: (y == 1)[:, None].astype(np.float32)) if self.n_out == 1 else (lambda y: y)
        dtype = torch.int64 if self.kind == "softmax" else torch.float32
        self.train = torch.as_tensor(as_target(train_y), device=device).to(dtype)
        self.both = torch.as_tensor(as_target(both), device=device).to(dtype)

    def initial(self, rows: int, dtype: torch.dtype) -> Tensor:
        """Zero weights and the bias of the class frequencies: the optimum as lambda -> inf."""
        theta = torch.zeros(rows + 1, self.n_out, dtype=dtype, device=self.train.device)
        if self.kind == "softmax":
            freq = torch.bincount(self.train, minlength=self.n_out).to(dtype) / len(self.train)
            # Softmax is blind to a shift of every bias; scikit-learn's biases sum to zero, and since
            # every gradient step keeps their sum, starting at zero keeps ours equal to its.
            theta[-1] = torch.log(freq.clamp_min(1e-6))
            theta[-1] -= theta[-1].mean()
        else:
            freq = self.train.to(dtype).mean(0).clamp(1e-6, 1 - 1e-6)
            theta[-1] = torch.log(freq / (1 - freq))
        return theta

    def scores(self, logits: Tensor) -> np.ndarray:
        """(n, C) float64 decision values; a binomial logit z becomes (-z/2, z/2)."""
        z = logits.double().cpu().numpy()
        return np.concatenate([-z / 2, z / 2], 1) if self.n_out == 1 and not self.multilabel else z


@dataclass
class _Solver:
    """One lambda path with the settings every solve shares."""

    design: _Design
    task: _Task
    tol: float
    max_iter: int
    rank: int
    lbfgs: Lbfgs = field(default_factory=Lbfgs)
    iterations: list[int] = field(default_factory=list)  # per solve: the sweep's, then the refit's
    n_evals: int = 0

    def __post_init__(self) -> None:
        self.precond = Preconditioner(self.design.centred, rank=self.rank)

    def solve(self, f: Objective, theta: Tensor, lam: float, n_fit: int) -> Tensor:
        """Minimise f at lam from theta (warm start), to scikit-learn's tolerance."""
        f.lam = lam
        if f.curvature == 0.0:
            f(theta)  # sets the curvature estimate the preconditioner needs
        inverse = self.precond.inverse(lam, max(f.curvature, 1e-6), n_fit)
        theta, its, _ = self.lbfgs.minimize(f, theta, inverse, self.design.converged(n_fit, self.tol), self.max_iter)
        self.iterations.append(its)
        return theta


def _sweep(solver: _Solver, lambdas: np.ndarray, metric: str, val_y: np.ndarray, val_ignore: np.ndarray | None,
           callback: Callable[[float, float], None] | None) -> tuple[dict[float, float], float, Tensor]:
    """Fit on train along the path, largest lambda first, and score every fit on val.

    The path starts where the optimum is known (lambda -> inf: W = 0, bias = log frequencies)
    and each fit starts from the previous solution, as scikit-learn's warm start does. Where that
    already meets the tolerance (small lambdas, whose loss is flat there) it is kept unchanged;
    extrapolating along the path saved ~20% of evaluations but moved those fits within the
    tolerance, away from scikit-learn's.

    Returns:
        ({lambda: val score in percent}, the best lambda, its solution (r + 1, K)).
    """
    d, t, n_tr = solver.design, solver.task, solver.design.n_train
    f = Objective(d.x[:n_tr], t.train, t.kind, t.n_out)
    theta = t.initial(d.x.shape[1] - 1, d.x.dtype)
    curve: dict[float, float] = {}
    best: tuple[float, float, Tensor] | None = None
    for lam in sorted(lambdas.tolist(), reverse=True):
        moved = solver.solve(f, theta, lam, n_tr)
        if moved is not theta or not curve:  # an unchanged solution keeps its val score
            val = 100.0 * metrics.score(metric, val_y, t.scores(d.x[n_tr:] @ moved), val_ignore)
        theta, curve[lam] = moved, val
        if callback is not None:
            callback(lam, curve[lam])
        if best is None or curve[lam] > best[0]:  # strict: a tie keeps the larger lambda, met first
            best = (curve[lam], lam, theta)
    assert best is not None
    solver.n_evals += f.n_evals
    return curve, best[1], best[2]


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
              test_x: np.ndarray, test_y: np.ndarray, metric: str, lambdas: np.ndarray | None = None,
              device: str | torch.device | None = None, val_ignore: np.ndarray | None = None,
              test_ignore: np.ndarray | None = None, *, tol: float = 1e-4, max_iter: int = 1000,
              dtype: torch.dtype = torch.float32,
              callback: Callable[[float, float], None] | None = None) -> ProbeResult:
    """Sweep lambda on train, choose it on val, refit on train+val, score test (protocol.md §2.1).

    The model at each lambda is scikit-learn's ``LogisticRegression(solver="lbfgs", C=1/lambda)``:
    multinomial for more than two classes, binomial for two, one binary problem per column for
    multi-label labels, bias unpenalised, stopped by its rule (max |gradient of the mean loss| <=
    tol). The path is swept largest lambda first, each fit warm-started from the previous one;
    ties on val go to the larger lambda. The test arrays are read only after lambda is chosen
    (their shapes are checked first).

    Args:
        train_x, val_x, test_x: (n_split, d) features.
        train_y, val_y, test_y: (n_split,) class indices, or (n_split, C) 0/1 for "map11".
        metric: the task card's metric, "top1", "mean_per_class" or "map11".
        lambdas: the grid (any order); default lambda_grid(). Each is scikit-learn's 1 / C.
        device: torch device of the solve; default cpu.
        val_ignore, test_ignore: (n_split, C) "difficult-only" masks for "map11".
        tol: scikit-learn's stopping tolerance on max |gradient of the mean loss| (its default).
        max_iter: L-BFGS iterations allowed per lambda; scikit-learn's default of 100 stops the
            small-lambda fits far from their optimum, so clrbench allows 1000.
        dtype: float32 is accurate enough for tol = 1e-4 (tests check parity); float64 for tighter.
        callback: called with (lambda, val score in percent) after each grid point.

    Returns:
        The ProbeResult; scores are logits, val and test in percent.
    """
    t_start = time.perf_counter()
    given = {"train_x": train_x, "train_y": train_y, "val_x": val_x, "val_y": val_y, "test_x": test_x, "test_y": test_y}
    _check_layout({k: tuple(np.shape(v) if not hasattr(v, "shape") else v.shape) for k, v in given.items()}, metric)
    grid = lambda_grid() if lambdas is None else np.asarray(lambdas, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ProbeInputError("lambdas must be a non-empty list of positive finite numbers.")
    seen = {k: _check_values(k, np.asarray(given[k])) for k in ("train_x", "train_y", "val_x", "val_y")}
    dev = torch.device(device if device is not None else "cpu")
    task = _Task(seen["train_y"], seen["val_y"], dev)
    if not task.multilabel and len(np.unique(seen["train_y"])) < 2:
        raise ProbeInputError("train_y holds a single class; a classifier needs at least two.")
    n, d = len(seen["train_x"]) + len(seen["val_x"]), seen["train_x"].shape[1]
    with threads_for(n * min(n, d) * task.n_out, dev):
        solver = _Solver(_Design(seen["train_x"], seen["val_x"], dev, dtype), task, tol, max_iter, _RANK)
        curve, best_lambda, theta = _sweep(solver, grid, metric, seen["val_y"], val_ignore, callback)
        test_x, test_scores, test = _refit_and_test(solver, theta, best_lambda, test_x, test_y, metric, test_ignore)
    return ProbeResult(metric=metric, test=test, best_lambda=float(best_lambda),
                       val_curve=[(float(lam), curve[float(lam)]) for lam in grid], test_scores=test_scores,
                       seconds=time.perf_counter() - t_start, n_train=len(seen["train_x"]), n_val=len(seen["val_x"]),
                       n_test=len(test_x), n_evals=solver.n_evals, iterations=solver.iterations)


def _refit_and_test(solver: _Solver, theta: Tensor, lam: float, test_x: Any, test_y: Any, metric: str,
                    test_ignore: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Refit on train+val at lam from the train solution, then, and only then, read test.

    Returns:
        (test_x as read, (n_test, C) test decision values, test metric in percent).
    """
    # The curvature pairs describe the train-only loss; the train+val loss needs its own.
    solver.lbfgs.reset()
    both = Objective(solver.design.x, solver.task.both, solver.task.kind, solver.task.n_out)
    theta = solver.solve(both, theta, lam, len(solver.design.x))
    solver.n_evals += both.n_evals
    test_x, test_y = _check_values("test_x", np.asarray(test_x)), _check_values("test_y", np.asarray(test_y))
    w = solver.design.weights(theta)
    x = torch.from_numpy(np.ascontiguousarray(test_x)).to(device=w.device, dtype=w.dtype)
    # Centred as in the fit: x @ w - mu @ w would cancel digits in float32.
    test_scores = solver.task.scores((x - solver.design.mu) @ w + theta[-1])
    return test_x, test_scores, 100.0 * metrics.score(metric, test_y, test_scores, test_ignore)


# ----------------------------------------------------------------------------- input checks

_KEYS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
_SPLITS = ("train", "val", "test")


def _check_layout(shapes: dict[str, tuple[int, ...]], metric: str) -> None:
    """Shapes and the metric only: no array content is read here."""
    if metric not in metrics.METRICS:
        raise ProbeInputError(f"Unknown metric {metric!r}; use one of {', '.join(metrics.METRICS)}.")
    for s in _SPLITS:
        x, y = shapes[f"{s}_x"], shapes[f"{s}_y"]
        if len(x) != 2 or len(y) not in (1, 2) or x[0] != y[0]:
            raise ProbeInputError(f"{s}_x {x} and {s}_y {y} do not match: expected (n, d) features and n labels.")
        if x[0] == 0:
            raise ProbeInputError(f"{s}_x holds no examples.")
    if len({shapes[f"{s}_x"][1] for s in _SPLITS}) > 1:
        raise ProbeInputError("train_x, val_x and test_x do not match: they must share the feature dimension; got "
                              + ", ".join(str(shapes[f"{s}_x"]) for s in _SPLITS) + ".")
    if len({shapes[f"{s}_y"][1:] for s in _SPLITS}) > 1:
        raise ProbeInputError("train_y, val_y and test_y do not match: all 1-D class indices or all (n, C) 0/1 "
                              "with one C; got " + ", ".join(str(shapes[f"{s}_y"]) for s in _SPLITS) + ".")
    if (metric == "map11") != (len(shapes["train_y"]) == 2):
        want = "(n, C) 0/1 labels" if metric == "map11" else "1-D integer labels"
        raise ProbeInputError(f"metric {metric} needs {want}, but train_y has shape {shapes['train_y']}.")


def _check_values(name: str, a: np.ndarray) -> np.ndarray:
    """Content: numeric, finite features; integer class indices or 0/1 columns. Returns a."""
    if name.endswith("_x"):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ProbeInputError(f"{name} is not numeric (dtype {a.dtype}).")
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ProbeInputError(f"{name} holds {bad} NaN or infinite value(s); clean the features first.")
    elif a.ndim == 1:
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)) or (a.size and a.min() < 0):
            raise ProbeInputError(f"{name} must hold non-negative integer class indices (dtype {a.dtype}).")
    elif not np.isin(a, (0, 1)).all():
        raise ProbeInputError(f"{name} must hold only 0 and 1, one column per class.")
    return a


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check the features file of ``clrbench probe``.

    Args:
        path: an .npz with train_x, train_y, val_x, val_y, test_x, test_y (x: (n, d) features;
            y: (n,) class indices, or (n, C) 0/1 for map11) and optionally val_ignore, test_ignore.

    Returns:
        The arrays by name, all checked (shapes, finiteness, label values).
    """
    p = Path(path)
    if not p.is_file():
        raise ProbeInputError(f"{p} is a folder; pass the .npz file." if p.is_dir() else f"No such file: {p}.")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(p)  # a lone .npy array
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        raise ProbeInputError(f"{p} is not a readable .npz archive (write one with numpy.savez).") from None
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ProbeInputError(f"{p} lacks {', '.join(missing)}; a probe file holds {', '.join(_KEYS)}.")
    metric = "map11" if arrays["train_y"].ndim == 2 else "top1"
    _check_layout({k: arrays[k].shape for k in _KEYS}, metric)
    for k in _KEYS:
        _check_values(k, arrays[k])
    return arrays


def probe_npz(path: str | Path, metric: str | None = None, device: str | torch.device | None = None) -> ProbeResult:
    """``clrbench probe FEATURES.npz``: load, check and probe a features file.

    Args:
        path: the .npz (see load_npz).
        metric: default "top1" for 1-D labels, "map11" for (n, C) labels.
        device: torch device of the solve; default cpu.
    """
    a = load_npz(path)
    metric = metric or ("map11" if a["train_y"].ndim == 2 else "top1")
    if a["train_y"].ndim == 1:
        unseen = sorted(set(np.unique(a["test_y"]).tolist()) - set(np.unique(a["train_y"]).tolist()))
        if unseen:  # a probe can never predict a class it was not trained on
            from clrbench.log import logger

            shown = ", ".join(map(str, unseen[:8])) + (" ..." if len(unseen) > 8 else "")
            logger.warning(f"warning: test labels {shown} never occur in train_y; a linear probe cannot "
                           f"predict them, so those test examples all count as wrong.")
    return fit_probe(a["train_x"], a["train_y"], a["val_x"], a["val_y"], a["test_x"], a["test_y"], metric,
                     device=device, val_ignore=a.get("val_ignore"), test_ignore=a.get("test_ignore"))

"""The linear probe on frozen features: lambda swept on train, chosen on val, refit, scored on test.

References: Kornblith, Shlens & Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019, as used
by SimCLR (Chen et al. 2020, appendix B.8.1); protocol.md §2.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clrbench.eval import metrics, probe_path
from clrbench.eval.lbfgs import Lbfgs, Objective, Preconditioner, threads_for
from clrbench.eval.probe_input import ProbeInputError, check_layout, check_values
from clrbench.eval.rows import stack_rows

# Leading eigenpairs of the features' Gram kept by the preconditioner (lbfgs.Preconditioner).
_RANK = 256

__all__ = ["ProbeData", "ProbeInputError", "ProbeOptions", "ProbeResult", "fit_probe", "lambda_grid"]


def lambda_grid(min_exp: float = -6.0, step_exp: float = 0.25, num: int = 45) -> np.ndarray:
    """Regularisation strengths 10^(min_exp + step_exp k), k = 0..num-1, ascending; the default
    is the protocol's 45 from 1e-6 to 1e5 (S-v1 B.8.1)."""
    return 10.0 ** (min_exp + step_exp * np.arange(num))


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
            Version 2 (stopping "path-free"): val scores below ``floor`` are NaN (not fitted).
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
    floor: float | None = None  # version 2: the smallest lambda fitted (probe_path.floor)
    # Per solve, the max |gradient of the mean loss| it stopped at (scikit-learn's measure), so a
    # benchmark can run scikit-learn to the tolerance each fit actually reached.
    reached: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able summary (the per-example scores are left out)."""
        return {
            "metric": self.metric, "test": self.test, "best_lambda": self.best_lambda,
            "val_curve": [[lam, val] for lam, val in self.val_curve], "seconds": self.seconds,
            "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test, "n_evals": self.n_evals,
        }


class _Design:
    """Train+val features centred, reduced to their row span when n <= d / 2, plus a ones column.

    Both are exact reparametrisations of scikit-learn's problem, not a change of it (nothing is
    standardised): the unpenalised bias absorbs the centring, an orthonormal basis keeps ||W||,
    and the optimal W lies in the span of the centred rows. They only make L-BFGS converge faster
    (the mean of non-negative pooled features dominates their Gram) and, for n <= d / 2, cheaper.
    """

    def __init__(self, train_x: np.ndarray, val_x: np.ndarray, device: torch.device, dtype: torch.dtype) -> None:
        a = stack_rows([train_x, val_x], device, dtype)  # chunk by chunk: features may be memory-mapped fp16
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

    def max_gradient(self, g: Tensor, n_fit: int) -> float:
        """max |gradient of the mean loss| with respect to the original weights and bias."""
        gw = g[:-1] if self.basis is None else self.basis @ g[:-1]
        return max(float((gw + self.mu[:, None] * g[-1]).abs().max()), float(g[-1].abs().max())) / n_fit

    def converged(self, n_fit: int, tol: float) -> Callable[..., bool]:
        """scikit-learn's rule, max |gradient| / n_fit <= tol, with the gradient taken with
        respect to the original (uncentred, unreduced) weights and bias."""
        mu, basis, limit = self.mu, self.basis, tol * n_fit
        mu_norm, sqrt_d = float(mu.norm()), float(self.d) ** 0.5

        def rule(g: Tensor, theta: Tensor | None = None) -> bool:
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
    stopping: str = "gradient"  # v1: scikit-learn's rule at tol; "path-free": probe_path's, tol = eps
    lbfgs: Lbfgs = field(default_factory=Lbfgs)
    iterations: list[int] = field(default_factory=list)  # per solve: the sweep's, then the refit's
    reached: list[tuple[float, float]] = field(default_factory=list)  # per solve: (lambda, max |grad| / n)
    n_evals: int = 0

    def __post_init__(self) -> None:
        self.precond = Preconditioner(self.design.centred, rank=self.rank)

    def solve(self, f: Objective, theta: Tensor, lam: float, n_fit: int) -> Tensor:
        """Minimise f at lam from theta (warm start), to the protocol's stopping rule."""
        f.lam = lam
        if f.curvature == 0.0:
            f(theta)  # sets the curvature estimate the preconditioner needs
        inverse = self.precond.inverse(lam, max(f.curvature, 1e-6), n_fit)
        rule = (probe_path.relative_rule(self.tol, lam) if self.stopping == "path-free"
                else self.design.converged(n_fit, self.tol))
        theta, its, _ = self.lbfgs.minimize(f, theta, inverse, rule, self.max_iter)
        self.iterations.append(its)
        self.reached.append((lam, self.design.max_gradient(f.at(theta)[1], n_fit)))
        return theta


def _sweep(solver: _Solver, lambdas: np.ndarray, metric: str, val_y: np.ndarray, val_ignore: np.ndarray | None,
           callback: Callable[[float, float], None] | None, walk: str = "down",
           condition_max: float = 1e5) -> tuple[dict[float, float], float, Tensor, float | None]:
    """Fit on train along the path, largest lambda first, and score every fit on val.

    The path starts where the optimum is known (lambda -> inf: W = 0, bias = log frequencies)
    and each fit starts from the previous solution, as scikit-learn's warm start does. Where that
    already meets the tolerance (small lambdas, whose loss is flat there) it is kept unchanged;
    extrapolating along the path saved ~20% of evaluations but moved those fits within the
    tolerance, away from scikit-learn's. ``walk`` "up" starts at the smallest lambda instead,
    "cold" starts every fit afresh (both for showing what the answer depends on, probe_path).
    With the "path-free" rule, points below probe_path.floor are not fitted (NaN in the curve).

    Returns:
        ({lambda: val score in percent}, the best lambda, its solution (r + 1, K), the floor or None).
    """
    d, t, n_tr = solver.design, solver.task, solver.design.n_train
    f = Objective(d.x[:n_tr], t.train, t.kind, t.n_out)
    theta0 = theta = t.initial(d.x.shape[1] - 1, d.x.dtype)
    curve = {float(lam): float("nan") for lam in lambdas.tolist()}
    lam_floor = None
    if solver.stopping == "path-free":
        h0 = probe_path.initial_curvature(d.x[:n_tr], theta0, t.kind)
        lam_floor = probe_path.floor(h0, probe_path.top_eigenvalue(solver.precond.eig), condition_max)
        lambdas = probe_path.eligible(lambdas, lam_floor)
    best: tuple[float, float, Tensor] | None = None
    scored: Tensor | None = None
    for lam in probe_path.walk_order(lambdas, walk):
        if walk == "cold":
            theta = theta0
            solver.lbfgs.reset()
        moved = solver.solve(f, theta, lam, n_tr)
        if moved is not scored:  # an unchanged solution keeps its val score
            val = 100.0 * metrics.score(metric, val_y, t.scores(d.x[n_tr:] @ moved), val_ignore)
        theta, scored, curve[lam] = moved, moved, val
        if callback is not None:
            callback(lam, curve[lam])
        # Strict on the larger-lambda side: a tie keeps the larger lambda, whatever the walk.
        if best is None or curve[lam] > best[0] or (curve[lam] == best[0] and lam > best[1]):
            best = (curve[lam], lam, theta)
    assert best is not None
    solver.n_evals += f.n_evals
    return curve, best[1], best[2], lam_floor


@dataclass(frozen=True)
class ProbeData:
    """The arrays of one probe: (n_split, d) features and (n_split,) class indices, or
    (n_split, C) 0/1 columns for "map11"; optional (n_split, C) "difficult-only" masks (VOC)."""

    train_x: Any
    train_y: Any
    val_x: Any
    val_y: Any
    test_x: Any
    test_y: Any
    val_ignore: np.ndarray | None = None
    test_ignore: np.ndarray | None = None


@dataclass(frozen=True)
class ProbeOptions:
    """How the probe is solved (protocol.md §2.1; see :func:`fit_probe`)."""

    lambdas: Any = None
    device: str | torch.device | None = None
    tol: float = 1e-4
    max_iter: int = 1000
    dtype: torch.dtype = torch.float32
    callback: Callable[[float, float], None] | None = None
    stopping: str = "gradient"  # or "path-free" (version 2, clrbench.eval.probe_path)
    walk: str = "down"  # "up" or "cold": for showing what the answer depends on
    condition_max: float = 1e5  # version 2's floor: h0 * e_max / lambda <= condition_max
    # False: test is scored by the train fit at the chosen lambda (a label-fraction probe, whose
    # labelled set would grow by val's images if it refitted on train+val).
    refit: bool = True


def fit_probe(data: ProbeData, metric: str, options: ProbeOptions | None = None) -> ProbeResult:
    """Sweep lambda on train, choose it on val, refit on train+val, score test (protocol.md §2.1).

    The model at each lambda is scikit-learn's ``LogisticRegression(solver="lbfgs", C=1/lambda)``:
    multinomial for more than two classes, binomial for two, one binary problem per column for
    multi-label labels, bias unpenalised, stopped by its rule (max |gradient of the mean loss| <=
    tol). The path is swept largest lambda first, each fit warm-started from the previous one;
    ties on val go to the larger lambda. The test arrays are read only after lambda is chosen
    (their shapes are checked first).

    Args:
        data: train/val/test features and labels (and VOC's ignore masks).
        metric: the task card's metric, "top1", "mean_per_class" or "map11".
        options.lambdas: the grid (any order); default lambda_grid(). Each is scikit-learn's 1 / C.
        options.device: torch device of the solve; default cpu.
        options.tol: scikit-learn's stopping tolerance on max |gradient of the mean loss| (its default).
        options.max_iter: L-BFGS iterations allowed per lambda; scikit-learn's default of 100 stops the
            small-lambda fits far from their optimum, so clrbench allows 1000.
        options.dtype: float32 is accurate enough for tol = 1e-4 (tests check parity); float64 for tighter.
        options.callback: called with (lambda, val score in percent) after each grid point.
        options.stopping: "gradient" (version 1, above) or "path-free" (version 2: tol is the relative
            eps of probe_path.relative_rule, and lambdas below probe_path.floor are skipped).
        options.walk: "down" (the protocol's), "up" or "cold"; for showing path (in)dependence.
        options.condition_max: version 2's floor, h0 * e_max / lambda <= condition_max.
        options.refit: False scores test with the train fit at the chosen lambda (label fractions).

    Returns:
        The ProbeResult; scores are logits, val and test in percent.
    """
    t_start = time.perf_counter()
    o = options or ProbeOptions()
    given = {"train_x": data.train_x, "train_y": data.train_y, "val_x": data.val_x, "val_y": data.val_y,
             "test_x": data.test_x, "test_y": data.test_y}
    check_layout({k: tuple(np.shape(v) if not hasattr(v, "shape") else v.shape) for k, v in given.items()}, metric)
    grid = lambda_grid() if o.lambdas is None else np.asarray(o.lambdas, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ProbeInputError("lambdas must be a non-empty list of positive finite numbers.")
    seen = {k: check_values(k, np.asarray(given[k])) for k in ("train_x", "train_y", "val_x", "val_y")}
    dev = torch.device(o.device if o.device is not None else "cpu")
    task = _Task(seen["train_y"], seen["val_y"], dev)
    if not task.multilabel and len(np.unique(seen["train_y"])) < 2:
        raise ProbeInputError("train_y holds a single class; a classifier needs at least two.")
    n, d = len(seen["train_x"]) + len(seen["val_x"]), seen["train_x"].shape[1]
    with threads_for(n * min(n, d) * task.n_out, dev):
        design = _Design(seen["train_x"], seen["val_x"], dev, o.dtype)
        solver = _Solver(design, task, o.tol, o.max_iter, _RANK, o.stopping)
        curve, best_lambda, theta, lam_floor = _sweep(solver, grid, metric, seen["val_y"], data.val_ignore,
                                                      o.callback, o.walk, o.condition_max)
        test_x, test_scores, test = _refit_and_test(solver, theta, best_lambda, data.test_x, data.test_y, metric,
                                                    data.test_ignore, o.refit)
    return ProbeResult(metric=metric, test=test, best_lambda=float(best_lambda),
                       val_curve=[(float(lam), curve[float(lam)]) for lam in grid], test_scores=test_scores,
                       seconds=time.perf_counter() - t_start, n_train=len(seen["train_x"]), n_val=len(seen["val_x"]),
                       n_test=len(test_x), n_evals=solver.n_evals, iterations=solver.iterations, floor=lam_floor,
                       reached=solver.reached)


def fit_fixed(x: np.ndarray, y: np.ndarray, lam: float, test_x: np.ndarray, *, tol: float = 1e-4,
              max_iter: int = 1000, stopping: str = "gradient", device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Fit the probe at one lambda on (x, y), from the lambda -> inf optimum; score test_x.

    Args:
        x, y: (n, d) features and (n,) class indices or (n, C) 0/1 labels.
        lam: the regularisation strength (scikit-learn's 1 / C).
        test_x: (m, d) features to score.
        tol, max_iter, stopping: as in fit_probe.

    Returns:
        (m, C) decision values (logits).
    """
    x, y = check_values("train_x", np.asarray(x)), check_values("train_y", np.asarray(y))
    dev = torch.device(device if device is not None else "cpu")
    task = _Task(y, y[:0], dev)
    with threads_for(len(x) * min(len(x), x.shape[1]) * task.n_out, dev):
        solver = _Solver(_Design(x, x[:0], dev, dtype), task, tol, max_iter, _RANK, stopping)
        f = Objective(solver.design.x, task.train, task.kind, task.n_out)
        theta = solver.solve(f, task.initial(solver.design.x.shape[1] - 1, solver.design.x.dtype), lam, len(x))
        w = solver.design.weights(theta)
        t = torch.from_numpy(np.ascontiguousarray(check_values("test_x", np.asarray(test_x)))).to(w.device, w.dtype)
        return task.scores((t - solver.design.mu) @ w + theta[-1])


def _refit_and_test(solver: _Solver, theta: Tensor, lam: float, test_x: Any, test_y: Any, metric: str,
                    test_ignore: np.ndarray | None, refit: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Refit on train+val at lam from the train solution (unless ``refit`` is False), then,
    and only then, read test.

    Returns:
        (test_x as read, (n_test, C) test decision values, test metric in percent).
    """
    if refit:
        # The curvature pairs describe the train-only loss; the train+val loss needs its own.
        solver.lbfgs.reset()
        both = Objective(solver.design.x, solver.task.both, solver.task.kind, solver.task.n_out)
        theta = solver.solve(both, theta, lam, len(solver.design.x))
        solver.n_evals += both.n_evals
    test_x, test_y = check_values("test_x", np.asarray(test_x)), check_values("test_y", np.asarray(test_y))
    w = solver.design.weights(theta)
    x = stack_rows([test_x], w.device, w.dtype)
    # Centred as in the fit: x @ w - mu @ w would cancel digits in float32.
    test_scores = solver.task.scores((x - solver.design.mu) @ w + theta[-1])
    return test_x, test_scores, 100.0 * metrics.score(metric, test_y, test_scores, test_ignore)

"""Linear-probe speed: clrbench's 45-point sweep + refit against scikit-learn's, side by side.

The probe of Kornblith et al. 2019 (protocol.md §2.1) on synthetic pooled-CNN-like features
(power-law spectrum, non-negative after a ReLU, 100 classes, label noise), solved by
``clrbench.eval.probe.fit_probe`` and by scikit-learn's ``LogisticRegression(solver="lbfgs")``
in its best configuration: warm-started along the same grid in the same order (largest lambda
first), same tol and max_iter, BLAS pinned to one thread with threadpoolctl. Prints a markdown
table: seconds, lambda chosen, best val and test score.

    python benchmarks/probe_speed.py            # 10,000 x 2,048, 100 classes (minutes)
    python benchmarks/probe_speed.py --quick    # 3,000 x 512, 20 classes
    python benchmarks/probe_speed.py --quick --protocol v2 --walks   # linear-v2, three walks

``--protocol v2`` runs linear-v2 (clrbench.eval.probe_path: relative stopping rule, floor) and
scikit-learn on the same lambdas (those at or above v2's floor), each fit run to the tolerance
clrbench's fit at that lambda reached (``ProbeResult.reached``, in scikit-learn's own measure,
max |gradient of the mean loss|). ``--walks`` also fits the grid from the small end and from cold
starts, for v1 and v2, and prints the chosen lambda, the test score and the val curves side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from clrbench.eval.metrics import top1
from clrbench.eval.probe import ProbeData, ProbeOptions, fit_probe, lambda_grid


def synthetic_features(n: int, d: int, k: int, signal: float, label_noise: float,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class means + heavy noise in a power-law spectrum, rotated, ReLU'd; some labels redrawn.

    Returns:
        (n, d) float32 features and (n,) int64 labels.
    """
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.sqrt(np.arange(1, d + 1))  # a few dominant directions, like pooled features
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    means = signal * rng.standard_normal((k, d)) * spectrum
    y = rng.integers(0, k, n)
    z = (means[y] + rng.standard_normal((n, d)) * spectrum) @ basis.T
    x = np.maximum(z + 0.5 * z.std(), 0.0)  # non-negative, non-zero mean
    x = (x * (0.5 / x.mean())).astype(np.float32)  # entries of order 1, mean 0.5, as pooled ResNet features
    noisy = rng.random(n) < label_noise
    y[noisy] = rng.integers(0, k, int(noisy.sum()))
    return x, y


def sklearn_probe(tr: tuple, va: tuple, te: tuple, grid: np.ndarray, tol: float, max_iter: int,
                  tols: dict[float, float] | None = None, refit_tol: float | None = None) -> dict:
    """The same protocol with scikit-learn, warm-started down the grid, one BLAS thread
    (``tols``: a tolerance per lambda instead of ``tol``; ``refit_tol``: the refit's)."""
    t0 = time.perf_counter()
    clf = LogisticRegression(C=1.0, tol=tol, max_iter=max_iter, warm_start=True)
    best, iters = (-1.0, None, None), 0
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        for lam in sorted(grid, reverse=True):
            clf.set_params(C=1.0 / lam, tol=tol if tols is None else tols[lam]).fit(*tr)
            iters += int(clf.n_iter_.max())
            val = 100 * top1(va[1], clf.decision_function(va[0]))
            if val > best[0]:  # ties keep the larger lambda, as clrbench does
                best = (val, lam, (clf.coef_.copy(), clf.intercept_.copy()))
        clf.set_params(C=1.0 / best[1], tol=tol if refit_tol is None else refit_tol)
        clf.coef_, clf.intercept_ = best[2]  # refit warm-started from the chosen solution
        clf.fit(np.concatenate([tr[0], va[0]]), np.concatenate([tr[1], va[1]]))
        iters += int(clf.n_iter_.max())
        test = 100 * top1(te[1], clf.decision_function(te[0]))
    return {"seconds": time.perf_counter() - t0, "lambda": best[1], "val": best[0], "test": test, "work": iters}


def clrbench_probe(tr: tuple, va: tuple, te: tuple, grid: np.ndarray, tol: float, max_iter: int,
                   stopping: str = "gradient", walk: str = "down", condition_max: float = 1e5) -> dict:
    """clrbench's fit_probe on the same arrays."""
    r = fit_probe(ProbeData(*tr, *va, *te), "top1", ProbeOptions(lambdas=grid, tol=tol, max_iter=max_iter,
                                                                  stopping=stopping, walk=walk,
                                                                  condition_max=condition_max))
    val = max(v for _, v in r.val_curve if v == v)
    return {"seconds": r.seconds, "lambda": r.best_lambda, "val": val, "test": r.test, "work": r.n_evals,
            "curve": dict(r.val_curve), "floor": r.floor, "reached": r.reached}


def walks_table(tr: tuple, va: tuple, te: tuple, grid: np.ndarray, args: argparse.Namespace) -> None:
    """v1 and v2, each walked down, up and cold: chosen lambda, test, and the val curves side by side."""
    runs = {}
    for label, stopping, tol in (("v1", "gradient", args.tol), ("v2", "path-free", args.v2_tol)):
        for walk in ("down", "up", "cold"):
            runs[f"{label} {walk}"] = clrbench_probe(
                tr, va, te, grid, tol, args.max_iter, stopping, walk, args.condition_max
            )
    print("\n| walk | seconds | lambda chosen | test top-1 (%) | evals |")
    print("|---|---:|---:|---:|---:|")
    for name, r in runs.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['lambda']:.3g} | {r['test']:.2f} | {r['work']} |")
    print("\nval top-1 (%) per lambda (- : below v2's floor, not fitted):\n")
    print("| lambda | " + " | ".join(runs) + " |")
    print("|---:|" + "---:|" * len(runs))
    for lam in sorted(grid):
        cells = [f"{r['curve'][lam]:.2f}" if r["curve"][lam] == r["curve"][lam] else "-" for r in runs.values()]
        print(f"| {lam:.3g} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3,000 x 512 features, 20 classes")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads for clrbench")
    ap.add_argument("--tol", type=float, default=1e-4, help="stopping tolerance, both solvers")
    ap.add_argument("--max-iter", type=int, default=1000, help="L-BFGS iterations per lambda, both")
    ap.add_argument("--signal", type=float, default=0.15,
                    help="class-mean scale; 0.15 gives ~55%% top-1 (heavy noise), 0.35 ~90%%")
    ap.add_argument("--skip-sklearn", action="store_true", help="time clrbench alone")
    ap.add_argument("--protocol", choices=("v1", "v2"), default="v1", help="linear (v1) or linear-v2")
    ap.add_argument("--v2-tol", type=float, default=1e-2, help="linear-v2's relative tolerance eps")
    ap.add_argument("--condition-max", type=float, default=1e5, help="linear-v2's floor")
    ap.add_argument("--walks", action="store_true", help="also the walk table (v1 and v2; clrbench only)")
    ap.add_argument("--size", type=int, nargs=3, metavar=("N", "D", "K"), help="examples, dims, classes")
    args = ap.parse_args()
    n, d, k = args.size or ((3000, 512, 20) if args.quick else (10000, 2048, 100))
    torch.set_num_threads(args.torch_threads)
    x, y = synthetic_features(n, d, k, signal=args.signal, label_noise=0.1)
    a, b = int(0.7 * n), int(0.85 * n)
    tr, va, te = (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])
    grid = lambda_grid()
    if args.protocol == "v1":
        rows = {"clrbench (torch fp32)": clrbench_probe(tr, va, te, grid, args.tol, args.max_iter)}
        if not args.skip_sklearn:
            rows["scikit-learn (lbfgs, 1 BLAS thread)"] = sklearn_probe(tr, va, te, grid, args.tol, args.max_iter)
    else:
        ours = clrbench_probe(tr, va, te, grid, args.v2_tol, args.max_iter, "path-free", "down", args.condition_max)
        rows = {"clrbench linear-v2 (torch fp32)": ours}
        fitted = grid[grid >= ours["floor"]]
        tols = {lam: max(t, 1e-12) for lam, t in ours["reached"][:len(fitted)]}
        print(f"v2 floor {ours['floor']:.3g}: {len(fitted)} of {len(grid)} lambdas fitted; tolerance reached "
              f"(max |grad of mean loss|) {min(tols.values()):.2g} to {max(tols.values()):.2g}")
        if not args.skip_sklearn:
            rows["scikit-learn, same lambdas, same per-fit tol"] = sklearn_probe(
                tr, va, te, fitted, args.tol, args.max_iter, tols, ours["reached"][-1][1])
    print(f"{time.strftime('%Y-%m-%d')}: {n} x {d} features (signal {args.signal:g}), {k} classes, split "
          f"{a}/{b - a}/{n - b}; 45 lambdas + refit; tol {args.tol:g}, max_iter {args.max_iter}; "
          f"torch {torch.__version__}, {args.torch_threads} torch thread(s); {os.cpu_count()} CPUs "
          f"({platform.machine()}), load average {os.getloadavg()[0]:.1f}\n")
    print("| solver | seconds | lambda chosen | best val top-1 (%) | test top-1 (%) | work |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        unit = "evals" if name.startswith("clrbench") else "iters"
        print(
            f"| {name} | {r['seconds']:.1f} | {r['lambda']:.3g} | {r['val']:.2f} | {r['test']:.2f} "
            f"| {r['work']} {unit} |"
        )
    if len(rows) == 2:
        ours, theirs = rows.values()
        print(f"\nspeed-up {theirs['seconds'] / ours['seconds']:.2f}x")
    if args.walks:
        walks_table(tr, va, te, grid, args)


if __name__ == "__main__":
    main()

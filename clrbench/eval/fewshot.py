"""Few-shot linear probe: k labelled images per class from train, several seeded draws, full test.

References: CLIP_benchmark's ``--fewshot_k`` (LAION-AI/CLIP_benchmark, linear probe on k images
per class); Zhai et al., "A Large-scale Study of Representation Learning with the Visual Task
Adaptation Benchmark" (VTAB), 2019, for the low-data regime; Kornblith et al. 2019 for the
probe. Per draw: k images of each class from the card's train split (seed + draw), the
L2-regularised logistic regression of :mod:`clrbench.eval.probe` with lambda chosen by
stratified cross-validation inside the k-shot set (or fixed, as the protocol file says),
then the full test split. The record holds the mean over draws (value), std / sqrt(draws)
(stderr) and the std itself (hparams / tags).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from clrbench.eval import metrics


def draw_shots(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k examples per class (all of a class with fewer), sorted; seeded.

    Args:
        y: (n,) class indices, or (n, C) 0/1 for multi-label tasks, where each class in turn
            (in a seeded order) adds up to k of its positives not drawn yet, so an image that
            carries several classes counts towards each of them once drawn.
        k: images per class.
        seed: the draw's seed.

    Returns:
        (m,) int64 indices into y, m <= k * C.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    if y.ndim == 1:
        picks = [rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)]
        return np.sort(np.concatenate(picks)).astype(np.int64)
    chosen = np.zeros(len(y), bool)
    for c in rng.permutation(y.shape[1]):
        have = int((y[chosen, c] > 0).sum())
        pool = np.flatnonzero((y[:, c] > 0) & ~chosen)
        chosen[rng.permutation(pool)[: max(k - have, 0)]] = True
    return np.flatnonzero(chosen).astype(np.int64)


def folds_of(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold index per example, stratified: each class's members dealt round-robin in a
    seeded order (multi-label: by the example's first positive class)."""
    rng = np.random.default_rng(seed)
    key = np.asarray(y) if np.ndim(y) == 1 else np.argmax(np.asarray(y) > 0, axis=1)
    fold = np.zeros(len(key), np.int64)
    for c in np.unique(key):
        members = rng.permutation(np.flatnonzero(key == c))
        fold[members] = np.arange(len(members)) % n_folds
    return fold


def cv_curve(x: np.ndarray, y: np.ndarray, metric: str, grid: np.ndarray, n_folds: int, seed: int,
             probe_args: dict[str, Any]) -> list[tuple[float, float]] | None:
    """Mean held-out score per lambda over stratified folds of the k-shot set (NaN where a fold
    did not fit that lambda); None when no fold split leaves two classes to train on and an
    example to score (k = 1)."""
    from clrbench.eval.probe import ProbeData, ProbeOptions, fit_probe

    fold = folds_of(y, n_folds, seed)
    scores = []
    for f in range(n_folds):
        held, kept = fold == f, fold != f
        if not held.any() or (y.ndim == 1 and len(np.unique(y[kept])) < 2):
            continue
        data = ProbeData(x[kept], y[kept], x[held], y[held], x[held], y[held])
        r = fit_probe(data, metric, ProbeOptions(lambdas=grid, **probe_args))
        scores.append([v for _, v in r.val_curve])
    if not scores:
        return None
    mean = np.mean(scores, axis=0)
    return [(float(lam), float(v)) for lam, v in zip(grid, mean, strict=True)]


def choose_lambda(curve: list[tuple[float, float]]) -> float | None:
    """Best mean held-out score; ties go to the larger lambda (as the linear probe's).

    NaN points (below a fold's version-2 floor, so not fitted in every fold) are not eligible;
    None when no point is.
    """
    fitted = [(lam, v) for lam, v in curve if v == v]
    if not fitted:
        return None
    best = max(v for _, v in fitted)
    return max(lam for lam, v in fitted if v == best)


def one_draw(x: dict[str, np.ndarray], y: dict[str, np.ndarray], test_ignore: np.ndarray | None, metric: str,
             proto: Any, draw: int, probe_args: dict[str, Any]) -> dict[str, Any]:
    """Draw the k-shot set, choose lambda, fit it, score test: {test, lambda, curve, n_train}."""
    from clrbench.eval.probe import fit_fixed, lambda_grid

    idx = draw_shots(y["train"], proto.k, proto.seed + draw)
    xs, ys = x["train"][idx], y["train"][idx]
    grid = lambda_grid(proto.lambda_min_exp, proto.lambda_step_exp, proto.lambda_num)
    curve = None
    if proto.lambda_rule == "cv":
        curve = cv_curve(xs, ys, metric, grid, min(proto.cv_folds, proto.k), proto.seed + draw, probe_args)
    chosen = choose_lambda(curve) if curve else None
    lam = chosen if chosen is not None else proto.lambda_fixed
    scores = fit_fixed(xs, ys, lam, x["test"], **probe_args)
    test = 100.0 * metrics.score(metric, y["test"], scores, test_ignore)
    return {"test": test, "lambda": lam, "curve": curve, "n_train": len(idx)}


def run_fewshot(job: Any) -> Any:
    """One few-shot record: ``draws`` k-shot probes, the mean and spread of their test scores."""
    from clrbench.eval.feature_sets import feature_splits
    from clrbench.eval.protocols import FewshotProtocol, load_protocol

    t0 = time.time()
    proto = load_protocol(job.protocol)
    assert isinstance(proto, FewshotProtocol)
    fs = feature_splits(job, proto)
    card = fs.card
    t1 = time.time()
    args = {"tol": proto.tol, "max_iter": proto.max_iter, "stopping": proto.stopping, "device": job.device}
    draws = [one_draw(fs.x, fs.y, fs.ignore["test"], card.metric, proto, d, args) for d in range(proto.draws)]
    tests = np.array([d["test"] for d in draws])
    std = float(tests.std(ddof=1)) if len(tests) > 1 else 0.0
    curves = [d["curve"] for d in draws if d["curve"]]
    mean_curve = ([[lam, float(np.mean([c[i][1] for c in curves]))] for i, (lam, _) in enumerate(curves[0])]
                  if curves else [])
    tags: dict[str, Any] = {"draw_scores": [round(float(t), 4) for t in tests], "std": std,
                            "lambda_rule": proto.lambda_rule if curves else "fixed"}
    n_test = len(fs.y["test"])
    return fs.record(
        job, proto,
        value=float(tests.mean()),
        stderr=std / np.sqrt(len(tests)),
        hparams={"k": proto.k, "draws": proto.draws, "lambda": [float(d["lambda"]) for d in draws], "std": std},
        val_curve=mean_curve,
        # Per-example predictions of one draw would not pair with a mean over draws: none are stored,
        # so the board runs no permutation test on few-shot columns.
        predictions={},
        split_sizes={"train": int(draws[0]["n_train"]), "test": n_test},
        # Single-label: k per class. Multi-label draws overlap (one image serves several classes),
        # so the draw's own size is what it was meant to be.
        expected_split_sizes={
            "train": int(draws[0]["n_train"]) if card.multilabel else proto.k * card.num_classes,
            "test": int(card.expected_sizes["test"]),
        },
        timings={"features_s": round(t1 - t0, 3), "probe_s": round(time.time() - t1, 3),
                 "total_s": round(time.time() - t0, 3), "features_cached": fs.cached, "n_test": n_test},
        tags=tags,
    )

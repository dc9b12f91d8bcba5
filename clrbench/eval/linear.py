"""The linear protocol as a job: frozen features -> probe sweep on val -> refit -> test.

S-v1 B.8.1 / K19 (protocol.md §2.1). Features come from the content-addressed cache when they
are there (:mod:`clrbench.eval.feature_sets`), and then the job reads neither the task's images
nor the encoder's weights. With a ``label_fraction`` (``linear-1pct``, ``linear-10pct``; S-v2's
label fractions) the probe fits on that class-balanced share of train, the semi protocols'
subset, chooses lambda on val and scores test without the refit on train+val.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from clrbench.eval.jobs import EvalError, EvalJob, test_stderr
from clrbench.records import Record

if TYPE_CHECKING:
    from clrbench.eval.feature_sets import FeatureSplits
    from clrbench.eval.protocols import LinearProtocol


def run_linear(job: EvalJob) -> Record:
    """Features (cached) -> probe sweep on val -> refit on train+val -> test."""
    from clrbench.eval.feature_sets import feature_splits
    from clrbench.eval.probe import ProbeData, ProbeOptions, fit_probe, lambda_grid
    from clrbench.eval.protocols import LinearProtocol, load_protocol

    t0 = time.time()
    proto = load_protocol(job.protocol)
    if not isinstance(proto, LinearProtocol):
        raise EvalError(f"protocol {job.protocol!r} is not a linear-probe protocol.")
    fs = feature_splits(job, proto)
    card, x, y, ignore = fs.card, fs.x, fs.y, fs.ignore
    t1 = time.time()
    sub, tags = labelled_rows(fs, proto)
    data = ProbeData(x["train"][sub], y["train"][sub], x["val"], y["val"], x["test"], y["test"],
                     val_ignore=ignore["val"], test_ignore=ignore["test"])
    res = fit_probe(data, card.metric, ProbeOptions(
        lambdas=lambda_grid(proto.lambda_min_exp, proto.lambda_step_exp, proto.lambda_num), device=job.device,
        tol=proto.tol, max_iter=proto.max_iter, stopping=proto.stopping, condition_max=proto.condition_max,
        refit=proto.label_fraction is None))
    pred = (res.test_scores > 0).astype(int) if card.multilabel else res.test_scores.argmax(1)
    return fs.record(
        job, proto,
        value=float(res.test),
        stderr=test_stderr(y["test"], pred, card.multilabel, res.test),
        hparams={"lambda": float(res.best_lambda)},
        tags=tags,
        val_curve=[[float(lam), float(v)] for lam, v in res.val_curve],
        predictions={"y": y["test"].tolist(), "pred": pred.tolist()},
        timings={"features_s": round(t1 - t0, 3), "probe_s": round(res.seconds, 3),
                 "total_s": round(time.time() - t0, 3), "features_cached": fs.cached, "n_test": len(y["test"])},
    )


def labelled_rows(fs: FeatureSplits, proto: LinearProtocol) -> tuple[Any, dict[str, Any]]:
    """Rows of train the probe fits on (all of them, or the protocol's label fraction drawn over
    the images that decoded) and the record's tags describing them."""
    from clrbench.data.subsets import labelled_subset, subset_digest

    if proto.label_fraction is None:
        return slice(None), {}
    y = fs.y["train"]
    sub = labelled_subset(y, fraction=proto.label_fraction, seed=proto.subset_seed)
    return sub, {"subset_hash": subset_digest(fs.split_hash, sub), "labelled": len(sub),
                 "label_fraction": round(len(sub) / max(len(y), 1), 6)}

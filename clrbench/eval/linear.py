"""The linear protocol as a job: frozen features -> probe sweep on val -> refit -> test.

S-v1 B.8.1 / K19 (protocol.md §2.1). Features come from the content-addressed cache when they
are there, and then the job reads neither the task's images nor the encoder's weights: only
the stored split hash, the encoder's remembered identity and the cached arrays.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.eval.jobs import (
    EvalError,
    EvalJob,
    job_card,
    load_job_task,
    make_record,
    split_dir,
    test_stderr,
)
from clrbench.records import Record

SPLITS = ("train", "val", "test")


def feature_sets(job: EvalJob, proto: Any) -> tuple[Any, dict[str, Any], dict[str, Any], str]:
    """(card, split -> CachedFeatures, encoder description, split hash) of the job's task.

    The cached path first: with the split lists stored and every split's features cached,
    nothing is loaded but arrays. Otherwise the task and the encoder are loaded and the
    missing features extracted (and cached).
    """
    from clrbench.data.splits import stored_split_hash
    from clrbench.eval.features import cache_key, cached_features, features_for
    from clrbench.weights.identity import encoder_info
    from clrbench.weights.layers import at_layer, canonical

    card = job_card(job)
    cache = Path(job.cache_dir)
    info = encoder_info(job.checkpoint, cache)

    def key(split: str, split_hash: str) -> str:
        return cache_key(info.sha256, card.name, card.version, split, split_hash, card.preprocessing,
                         info.meta, proto.feature_layer, proto.dtype)

    split_hash = stored_split_hash(card, split_dir(job))
    # The remembered identity hashes the encoder alone; features of a head layer (S-v2) also
    # depend on the head's weights, so those jobs always load the checkpoint.
    if split_hash is not None and canonical(proto.feature_layer) == "pooled":
        got = {s: cached_features(key(s, split_hash), cache) for s in SPLITS}
        if all(g is not None for g in got.values()):
            return card, got, info.describe(), split_hash
    from clrbench.weights.adapters import load_encoder

    card, data = load_job_task(job)
    encoder = at_layer(load_encoder(job.checkpoint), proto.feature_layer)  # honours head:k (S-v2)
    sets = {s: features_for(encoder, getattr(data, s), key(s, data.split_hash), cache, card.preprocessing,
                            proto.batch_size, proto.dtype, job.device) for s in SPLITS}
    return card, sets, encoder.describe(), data.split_hash


def run_linear(job: EvalJob) -> Record:
    """Features (cached) -> probe sweep on val -> refit on train+val -> test."""
    from clrbench.eval.probe import ProbeData, ProbeOptions, fit_probe, lambda_grid
    from clrbench.eval.protocols import LinearProtocol, load_protocol

    t0 = time.time()
    proto = load_protocol(job.protocol)
    if not isinstance(proto, LinearProtocol):
        raise EvalError(f"protocol {job.protocol!r} is not a linear-probe protocol.")
    card, sets, described, split_hash = feature_sets(job, proto)
    t1 = time.time()
    arr = {}
    for s, fs in sets.items():
        ok = fs.valid
        arr[s] = (np.asarray(fs.features)[ok], fs.targets[ok], None if fs.ignore is None else fs.ignore[ok])
    grid = 10.0 ** (proto.lambda_min_exp + proto.lambda_step_exp * np.arange(proto.lambda_num))
    if proto.lambda_num == 45 and proto.lambda_min_exp == -6.0 and proto.lambda_step_exp == 0.25:
        grid = lambda_grid()
    data = ProbeData(train_x=arr["train"][0], train_y=arr["train"][1], val_x=arr["val"][0], val_y=arr["val"][1],
                     test_x=arr["test"][0], test_y=arr["test"][1], val_ignore=arr["val"][2],
                     test_ignore=arr["test"][2])
    res = fit_probe(data, card.metric, ProbeOptions(lambdas=grid, device=job.device, tol=proto.tol,
                                                    max_iter=proto.max_iter))
    y_test = arr["test"][1]
    pred = (res.test_scores > 0).astype(int) if card.multilabel else res.test_scores.argmax(1)
    valid = {s: fs.valid for s, fs in sets.items()}
    skipped = {s: int((~v).sum()) for s, v in valid.items() if (~v).any()}
    return make_record(
        job.checkpoint_id, card.name, proto.name, card=card, proto=proto, checkpoint=described,
        value=float(res.test), stderr=test_stderr(y_test, pred, card.multilabel, res.test),
        hparams={"lambda": float(res.best_lambda)},
        val_curve=[[float(lam), float(v)] for lam, v in res.val_curve],
        predictions={"y": y_test.tolist(), "pred": pred.tolist()},
        split_sizes={s: int(v.sum()) for s, v in valid.items()}, split_hash=split_hash,
        timings={"features_s": round(t1 - t0, 3), "probe_s": round(res.seconds, 3),
                 "total_s": round(time.time() - t0, 3),
                 "features_cached": all(fs.cached for fs in sets.values()), "n_test": len(y_test)},
        tags={"skipped_images": skipped} if skipped else {},
    )

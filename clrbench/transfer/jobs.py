"""Evaluation jobs: one (checkpoint, task, protocol) in, one record out, in plain Python.

``run_job(job) -> Record`` runs anywhere (this process, a Ray worker); only the driver
writes records. The linear job follows S-v1 B.8.1 / K19: frozen features of train, val and
test -> probe sweep on val -> refit on train+val -> test metric (protocol.md §2.1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.records import Record, has_record, provenance


class EvalError(RuntimeError):
    """An evaluation that cannot run as asked; one clear sentence."""


@dataclass(frozen=True)
class EvalJob:
    checkpoint: str  # a --checkpoint spec: path, random:<arch>,..., torchvision:<arch>
    checkpoint_id: str
    task: str
    protocol: str
    data_root: str | None = None
    cache_dir: str = ".cache/clrbench"
    tasks_dir: str | None = None
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)  # protocol-specific (e.g. one fine-tune trial)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.checkpoint_id, self.task, self.protocol)


def plan_jobs(checkpoints: list[str], tasks: str, protocols: list[str], results_dir: Path, *,
              data_root: str | None = None, cache_dir: str = ".cache/clrbench", tasks_dir: str | None = None,
              device: str = "cpu", force: bool = False) -> tuple[list[EvalJob], list[EvalJob]]:
    """Expand checkpoints x tasks x protocols; returns (to run, already recorded)."""
    from clrbench.adapters import load_encoder
    from clrbench.transfer.taskcard import load_cards, load_protocol, select_tasks

    cards = select_tasks(tasks, load_cards(tasks_dir))
    for p in protocols:
        load_protocol(p)  # fail early on an unknown protocol name
    todo: list[EvalJob] = []
    done: list[EvalJob] = []
    for spec in checkpoints:
        cid = load_encoder(spec).checkpoint_id
        for card in cards:
            for p in protocols:
                job = EvalJob(spec, cid, card.name, p, data_root, cache_dir, tasks_dir, device)
                (done if (not force and has_record(results_dir, cid, card.name, p)) else todo).append(job)
    return todo, done


def run_job(job: EvalJob) -> Record:
    """Run one job to its record (never writes it: that is the driver's)."""
    from clrbench.transfer.taskcard import load_protocol

    proto = load_protocol(job.protocol)
    if proto.kind == "linear":
        return run_linear(job)
    from clrbench.transfer.finetune import run_finetune  # noqa: PLC0415 - heavy, optional path

    return run_finetune(job)


def _task(job: EvalJob) -> Any:
    from clrbench.transfer.datasets import DatasetError
    from clrbench.transfer.splits import load_task
    from clrbench.transfer.taskcard import load_cards

    card = load_cards(job.tasks_dir)[job.task]
    root = Path(job.data_root) if job.data_root else None
    try:
        return card, load_task(card, root, Path(job.cache_dir) / "splits")
    except DatasetError as e:
        if card.source.root_dir is None:  # offline tasks: nothing to fetch
            raise
        from clrbench.transfer.fetch import missing_message

        raise DatasetError(f"{e} {missing_message(card, root)}") from None


def run_linear(job: EvalJob) -> Record:
    """Features (cached) -> probe sweep on val -> refit on train+val -> test."""
    from clrbench.adapters import load_encoder
    from clrbench.transfer.features import cache_key, features_for
    from clrbench.transfer.probe import fit_probe, lambda_grid
    from clrbench.transfer.taskcard import load_protocol

    t0 = time.time()
    proto = load_protocol(job.protocol)
    card, data = _task(job)
    encoder = load_encoder(job.checkpoint)
    feats, valid = {}, {}
    cached = True
    for split in ("train", "val", "test"):
        key = cache_key(encoder.sha256, card.name, card.version, split, data.split_hash, card.preprocessing,
                        encoder.meta, proto.feature_layer, proto.dtype)
        got = features_for(encoder, getattr(data, split), key, Path(job.cache_dir), card.preprocessing,
                           proto.batch_size, proto.dtype, job.device)
        feats[split], valid[split], cached = got.features, got.valid, cached and got.cached
    t1 = time.time()
    targets = {s: getattr(data, s).targets for s in ("train", "val", "test")}
    ignore = {s: getattr(data, s).ignore for s in ("train", "val", "test")}
    arr = {s: (np.asarray(feats[s])[valid[s]], targets[s][valid[s]],
               None if ignore[s] is None else ignore[s][valid[s]]) for s in feats}
    grid = 10.0 ** (proto.lambda_min_exp + proto.lambda_step_exp * np.arange(proto.lambda_num))
    if proto.lambda_num == 45 and proto.lambda_min_exp == -6.0 and proto.lambda_step_exp == 0.25:
        grid = lambda_grid()
    res = fit_probe(arr["train"][0], arr["train"][1], arr["val"][0], arr["val"][1], arr["test"][0],
                    arr["test"][1], card.metric, lambdas=grid, device=job.device,
                    val_ignore=arr["val"][2], test_ignore=arr["test"][2])
    y_test = arr["test"][1]
    pred = (res.test_scores > 0).astype(int) if card.multilabel else res.test_scores.argmax(1)
    n_test = len(y_test)
    stderr = _stderr(y_test, pred, card.multilabel, res.test)
    sizes = {s: int(valid[s].sum()) for s in valid}
    skipped = {s: int((~valid[s]).sum()) for s in valid if (~valid[s]).any()}
    return Record(
        checkpoint_id=job.checkpoint_id, task=card.name, protocol=proto.name, metric=card.metric, status="ok",
        value=float(res.test), stderr=stderr, task_version=card.version, protocol_version=proto.version,
        checkpoint=encoder.describe(), hparams={"lambda": float(res.best_lambda)},
        val_curve=[[float(lam), float(v)] for lam, v in res.val_curve],
        predictions={"y": y_test.tolist(), "pred": pred.tolist()},
        split_sizes=sizes, expected_split_sizes=dict(card.expected_sizes), split_hash=data.split_hash,
        timings={"features_s": round(t1 - t0, 3), "probe_s": round(res.seconds, 3),
                 "total_s": round(time.time() - t0, 3), "features_cached": cached, "n_test": n_test},
        provenance=provenance(), tags={"skipped_images": skipped} if skipped else {},
    )


def _stderr(y: np.ndarray, pred: np.ndarray, multilabel: bool, value: float) -> float:
    """Standard error of the test metric in percent: binomial for accuracy-like metrics,
    a bootstrap-free approximation (per-example accuracy spread) for mAP."""
    n = max(len(y), 1)
    if multilabel:
        per_example = (np.asarray(pred) == np.asarray(y)).mean(1)
        return float(100 * per_example.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    p = value / 100
    return float(100 * np.sqrt(max(p * (1 - p), 0.0) / n))

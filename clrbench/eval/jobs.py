"""Evaluation jobs: one (checkpoint, task, protocol) in, one record out, in plain Python.

``run_job(job)`` runs anywhere (this process, a Ray worker); only the driver writes records.
The linear job follows S-v1 B.8.1 / K19: frozen features of train, val and test -> probe
sweep on val -> refit on train+val -> test metric (protocol.md §2.1).

Fine-tune protocols (protocol.md §2.2; :mod:`clrbench.eval.finetune.grid`) come in two
kinds of job, so that the (lr, wd) trials can fan out:

- the *final* job of (checkpoint, task, protocol), which is what :func:`plan_jobs` returns
  (``options`` empty). ``run_job`` on it runs every trial whose result is not yet persisted
  (in this process, one after another), selects (lr, wd) on val, retrains on train+val,
  scores test and returns the one :class:`~clrbench.records.Record`. On its own it is a
  complete, correct evaluation; this is all the local executor needs.
- *trial* jobs (``options['trial'] = [lr index, wd index]``), from :func:`plan_trials`.
  ``run_job`` on one trains that trial on train, scores val and returns a
  :class:`~clrbench.eval.finetune.grid.TrialResult` (never a Record), which it also
  persists under the cache folder (shared storage, like the feature cache).

To fan trials out (Ray), the driver calls::

    todo, done = plan_jobs(...)                 # final jobs (and linear jobs)
    run_jobs(plan_trials(todo), results_dir)    # phase 1: every missing trial, in parallel
    run_jobs(todo, results_dir)                 # phase 2: the final jobs find their trials done

where the executor stores whatever ``run_job`` returned with :func:`write_result` (a Record
becomes a record file; a TrialResult is persisted as a trial file, not a record). A killed
driver reruns only the missing trials; a killed trial resumes from its checkpoint.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.errors import UserError
from clrbench.provenance import provenance
from clrbench.records import Record, has_record


class EvalError(UserError, RuntimeError):
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
    force: bool = False  # --force: recompute the feature-cache entries too

    @property
    def key(self) -> tuple[str, str, str]:
        """(checkpoint_id, task, protocol name): names the record (a protocol given as a
        path is recorded under the name inside the file)."""
        return (self.checkpoint_id, self.task, protocol_name(self.protocol))


@functools.lru_cache(maxsize=64)
def protocol_name(protocol: str) -> str:
    """The name a protocol (shipped name or YAML path) records under."""
    if not protocol.endswith((".yaml", ".yml")):
        return protocol
    from clrbench.eval.protocols import load_protocol

    return load_protocol(protocol).name


def plan_jobs(checkpoints: list[str], tasks: str, protocols: list[str], results_dir: Path, *,
              data_root: str | None = None, cache_dir: str = ".cache/clrbench", tasks_dir: str | None = None,
              device: str = "cpu", force: bool = False) -> tuple[list[EvalJob], list[EvalJob]]:
    """Expand checkpoints x tasks x protocols; returns (to run, already recorded)."""
    from clrbench.data.cards import load_cards, select_tasks
    from clrbench.eval.protocols import load_protocol
    from clrbench.weights.adapters import load_encoder

    cards = select_tasks(tasks, load_cards(tasks_dir))
    # Fail early on an unknown name or a malformed file; a protocol given as a path is
    # recorded under the name inside it.
    names = {p: load_protocol(p).name for p in protocols}
    todo: list[EvalJob] = []
    done: list[EvalJob] = []
    for spec in checkpoints:
        cid = load_encoder(spec).checkpoint_id
        for card in cards:
            for p in protocols:
                job = EvalJob(spec, cid, card.name, p, data_root, cache_dir, tasks_dir, device, force=force)
                recorded = not force and has_record(results_dir, cid, card.name, names[p])
                (done if recorded else todo).append(job)
    return todo, done


def run_job(job: EvalJob) -> Record | Any:
    """Run one job to its record, or a fine-tune trial job to its ``TrialResult``.

    Never writes a record: that is the driver's (see :func:`write_result`).
    """
    from clrbench.eval.protocols import load_protocol

    proto = load_protocol(job.protocol)
    if proto.kind == "linear":
        if "trial" in job.options:
            raise EvalError(f"protocol {job.protocol!r} is a linear probe and has no trials.")
        return run_linear(job)
    from clrbench.eval.finetune.grid import run_finetune

    return run_finetune(job)


def is_trial(job: EvalJob) -> bool:
    """True for a fine-tune trial job (its result is a TrialResult, not a Record)."""
    return "trial" in job.options


def plan_trials(jobs: list[EvalJob]) -> list[EvalJob]:
    """The trial jobs, not yet persisted, of the fine-tune jobs among ``jobs`` (others ignored).

    Running these first (in parallel) and then ``jobs`` gives the same records as running
    ``jobs`` alone; it only spreads the grid over workers.
    """
    from clrbench.eval.finetune.grid import trial_jobs
    from clrbench.eval.protocols import load_protocol

    out: list[EvalJob] = []
    for job in jobs:
        if not is_trial(job) and load_protocol(job.protocol).kind == "finetune":
            out.extend(trial_jobs(job))
    return out


def write_result(results_dir: Path, result: Any) -> Path:
    """Store what ``run_job`` returned: a Record as its record file, a TrialResult as its
    trial file under the cache folder (where the final job looks for it)."""
    from clrbench.eval.finetune.grid import TrialResult, save_trial
    from clrbench.records import write_record

    if isinstance(result, TrialResult):
        return save_trial(result)
    return write_record(results_dir, result)


def _task(job: EvalJob) -> Any:
    from clrbench.data.cards import load_cards
    from clrbench.data.images import DatasetError
    from clrbench.data.splits import load_task

    card = load_cards(job.tasks_dir)[job.task]
    root = Path(job.data_root) if job.data_root else None
    try:
        return card, load_task(card, root, Path(job.cache_dir) / "splits")
    except DatasetError as e:
        if card.source.root_dir is None:  # offline tasks: nothing to fetch
            raise
        from clrbench.data.fetch import missing_message

        raise DatasetError(f"{e} {missing_message(card, root)}") from None


def run_linear(job: EvalJob) -> Record:
    """Features (cached) -> probe sweep on val -> refit on train+val -> test."""
    from clrbench.eval.features import cache_key, features_for
    from clrbench.eval.probe import fit_probe, lambda_grid
    from clrbench.eval.protocols import LinearProtocol, load_protocol
    from clrbench.weights.adapters import load_encoder

    t0 = time.time()
    proto = load_protocol(job.protocol)
    if not isinstance(proto, LinearProtocol):
        raise EvalError(f"protocol {job.protocol!r} is not a linear-probe protocol.")
    card, data = _task(job)
    encoder = load_encoder(job.checkpoint)
    feats, valid = {}, {}
    cached = True
    for split in ("train", "val", "test"):
        key = cache_key(encoder.sha256, card.name, card.version, split, data.split_hash, card.preprocessing,
                        encoder.meta, proto.feature_layer, proto.dtype)
        got = features_for(encoder, getattr(data, split), key, Path(job.cache_dir), card.preprocessing,
                           proto.batch_size, proto.dtype, job.device, force=job.force)
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
                    val_ignore=arr["val"][2], test_ignore=arr["test"][2], tol=proto.tol,
                    max_iter=proto.max_iter)
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

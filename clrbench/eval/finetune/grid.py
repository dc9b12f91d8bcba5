"""The fine-tune protocol as jobs: one job per (lr, wd) trial, then select, retrain and test.

S-v1 B.8.1 (protocol.md §2.2): every (lr, wd) pair of the protocol's grid is trained on the
train split and scored on val with the card's metric; the best pair (ties: the earlier grid
point, i.e. the smaller lr, then the smaller wd) is retrained on train+val and scored on
test. Test labels are never read before the pair is chosen.

Trial results are small JSON files written atomically under the cache folder (shared
storage, like the feature cache), in a folder keyed by the content of everything that can
change them (encoder weights, card version, split hash, protocol fields), next to the
trial's resumable checkpoint. A killed driver therefore reruns only the missing trials, and
a killed trial resumes from its last checkpoint. The one record of the job keeps the whole
val grid (``val_curve``), so nothing is lost when the cache is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.atomic import write_bytes
from clrbench.data.cards import TaskCard
from clrbench.eval.finetune.images import ImageSizes
from clrbench.eval.jobs import EvalError, EvalJob, load_job_task, make_record, test_stderr
from clrbench.eval.protocols import FinetuneProtocol, load_protocol
from clrbench.records import Record


@dataclass(frozen=True)
class TrialResult:
    """The val score of one (lr, wd) trial; what ``run_job`` returns for a trial job.

    ``status``/``value``/``error`` mirror :class:`~clrbench.records.Record` so progress
    displays can show either. ``path`` is where the result is persisted (the cache folder).
    """

    checkpoint_id: str
    task: str
    protocol: str
    lr: float
    wd: float
    seed: int
    status: str  # "ok" | "diverged"
    value: float | None  # val metric in percent; None if diverged
    steps: int  # steps actually trained
    seconds: float  # wall time of training + val scoring (this run only)
    final_loss: float | None
    resumed_from: int
    path: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """What every job of one (checkpoint, task, fine-tune protocol) needs, loaded once."""

    job: EvalJob
    proto: FinetuneProtocol
    card: TaskCard
    data: Any  # clrbench.data.splits.TaskData
    encoder: Any  # clrbench.weights.adapters.Encoder
    sizes: ImageSizes
    folder: Path


def image_sizes(proto: FinetuneProtocol, card: TaskCard) -> ImageSizes:
    """The protocol's sizes (224 / 256 -> 224 in the paper's), or the card's where it says null."""
    pre = card.preprocessing
    return ImageSizes(proto.train_resize_crop or pre.crop, proto.test_resize or pre.resize,
                      proto.test_crop or pre.crop)


def grid(proto: FinetuneProtocol) -> list[tuple[int, int]]:
    """(lr index, wd index) of every trial, in selection-tie order."""
    return [(i, j) for i in range(len(proto.lrs)) for j in range(len(proto.wds))]


def trial_seed(proto: FinetuneProtocol, i: int, j: int) -> int:
    """Each trial's own seed (the final retrain uses ``proto.seed`` itself)."""
    return proto.seed * 10_000 + 1 + i * len(proto.wds) + j


def context(job: EvalJob) -> Context:
    from clrbench.weights.adapters import load_encoder

    proto = load_protocol(job.protocol)
    if not isinstance(proto, FinetuneProtocol):
        raise EvalError(f"protocol {job.protocol!r} is not a fine-tune protocol.")
    card, data = load_job_task(job)
    from clrbench.weights.layers import at_layer

    encoder = at_layer(load_encoder(job.checkpoint), proto.feature_layer)  # head:k: sha covers the head
    sizes = image_sizes(proto, card)
    fields = {k: v for k, v in asdict(proto).items()
              if k not in ("resources", "notes", "checkpoint_every", "max_concurrent")
              and not (k == "pre_crop_size" and v is None)}  # unset: the key of a protocol without it
    if proto.feature_layer == "encoder":
        del fields["feature_layer"]  # the default: trial folders from before the field existed stay valid
    key = json.dumps({"encoder": encoder.sha256, "card": f"{card.name}@{card.version}", "split": data.split_hash,
                      "protocol": fields, "sizes": asdict(sizes)}, sort_keys=True, default=list)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(job.cache_dir) / "finetune" / job.checkpoint_id / f"{card.name}__{proto.name}" / digest
    if proto.pre_crop_size is not None:  # decode once (train and val are trained on)
        from clrbench.eval.finetune.decoded import decoded_task

        data = decoded_task(data, card, proto.pre_crop_size, Path(job.cache_dir))
    return Context(job, proto, card, data, encoder, sizes, folder)


def trial_path(ctx: Context, i: int, j: int) -> Path:
    return ctx.folder / f"trial-lr{i}-wd{j}.json"


def read_trial(path: Path) -> TrialResult | None:
    """A persisted trial result, or None when absent or unreadable (then it is rerun)."""
    try:
        return TrialResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save_trial(result: TrialResult) -> Path:
    """Persist a trial result atomically at its own ``path``."""
    path = Path(result.path)
    write_bytes(path, (json.dumps(result.to_dict(), sort_keys=True) + "\n").encode())
    return path


@dataclass(frozen=True)
class TrialJob:
    """One (lr, wd) trial of a fine-tune job: trained on train, scored on val, persisted as a
    :class:`TrialResult` under the cache folder (never a record). Trials share their final
    job's :attr:`key`; progress displays tell them apart by identity."""

    final: EvalJob
    lr_index: int
    wd_index: int

    @property
    def key(self) -> tuple[str, str, str]:
        return self.final.key

    def resources(self) -> dict[str, float]:
        return self.final.resources()


def trial_jobs(job: EvalJob) -> list[TrialJob]:
    """The trial jobs of a fine-tune job whose results are not persisted yet."""
    ctx = context(job)
    return [TrialJob(job, i, j) for i, j in grid(ctx.proto) if read_trial(trial_path(ctx, i, j)) is None]


def run_trial_job(job: TrialJob) -> TrialResult:
    """Train one trial (or read it back when a previous run persisted it)."""
    return run_trial(context(job.final), job.lr_index, job.wd_index)


def spec_for(ctx: Context, lr: float, wd: float, seed: int, n_train: int) -> Any:
    from clrbench.eval.finetune.trainer import TrialSpec, bn_momentum, sgd_weight_decay

    p = ctx.proto
    return TrialSpec(lr=lr, wd=wd, weight_decay=sgd_weight_decay(wd, lr, p.wd_divided_by_lr), seed=seed,
                     steps=p.steps, batch_size=p.batch_size, momentum=p.nesterov_momentum,
                     schedule=p.lr_schedule, bn_momentum=bn_momentum(n_train, p.batch_size, p.bn_momentum_rule),
                     sizes=ctx.sizes, crop_scale=p.crop_scale, precision=p.precision,
                     checkpoint_every=p.checkpoint_every, num_classes=ctx.card.num_classes,
                     multilabel=ctx.card.multilabel)


def split_score(ctx: Context, scores: np.ndarray, valid: np.ndarray, split: str) -> float:
    """The card's metric in percent over the decodable images of ``split``."""
    from clrbench.eval.metrics import score

    part = getattr(ctx.data, split)
    ignore = None if part.ignore is None else part.ignore[valid]
    return 100.0 * score(ctx.card.metric, part.targets[valid], scores[valid], ignore)


def run_trial(ctx: Context, i: int, j: int) -> TrialResult:
    """Train trial (i, j) on train, score val; persist and return its result."""
    from clrbench.eval.finetune.trainer import predict, train_trial

    done = read_trial(trial_path(ctx, i, j))
    if done is not None:
        return done
    lr, wd, seed = ctx.proto.lrs[i], ctx.proto.wds[j], trial_seed(ctx.proto, i, j)
    spec = spec_for(ctx, lr, wd, seed, len(ctx.data.train))
    ckpt = ctx.folder / f"trial-lr{i}-wd{j}.pt"
    t0 = time.time()
    net, out = train_trial(ctx.encoder, ctx.data.train, spec, ctx.job.device, ckpt)
    value = None
    if out.status == "ok":
        scores, valid = predict(net, ctx.encoder, ctx.data.val, ctx.sizes, spec, ctx.job.device)
        value = split_score(ctx, scores, valid, "val") if np.isfinite(scores[valid]).all() else None
    status = "ok" if value is not None else "diverged"
    result = TrialResult(ctx.job.checkpoint_id, ctx.card.name, ctx.proto.name, lr, wd, seed, status, value,
                         out.steps_done, round(time.time() - t0, 3), out.final_loss, out.resumed_from,
                         str(trial_path(ctx, i, j)))
    save_trial(result)
    with contextlib.suppress(OSError):
        ckpt.unlink()  # the result is kept; the weights of a selection trial are not needed
    return result


def select(trials: list[TrialResult]) -> TrialResult | None:
    """The best val score; ties go to the earliest grid point; None if every trial diverged."""
    scored = [t for t in trials if t.status == "ok" and t.value is not None]
    # max() keeps the first of equal values: the earliest grid point wins a tie.
    return max(scored, key=lambda t: t.value or 0.0) if scored else None


def run_finetune(job: EvalJob) -> Record:
    """The whole protocol -> one Record: run the trials not yet persisted here, select on val,
    retrain on train+val, score test."""
    ctx = context(job)
    t0 = time.time()
    trials = [run_trial(ctx, i, j) for i, j in grid(ctx.proto)]
    best = select(trials)
    if best is None:
        return grid_record(ctx, trials, None, None, t0, "every (lr, wd) trial diverged")
    return retrain_final(ctx, trials, best, t0)


def retrain_final(ctx: Context, trials: list[TrialResult], best: TrialResult, t0: float) -> Record:
    from clrbench.data.images import concat
    from clrbench.eval.finetune.trainer import predict, train_trial

    train_val = concat(ctx.data.train, ctx.data.val)
    spec = spec_for(ctx, best.lr, best.wd, ctx.proto.seed, len(train_val))
    ckpt = ctx.folder / "final.pt"
    t1 = time.time()
    net, out = train_trial(ctx.encoder, train_val, spec, ctx.job.device, ckpt)
    if out.status != "ok":
        return grid_record(ctx, trials, spec, None, t0, f"the final retrain (lr {best.lr:g}, wd {best.wd:g}) diverged")
    scores, valid = predict(net, ctx.encoder, ctx.data.test, ctx.sizes, spec, ctx.job.device)
    final = {"seconds": round(time.time() - t1, 3), "resumed_from": out.resumed_from, "final_loss": out.final_loss}
    rec = grid_record(ctx, trials, spec, (scores, valid, final), t0, None)
    with contextlib.suppress(OSError):
        ckpt.unlink()
    return rec


def val_curve(trials: list[TrialResult]) -> list[dict[str, Any]]:
    """The whole val grid for the record: one entry per trial, in grid order."""
    return [{"lr": t.lr, "wd": t.wd, "val": t.value, "status": t.status, "seed": t.seed, "steps": t.steps,
             "seconds": t.seconds, "final_loss": t.final_loss} for t in trials]


def grid_record(ctx: Context, trials: list[TrialResult], spec: Any, final: tuple[Any, ...] | None, t0: float,
            error: str | None) -> Record:
    """The one record of the job: ok with the test metric, or diverged with the reason."""
    from clrbench.eval.finetune.trainer import compute_dtype

    test = ctx.data.test
    hparams: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    value = stderr = None
    timings: dict[str, Any] = {"trials_s": round(sum(t.seconds for t in trials), 3), "n_trials": len(trials)}
    if spec is not None:
        hparams = {"lr": spec.lr, "wd": spec.wd, "sgd_weight_decay": spec.weight_decay, "steps": spec.steps,
                   "batch_size": spec.batch_size, "bn_momentum": spec.bn_momentum, "lr_schedule": spec.schedule,
                   "train_crop": spec.sizes.train_crop, "test_resize": spec.sizes.test_resize,
                   "test_crop": spec.sizes.test_crop, "seed": spec.seed,
                   "precision": compute_dtype(ctx.job.device, spec.precision)}
    if final is not None:
        scores, valid, info = final
        value = split_score(ctx, scores, valid, "test")
        y = test.targets[valid]
        pred = (scores[valid] > 0).astype(int) if ctx.card.multilabel else scores[valid].argmax(1)
        stderr = test_stderr(y, pred, ctx.card.multilabel, value)
        predictions = {"y": y.tolist(), "pred": pred.tolist()}
        timings.update({"final_s": info["seconds"], "final_resumed_from": info["resumed_from"],
                        "final_loss": info["final_loss"]})
    timings["total_s"] = round(time.time() - t0, 3)
    diverged = [[t.lr, t.wd] for t in trials if t.status != "ok"]
    sizes = {"train": len(ctx.data.train), "val": len(ctx.data.val), "test": len(test)}
    return make_record(
        ctx.job.checkpoint_id, ctx.card.name, ctx.proto.name, card=ctx.card, proto=ctx.proto,
        status="ok" if error is None else "diverged", checkpoint=ctx.encoder.describe(), value=value,
        data_tags=ctx.data.tags,
        stderr=stderr, hparams=hparams, val_curve=val_curve(trials), predictions=predictions, split_sizes=sizes,
        split_hash=ctx.data.split_hash, timings=timings, error=error,
        tags={"diverged_trials": diverged} if diverged else {},
    )

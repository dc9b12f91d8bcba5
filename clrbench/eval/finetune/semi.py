"""Semi-supervised fine-tuning (SimCLRv2, Chen et al. 2020b): few labels, the whole network.

S-v2 sec 2-3 and the GR README ("fine-tune the whole network on ImageNet (1% of labels)"):
the pretrained network is fine-tuned from the first layer of its 3-layer projection head
(``head:1``; from the encoder when there is no v2 head) plus a new zero-initialised linear
classifier, with LARS at lr 0.005 x sqrt(batch), batch 1024, no weight decay, no warmup,
cosine decay, random crop + horizontal flip only, for 60 epochs on 1% of the labels and 30 on
10%. Only a labelled subset of the task's train split is used:

- ``fraction``: each class contributes round(fraction x its train images), at least one,
  drawn with a generator seeded by (subset_seed, class) -- stratified, so the subset keeps
  the class balance of train (ImageNet's, like the paper's lists, is near uniform);
- ``per_class``: that many images of every class (all of a class that has fewer);
- ``subset_file``: the train images named in a file, one per line (the official ImageNet 1% /
  10% lists of google-research/simclr ``imagenet_subsets/``), matched by file name.

Each learning rate of the protocol is one trial on the subset, scored on val (selection on
val as every clrbench protocol; a luxury a real 1%-label setting lacks, noted in the docs).
The selected trial's network is scored on test -- not retrained on subset + val, which would
change the label fraction -- and kept, content-addressed, for ``clrbench distill``
(:mod:`clrbench.eval.finetune.stored`). The subset's index list is hashed into the record.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.data.cards import TaskCard
from clrbench.data.subsets import labelled_subset, subset_digest
from clrbench.eval.finetune.grid import TrialResult, image_sizes, read_trial, save_trial, val_curve
from clrbench.eval.finetune.images import ImageSizes
from clrbench.eval.jobs import EvalError, EvalJob, load_job_task, make_record, test_stderr
from clrbench.eval.protocols import SemiProtocol, load_protocol
from clrbench.records import Record


def subset_from_file(ids: list[str], path: str | Path) -> np.ndarray:
    """Sorted indices of the train images named in ``path`` (one file name per line, e.g.
    ``n01440764_10026.JPEG``), matched against the file name of each image id.

    Raises:
        EvalError: the file is missing, empty, or names images the train split lacks.
    """
    p = Path(os.path.expandvars(str(path))).expanduser()
    try:
        wanted = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise EvalError(f"cannot read the subset file {p} ({e.strerror}).") from None
    if not wanted:
        raise EvalError(f"the subset file {p} lists no images.")
    where = {Path(i).name: k for k, i in enumerate(ids)}
    missing = [w for w in wanted if Path(w).name not in where]
    if missing:
        raise EvalError(f"{len(missing)} of the {len(wanted)} images in {p} are not in the task's train split "
                        f"(first: {missing[0]}); is it the list for this dataset?")
    return np.array(sorted({where[Path(w).name] for w in wanted}), dtype=np.int64)


@dataclass
class SemiContext:
    """What every trial of one (checkpoint, task, semi protocol) needs, loaded once."""

    job: EvalJob
    proto: SemiProtocol
    card: TaskCard
    data: Any  # clrbench.data.splits.TaskData
    encoder: Any  # the encoder at its feature layer (clrbench.weights.layers.at_layer)
    layer: str  # the resolved feature layer
    subset: np.ndarray  # sorted train indices of the labelled subset
    subset_hash: str
    sizes: ImageSizes
    folder: Path

    @property
    def labelled(self) -> Any:
        return self.data.train.subset(self.subset)


def semi_context(job: EvalJob) -> SemiContext:
    from clrbench.weights.adapters import load_encoder
    from clrbench.weights.layers import at_layer, default_layer

    proto = load_protocol(job.protocol)
    if not isinstance(proto, SemiProtocol):
        raise EvalError(f"protocol {job.protocol!r} is not a semi-supervised protocol.")
    card, data = load_job_task(job)
    base = load_encoder(job.checkpoint)
    layer = default_layer(base) if proto.feature_layer == "auto" else proto.feature_layer
    encoder = at_layer(base, layer)
    if proto.subset_file is not None:
        subset = subset_from_file(data.train.ids, proto.subset_file)
    else:
        subset = labelled_subset(data.train.targets, proto.fraction, proto.per_class, proto.subset_seed)
    digest = subset_digest(data.split_hash, subset)
    sizes = image_sizes(proto, card)  # type: ignore[arg-type]  # same size fields as FinetuneProtocol
    fields = {k: v for k, v in asdict(proto).items() if k not in ("resources", "notes", "checkpoint_every")}
    key = json.dumps({"encoder": encoder.sha256, "card": f"{card.name}@{card.version}", "split": data.split_hash,
                      "subset": digest, "layer": layer, "protocol": fields, "sizes": asdict(sizes)},
                     sort_keys=True, default=list)
    folder = Path(job.cache_dir) / "semi" / job.checkpoint_id / f"{card.name}__{proto.name}" / \
        hashlib.sha256(key.encode()).hexdigest()[:16]
    return SemiContext(job, proto, card, data, encoder, layer, subset, digest, sizes, folder)


def schedule(proto: SemiProtocol, n_labelled: int) -> tuple[int, int]:
    """(batch, steps): the batch is capped at the subset size; steps = ceil(epochs x batches per epoch)."""
    from clrbench.eval.finetune.trainer import steps_per_epoch

    batch = min(proto.batch_size, n_labelled)
    return batch, max(1, math.ceil(proto.epochs * steps_per_epoch(n_labelled, batch)))


def scaled_lr(proto: SemiProtocol, lr_base: float, batch: int) -> float:
    """lr_base x sqrt(batch) (S-v2 / GR ``learning_rate_scaling=sqrt``) or x batch / 256."""
    return lr_base * math.sqrt(batch) if proto.lr_scaling == "sqrt" else lr_base * batch / 256


def trial_spec(ctx: SemiContext, i: int) -> Any:
    from clrbench.eval.finetune.trainer import TrialSpec, bn_momentum

    p, n = ctx.proto, len(ctx.subset)
    batch, steps = schedule(p, n)
    return TrialSpec(lr=scaled_lr(p, p.lr_bases[i], batch), wd=0.0, weight_decay=0.0, seed=p.seed * 10_000 + 1 + i,
                     steps=steps, batch_size=batch, momentum=p.momentum, schedule="cosine",
                     bn_momentum=bn_momentum(n, batch, p.bn_momentum_rule), sizes=ctx.sizes,
                     crop_scale=p.crop_scale, precision=p.precision, checkpoint_every=p.checkpoint_every,
                     num_classes=ctx.card.num_classes, multilabel=ctx.card.multilabel)


def make_optimizer(proto: SemiProtocol) -> Any:
    """(net, spec) -> LARS without weight decay or SGD with momentum (GR README:
    --optimizer=lars --weight_decay=0). As GR's ``build_optimizer`` (tf2/model.py), BN
    parameters, biases and the new classifier (``head_supervised``) are excluded from LARS's
    layer adaptation: a zero-initialised classifier would otherwise learn at eta x its norm."""
    import torch

    def build(net: Any, spec: Any) -> torch.optim.Optimizer:
        if proto.optimizer == "sgd":
            return torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=0.0)
        from clrbench.simclr.lars import LARS, param_groups

        adapted, excluded = param_groups(net, 0.0)
        classifier = {id(p) for p in net.head.parameters()}
        excluded["params"] = excluded["params"] + [p for p in adapted["params"] if id(p) in classifier]
        adapted["params"] = [p for p in adapted["params"] if id(p) not in classifier]
        return LARS([adapted, excluded], lr=spec.lr, momentum=spec.momentum, weight_decay=0.0)

    return build


def _score(ctx: SemiContext, scores: np.ndarray, valid: np.ndarray, split: str) -> float:
    from clrbench.eval.metrics import score

    part = getattr(ctx.data, split)
    ignore = None if part.ignore is None else part.ignore[valid]
    return 100.0 * score(ctx.card.metric, part.targets[valid], scores[valid], ignore)


def trial_file(ctx: SemiContext, i: int) -> Path:
    return ctx.folder / f"trial-lr{i}.json"


def run_semi_trial(ctx: SemiContext, i: int) -> TrialResult:
    """Train trial ``i`` (the i-th lr) on the labelled subset, score val; its weights stay on
    disk (``trial-lr{i}.pt``) until the job has stored the selected one."""
    from clrbench.eval.finetune.trainer import predict, train_trial

    done = read_trial(trial_file(ctx, i))
    if done is not None and (ctx.folder / f"trial-lr{i}.pt").exists():
        return done
    spec = trial_spec(ctx, i)
    t0 = time.time()
    net, out = train_trial(ctx.encoder, ctx.labelled, spec, ctx.job.device, ctx.folder / f"trial-lr{i}.pt",
                           optimizer=make_optimizer(ctx.proto))
    value = None
    if out.status == "ok":
        scores, valid = predict(net, ctx.encoder, ctx.data.val, ctx.sizes, spec, ctx.job.device)
        value = _score(ctx, scores, valid, "val") if np.isfinite(scores[valid]).all() else None
    result = TrialResult(ctx.job.checkpoint_id, ctx.card.name, ctx.proto.name, spec.lr, 0.0, spec.seed,
                         "ok" if value is not None else "diverged", value, out.steps_done,
                         round(time.time() - t0, 3), out.final_loss, out.resumed_from, str(trial_file(ctx, i)))
    save_trial(result)
    return result


def run_semi(job: EvalJob) -> Record:
    """Every trial (missing ones run here), select on val, score test, store the network."""
    from clrbench.eval.finetune.trainer import build_net, predict
    from clrbench.weights.checkpoint import load

    ctx = semi_context(job)
    t0 = time.time()
    trials = [run_semi_trial(ctx, i) for i in range(len(ctx.proto.lr_bases))]
    scored = [(k, t) for k, t in enumerate(trials) if t.status == "ok" and t.value is not None]
    if not scored:
        return _record(ctx, trials, None, None, t0, "every learning-rate trial diverged")
    best_i, _best = max(scored, key=lambda kt: kt[1].value or 0.0)  # ties: the earlier (smaller) lr
    spec = trial_spec(ctx, best_i)
    import torch

    net = build_net(ctx.encoder, spec, torch.device(job.device))
    net.load_state_dict(load(ctx.folder / f"trial-lr{best_i}.pt")["model"])
    scores, valid = predict(net, ctx.encoder, ctx.data.test, ctx.sizes, spec, job.device)
    stored = _store(ctx, net)
    return _record(ctx, trials, spec, (scores, valid, best_i, stored), t0, None)


def _store(ctx: SemiContext, net: Any) -> dict[str, Any]:
    """Keep the selected network for distillation; returns {path, sha256} for the record."""
    from clrbench.eval.finetune.stored import save_model
    from clrbench.weights.layers import parse_feature_layer

    depth = parse_feature_layer(ctx.layer)
    meta = {k: v for k, v in ctx.encoder.meta.items() if k not in ("feature_layer", "distill")}
    if depth:
        meta["feature_dim"] = None  # the encoder's own width is rebuilt from arch and width
    info = {"feature_depth": depth, "head_meta": ctx.encoder.head_meta if depth else None,
            "num_classes": ctx.card.num_classes, "multilabel": ctx.card.multilabel, "task": ctx.card.name,
            "task_version": ctx.card.version, "split_hash": ctx.data.split_hash, "protocol": ctx.proto.name,
            "protocol_version": ctx.proto.version, "checkpoint_id": ctx.job.checkpoint_id,
            "base_checkpoint": ctx.job.checkpoint, "feature_layer": ctx.layer,
            "subset": [int(i) for i in ctx.subset], "subset_hash": ctx.subset_hash,
            "sizes": asdict(ctx.sizes)}
    path, sha = save_model(ctx.job.cache_dir, net, meta, info)
    return {"path": str(path), "sha256": sha}


def _record(ctx: SemiContext, trials: list[TrialResult], spec: Any, final: tuple[Any, ...] | None, t0: float,
            error: str | None) -> Record:
    from clrbench.eval.finetune.trainer import compute_dtype

    test, p = ctx.data.test, ctx.proto
    per_class = np.bincount(ctx.data.train.targets[ctx.subset].reshape(len(ctx.subset), -1).argmax(1)
                            if ctx.card.multilabel else ctx.data.train.targets[ctx.subset])
    tags: dict[str, Any] = {"subset_hash": ctx.subset_hash, "labelled": len(ctx.subset),
                            "labelled_per_class": [int(per_class[per_class > 0].min()), int(per_class.max())],
                            "label_fraction": round(len(ctx.subset) / max(len(ctx.data.train), 1), 6),
                            "feature_layer": ctx.layer}
    hparams: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    value = stderr = None
    timings: dict[str, Any] = {"trials_s": round(sum(t.seconds for t in trials), 3), "n_trials": len(trials)}
    if spec is not None:
        hparams = {"lr": spec.lr, "optimizer": p.optimizer, "weight_decay": 0.0, "steps": spec.steps,
                   "batch_size": spec.batch_size, "epochs": p.epochs, "bn_momentum": spec.bn_momentum,
                   "lr_schedule": "cosine", "feature_layer": ctx.layer, "train_crop": spec.sizes.train_crop,
                   "test_resize": spec.sizes.test_resize, "test_crop": spec.sizes.test_crop, "seed": spec.seed,
                   "precision": compute_dtype(ctx.job.device, spec.precision)}
    if final is not None:
        scores, valid, best_i, stored = final
        hparams["lr_base"] = p.lr_bases[best_i]
        value = _score(ctx, scores, valid, "test")
        y = test.targets[valid]
        pred = (scores[valid] > 0).astype(int) if ctx.card.multilabel else scores[valid].argmax(1)
        stderr = test_stderr(y, pred, ctx.card.multilabel, value)
        predictions = {"y": y.tolist(), "pred": pred.tolist()}
        tags["model"] = stored  # the fine-tuned network, for clrbench distill --teacher
    timings["total_s"] = round(time.time() - t0, 3)
    sizes = {"train": len(ctx.data.train), "val": len(ctx.data.val), "test": len(test)}  # labelled: tags
    return make_record(
        ctx.job.checkpoint_id, ctx.card.name, p.name, card=ctx.card, proto=p, data_tags=ctx.data.tags,
        status="ok" if error is None else "diverged", value=value, stderr=stderr,
        checkpoint=ctx.encoder.describe(), hparams=hparams, val_curve=val_curve(trials), predictions=predictions,
        split_sizes=sizes, split_hash=ctx.data.split_hash, timings=timings, error=error, tags=tags,
    )

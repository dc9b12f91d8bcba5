"""The frozen features of one job's train / val / test splits, from the shared cache.

Every frozen-feature protocol (linear probe, kNN, few-shot) starts the same way: the task's
card and splits, the encoder, then each split's features under a content-addressed key
(:func:`clrbench.eval.features.cache_key`). Protocols with the same ``feature_layer``,
``dtype`` and resolution share one key, so a kNN or few-shot job after a linear one reads the
linear job's features instead of extracting them again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.eval.jobs import EvalJob, job_card, load_job_task, make_record, split_dir
from clrbench.eval.variants import scaled_preprocessing

SPLITS = ("train", "val", "test")


@dataclass
class FeatureSplits:
    """Features and labels of the images that decoded, per split.

    Attributes:
        card: the task card.
        described: the encoder's description (what records keep of the checkpoint).
        split_hash: hash of the index lists.
        x: split -> (n_valid, d) float32 features.
        y: split -> (n_valid,) class indices, or (n_valid, C) 0/1 for map11.
        ignore: split -> (n_valid, C) difficult-only mask, or None.
        valid: split -> (n,) bool, False for images that could not be decoded.
        preprocessing: the preprocessing the features were extracted with.
        cached: every split came from the cache.
        seconds: wall time spent here.
        data_tags: the task data's tags (hub source, --limit) for the record.
    """

    card: Any
    described: dict[str, Any]
    split_hash: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    ignore: dict[str, np.ndarray | None]
    valid: dict[str, np.ndarray]
    preprocessing: Any
    cached: bool
    seconds: float
    data_tags: dict[str, Any]

    @property
    def sizes(self) -> dict[str, int]:
        return {s: int(v.sum()) for s, v in self.valid.items()}

    @property
    def skipped(self) -> dict[str, int]:
        return {s: int((~v).sum()) for s, v in self.valid.items() if (~v).any()}

    def resolution_tag(self, resolution: int | None) -> dict[str, Any]:
        """What a record says about the pixels: the rule and the resize / crop used."""
        pre = self.preprocessing
        return {"px": pre.crop, "resize": pre.resize, "crop": pre.crop,
                "rule": "card" if resolution is None else "scaled to the protocol's resolution"}

    def record(self, job: EvalJob, proto: Any, *, tags: dict[str, Any] | None = None, **fields: Any) -> Any:
        """The ok Record of a frozen-feature protocol on these splits: the fields every such
        protocol shares (encoder, task data, split sizes and hash, resolution and skipped-image
        tags) plus ``fields`` (value, stderr, hparams, ...; ``split_sizes`` may be overridden)."""
        all_tags = {"resolution": self.resolution_tag(proto.resolution), **(tags or {})}
        if self.skipped:
            all_tags["skipped_images"] = self.skipped
        fields.setdefault("split_sizes", self.sizes)
        return make_record(job.checkpoint_id, self.card.name, proto.name, card=self.card, proto=proto,
                           checkpoint=self.described, data_tags=self.data_tags, split_hash=self.split_hash,
                           tags=all_tags, **fields)


def feature_splits(job: EvalJob, proto: Any) -> FeatureSplits:
    """Features of train, val and test for ``job`` under ``proto``'s layer, dtype and resolution.

    The cached path first: with the split lists stored and every split's features cached,
    nothing is loaded but arrays (no images, no weights). Otherwise the task and the encoder
    are loaded and the missing features extracted (and cached).

    Args:
        job: the job (checkpoint, task, cache_dir, data_root, tasks_dir, device).
        proto: any frozen-feature protocol (``feature_layer``, ``dtype``, ``batch_size``,
            ``resolution``).
    """
    from clrbench.data.hub import resolve_source
    from clrbench.data.splits import stored_split_hash, task_tags
    from clrbench.eval.features import cache_key, cached_features, features_for
    from clrbench.weights.identity import encoder_info
    from clrbench.weights.layers import at_layer, canonical

    t0 = time.time()
    card = job_card(job)
    cache = Path(job.cache_dir)
    info = encoder_info(job.checkpoint, cache)
    pre = scaled_preprocessing(card.preprocessing, getattr(proto, "resolution", None))

    def key(split: str, split_hash: str) -> str:
        return cache_key(info.sha256, card.name, card.version, split, split_hash, pre, info.meta,
                         proto.feature_layer, proto.dtype)

    source = resolve_source(card, Path(job.data_root) if job.data_root else None, job.source)
    split_hash = stored_split_hash(card, split_dir(job), source, job.limit)
    # The remembered identity hashes the encoder alone; features of a head layer (S-v2) also
    # depend on the head's weights, so those jobs always load the checkpoint.
    if split_hash is not None and not job.force and canonical(proto.feature_layer) == "pooled":
        got = {s: cached_features(key(s, split_hash), cache) for s in SPLITS}
        if all(g is not None for g in got.values()):
            return _splits(card, info.describe(), split_hash, got, pre, t0, task_tags(source, job.limit))
    from clrbench.weights.adapters import load_encoder

    card, data = load_job_task(job)
    encoder = at_layer(load_encoder(job.checkpoint), proto.feature_layer)  # honours head:k (S-v2)
    sets = {s: features_for(encoder, getattr(data, s), key(s, data.split_hash), cache, pre,
                            proto.batch_size, proto.dtype, job.device, force=job.force) for s in SPLITS}
    return _splits(card, encoder.describe(), data.split_hash, sets, pre, t0, data.tags)


def _splits(card: Any, described: dict[str, Any], split_hash: str, sets: dict[str, Any], pre: Any,
            t0: float, data_tags: dict[str, Any]) -> FeatureSplits:
    from clrbench.eval.features import valid_rows

    x, y, ignore, valid = {}, {}, {}, {}
    for split, got in sets.items():
        ok = np.asarray(got.valid, bool)
        valid[split] = ok
        x[split] = valid_rows(got.features, ok)
        y[split] = got.targets[ok]
        ignore[split] = None if got.ignore is None else got.ignore[ok]
    return FeatureSplits(card, described, split_hash, x, y, ignore, valid, pre,
                         all(g.cached for g in sets.values()), time.time() - t0, data_tags)

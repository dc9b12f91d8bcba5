"""The frozen features of one job's train / val / test splits, from the shared cache.

Every frozen-feature protocol (linear probe, kNN, few-shot) starts the same way: the task's
card and splits, the encoder, then each split's features under a content-addressed key
(:func:`clrbench.eval.features.cache_key`). Protocols with the same ``feature_layer``,
``dtype`` and resolution share one key, so a kNN or few-shot job after a linear one reads the
linear job's features instead of extracting them again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.eval.variants import scaled_preprocessing

SPLITS = ("train", "val", "test")


@dataclass
class FeatureSplits:
    """Features and labels of the images that decoded, per split.

    Attributes:
        card: the task card.
        encoder: the loaded encoder (``describe()`` goes into records).
        split_hash: hash of the index lists.
        x: split -> (n_valid, d) float32 features.
        y: split -> (n_valid,) class indices, or (n_valid, C) 0/1 for map11.
        ignore: split -> (n_valid, C) difficult-only mask, or None.
        valid: split -> (n,) bool, False for images that could not be decoded.
        preprocessing: the preprocessing the features were extracted with.
        cached: every split came from the cache.
        seconds: wall time spent here.
    """

    card: Any
    encoder: Any
    split_hash: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    ignore: dict[str, np.ndarray | None]
    valid: dict[str, np.ndarray]
    preprocessing: Any
    cached: bool
    seconds: float

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


def load_task(job: Any) -> tuple[Any, Any]:
    """(card, TaskData) of ``job.task``; a missing dataset names what to fetch."""
    from clrbench.data.cards import load_cards
    from clrbench.data.images import DatasetError
    from clrbench.data.splits import load_task as load_splits

    card = load_cards(job.tasks_dir)[job.task]
    root = Path(job.data_root) if job.data_root else None
    try:
        return card, load_splits(card, root, Path(job.cache_dir) / "splits")
    except DatasetError as e:
        if card.source.root_dir is None:  # offline tasks: nothing to fetch
            raise
        from clrbench.data.fetch import missing_message

        raise DatasetError(f"{e} {missing_message(card, root)}") from None


def feature_splits(job: Any, proto: Any) -> FeatureSplits:
    """Features of train, val and test for ``job`` under ``proto``'s layer, dtype and resolution.

    Args:
        job: an EvalJob (checkpoint, task, cache_dir, data_root, tasks_dir, device).
        proto: any frozen-feature protocol (``feature_layer``, ``dtype``, ``batch_size``,
            ``resolution``).
    """
    from clrbench.eval.features import cache_key, features_for
    from clrbench.weights.adapters import load_encoder

    t0 = time.time()
    card, data = load_task(job)
    encoder = load_encoder(job.checkpoint)
    pre = scaled_preprocessing(card.preprocessing, getattr(proto, "resolution", None))
    x, y, ignore, valid = {}, {}, {}, {}
    cached = True
    for split in SPLITS:
        images = getattr(data, split)
        key = cache_key(encoder.sha256, card.name, card.version, split, data.split_hash, pre, encoder.meta,
                        proto.feature_layer, proto.dtype)
        got = features_for(encoder, images, key, Path(job.cache_dir), pre, proto.batch_size, proto.dtype, job.device)
        ok = np.asarray(got.valid, bool)
        valid[split], cached = ok, cached and got.cached
        x[split] = np.asarray(got.features)[ok]
        y[split] = images.targets[ok]
        ignore[split] = None if images.ignore is None else images.ignore[ok]
    return FeatureSplits(card, encoder, data.split_hash, x, y, ignore, valid, pre, cached, time.time() - t0)


def metric_stderr(y: np.ndarray, pred: np.ndarray, metric: str, value: float) -> float:
    """Standard error of a test metric in percent: binomial for accuracy-like metrics, the spread
    of per-example label agreement (pred: (n, C) 0/1) for mAP, as the linear job reports it."""
    n = max(len(y), 1)
    if metric == "map11":
        agree = (np.asarray(pred) == np.asarray(y)).mean(1)
        return float(100 * agree.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    p = value / 100
    return float(100 * math.sqrt(max(p * (1 - p), 0.0) / n))

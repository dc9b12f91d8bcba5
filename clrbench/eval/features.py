"""Frozen-encoder features, extracted once and kept in a content-addressed cache on disk.

Preprocessing follows S-v1 B.8.1: bicubic resize of the shorter side, centre crop, no
augmentation; inputs scaled to the encoder's own range and normalisation (its metadata).
BN runs in inference mode and nothing in the encoder changes (protocol.md §2.1). Features
stream into a memory-mapped file, so memory stays bounded whatever the dataset size; a split
of more than :data:`FP16_ABOVE` values (ImageNet's 1.28M x 2048) is stored as float16, half the
disk and page cache, and read back memory-mapped. Decoding and resizing run in loader worker
processes sized by the job's CPU budget (:func:`extraction_workers`), overlapping the forward.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from clrbench.atomic import atomic_file, publish, write_bytes
from clrbench.data.cards import Preprocessing
from clrbench.data.images import LabeledImages
from clrbench.weights.adapters import Encoder
from clrbench.weights.adapters.core import input_normaliser


def cache_key(encoder_sha256: str, card: str, card_version: int, split: str, split_hash: str,
              preprocessing: Preprocessing, meta: dict[str, Any], layer: str, dtype: str) -> str:
    """sha256 over everything that can change a feature (design.md: never a name alone)."""
    fields = {
        "encoder": encoder_sha256, "card": f"{card}@{card_version}", "split": split,
        "split_hash": split_hash, "resize": preprocessing.resize, "crop": preprocessing.crop,
        "interpolation": preprocessing.interpolation, "input_range": meta.get("input_range"),
        "mean": meta.get("mean"), "std": meta.get("std"), "layer": layer, "dtype": dtype,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class _Preprocessed(torch.utils.data.Dataset):
    """Decodes and preprocesses one image; an unreadable one yields zeros and a False flag."""

    def __init__(self, images: LabeledImages, pre: Preprocessing) -> None:
        from torchvision.transforms import v2 as T

        mode = T.InterpolationMode.BICUBIC if pre.interpolation == "bicubic" else T.InterpolationMode.BILINEAR
        self.images, self.crop = images, pre.crop
        self.transform = T.Compose([T.ToImage(), T.Resize(pre.resize, interpolation=mode, antialias=True),
                                    T.CenterCrop(pre.crop), T.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        try:
            image: Image.Image = self.images.load_image(i)
            return self.transform(image).clamp_(0, 1), True
        except (OSError, ValueError, SyntaxError):  # truncated or corrupt file: counted, not fatal
            return torch.zeros(3, self.crop, self.crop), False


# Splits with more feature values than this are stored as float16 (bf16-computed features lose
# nothing: fp16 has more mantissa bits; values are clipped to its range). 2^28 values = 1 GiB fp32.
FP16_ABOVE = 1 << 28
_FP16_MAX = float(np.finfo(np.float16).max)


def storage_dtype(n: int, dim: int, dtype: str) -> type:
    """float16 for large splits extracted in bfloat16, float32 otherwise (a pure function of the
    cache key's fields, so the key needs no new field)."""
    return np.float16 if dtype == "bfloat16" and n * dim > FP16_ABOVE else np.float32


def extraction_workers(device: torch.device, n_batches: int) -> int:
    """Decoding workers from the job's CPU budget (``$CLRBENCH_CPUS``, set by the executor; else
    the machine's cores): beside a GPU, all but the feeding process's core (up to 16); on the
    CPU, the cores the forward's torch threads leave free. None for a single batch (nothing to
    overlap)."""
    budget = int(os.environ.get("CLRBENCH_CPUS") or os.cpu_count() or 1)
    free = max(1, min(16, budget - 1)) if device.type != "cpu" else max(0, budget - torch.get_num_threads())
    return min(free, max(0, n_batches - 1))


def valid_rows(features: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The rows of decodable images; the memory-mapped array itself when all are (no copy)."""
    return features if bool(np.all(valid)) else np.asarray(features[valid])


@torch.no_grad()
def extract_features(encoder: Encoder, images: LabeledImages, pre: Preprocessing, out: Path,
                     batch_size: int = 256, dtype: str = "bfloat16", device: str | torch.device = "cpu",
                     num_workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of every image, written to ``out`` (.npy) atomically.

    Args:
        num_workers: loader processes; default :func:`extraction_workers`.

    Returns:
        features: (n, feature_dim) float32 (float16 above :data:`FP16_ABOVE` values),
            memory-mapped from ``out``.
        valid: (n,) bool, False for images that could not be decoded (their rows are zeros).
    """
    dev = torch.device(device)
    module = encoder.module.to(dev).eval()
    from clrbench.device import autocast_for

    norm = input_normaliser(encoder.meta, dev)
    precision = "auto" if dtype == "bfloat16" else "fp32"
    n_batches = -(-len(images) // batch_size)
    workers = extraction_workers(dev, n_batches) if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(_Preprocessed(images, pre), batch_size=batch_size,
                                         num_workers=workers, shuffle=False, pin_memory=dev.type == "cuda",
                                         prefetch_factor=4 if workers else None)
    store = storage_dtype(len(images), encoder.meta["feature_dim"], dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".npy")
    os.close(fd)
    valid = np.ones(len(images), bool)
    try:
        feats = np.lib.format.open_memmap(tmp, mode="w+", dtype=store,
                                          shape=(len(images), encoder.meta["feature_dim"]))
        start = 0
        for x, ok in loader:
            x = norm(x.to(dev, non_blocking=True)).contiguous(memory_format=torch.channels_last)
            with autocast_for(dev, precision):
                h = module(x)
            h = h.float().clamp_(-_FP16_MAX, _FP16_MAX) if store is np.float16 else h.float()
            feats[start : start + len(x)] = h.cpu().numpy()
            valid[start : start + len(x)] = ok.numpy()
            start += len(x)
        feats.flush()
        del feats
        publish(tmp, out)
        with atomic_file(out.with_suffix(".valid.npy")) as f:
            np.save(f, valid)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.load(out, mmap_mode="r"), valid


@dataclass
class CachedFeatures:
    """The features of one split, with the labels they were extracted for.

    ``targets`` / ``ignore`` are the split's (n,) or (n, C) targets and VOC's (n, C) mask (or
    None): kept beside the features so that a job whose features are cached needs neither the
    images nor the encoder weights (:func:`cached_features`).
    """

    features: np.ndarray  # (n, d) float32
    valid: np.ndarray  # (n,) bool
    cached: bool  # True when read from the cache rather than computed
    targets: np.ndarray | None = None
    ignore: np.ndarray | None = None


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path, Path]:
    path = cache_dir / "features" / f"{key}.npy"
    return path, path.with_suffix(".valid.npy"), path.with_suffix(".labels.npz")


def _save_labels(path: Path, images: LabeledImages) -> None:
    arrays = {"targets": np.asarray(images.targets)}
    if images.ignore is not None:
        arrays["ignore"] = np.asarray(images.ignore)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    write_bytes(path, buf.getvalue())


def cached_features(key: str, cache_dir: Path) -> CachedFeatures | None:
    """The cached features of ``key`` with their labels, or None when any part is missing or
    does not match its seal (:mod:`clrbench.eval.cache_check`)."""
    from clrbench.eval.cache_check import read_verified

    path, valid_path, labels_path = _paths(cache_dir, key)
    try:
        with np.load(labels_path) as z:
            targets, ignore = z["targets"], (z["ignore"] if "ignore" in z.files else None)
    except (OSError, ValueError, KeyError):  # missing or unreadable: the caller extracts again
        return None
    got = read_verified(path, valid_path, len(targets), labels_path)
    return None if got is None else CachedFeatures(got[0], got[1], True, targets, ignore)


def features_for(encoder: Encoder, images: LabeledImages, key: str, cache_dir: Path, pre: Preprocessing,
                 batch_size: int, dtype: str, device: str | torch.device = "cpu",
                 force: bool = False) -> CachedFeatures:
    """Read the features of ``key`` from the cache, or extract and store them (with the labels).

    A cache entry is used only when its files match the size and sha256 stored beside them when
    it was written (``<key>.check.json``); a truncated or damaged entry is recomputed, as is every
    entry when ``force`` is set.
    """
    from clrbench.eval.cache_check import read_verified, seal

    path, valid_path, labels_path = _paths(cache_dir, key)
    if not force:
        got = read_verified(path, valid_path, len(images))
        if got is not None:
            if not labels_path.exists():  # written by an older clrbench: add the labels now
                _save_labels(labels_path, images)
                seal(path, valid_path, labels_path)
            return CachedFeatures(got[0], got[1], True, images.targets, images.ignore)
    feats, valid = extract_features(encoder, images, pre, path, batch_size, dtype, device)
    _save_labels(labels_path, images)
    seal(path, valid_path, labels_path)
    return CachedFeatures(feats, valid, False, images.targets, images.ignore)

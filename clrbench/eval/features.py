"""Frozen-encoder features, extracted once and kept in a content-addressed cache on disk.

Preprocessing follows S-v1 B.8.1: bicubic resize of the shorter side, centre crop, no
augmentation; inputs scaled to the encoder's own range and normalisation (its metadata).
BN runs in inference mode and nothing in the encoder changes (protocol.md §2.1). Features
stream into a memory-mapped file, so memory stays bounded whatever the dataset size.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from clrbench.atomic import atomic_file, publish
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


@torch.no_grad()
def extract_features(encoder: Encoder, images: LabeledImages, pre: Preprocessing, out: Path,
                     batch_size: int = 256, dtype: str = "bfloat16", device: str | torch.device = "cpu",
                     num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of every image, written to ``out`` (.npy) atomically.

    Returns:
        features: (n, feature_dim) float32, memory-mapped from ``out``.
        valid: (n,) bool, False for images that could not be decoded (their rows are zeros).
    """
    dev = torch.device(device)
    module = encoder.module.to(dev).eval()
    from clrbench.device import autocast_for

    norm = input_normaliser(encoder.meta, dev)
    precision = "auto" if dtype == "bfloat16" else "fp32"
    loader = torch.utils.data.DataLoader(_Preprocessed(images, pre), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".npy")
    os.close(fd)
    valid = np.ones(len(images), bool)
    try:
        feats = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(len(images), encoder.meta["feature_dim"]))
        start = 0
        for x, ok in loader:
            x = norm(x.to(dev, non_blocking=True)).contiguous(memory_format=torch.channels_last)
            with autocast_for(dev, precision):
                h = module(x)
            feats[start : start + len(x)] = h.float().cpu().numpy()
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
    features: np.ndarray  # (n, d) float32
    valid: np.ndarray  # (n,) bool
    cached: bool  # True when read from the cache rather than computed


def features_for(encoder: Encoder, images: LabeledImages, key: str, cache_dir: Path, pre: Preprocessing,
                 batch_size: int, dtype: str, device: str | torch.device = "cpu",
                 force: bool = False) -> CachedFeatures:
    """Read the features of ``key`` from the cache, or extract and store them.

    A cache entry is used only when its size and sha256 match those stored beside it when it
    was written (``<key>.check.json``); a truncated or damaged entry is recomputed, as is every
    entry when ``force`` is set.
    """
    from clrbench.eval.cache_check import read_verified, seal

    path = cache_dir / "features" / f"{key}.npy"
    valid_path = path.with_suffix(".valid.npy")
    if not force:
        got = read_verified(path, valid_path, len(images))
        if got is not None:
            return CachedFeatures(got[0], got[1], True)
    feats, valid = extract_features(encoder, images, pre, path, batch_size, dtype, device)
    seal(path, valid_path)
    return CachedFeatures(feats, valid, False)

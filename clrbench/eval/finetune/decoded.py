"""Decode once: a split's images resized to the pre-crop size, as uint8 in a memory-mapped cache.

A fine-tune trial decodes and resizes every image it draws, at every step, and a search runs
many trials over the same images (56 x 20,000 steps of 256 in S-v1 B.8.1). With the
protocol's ``pre_crop_size`` set, each training image is decoded a single time, its shorter
side resized (bicubic, antialiased; never enlarged) to that size, and stored; the random
resized crops of :class:`~clrbench.eval.finetune.images.TrainStream` are then cut from the
stored pixels. The crop's area fraction and aspect ratio are drawn exactly as before; only
the pixels it is resampled from are the pre-crop copy's rather than the original file's.

The cache is two files under ``<cache>/decoded/``, named by a sha256 over what can change the
pixels (card and version, split, split hash, size), as the feature cache is:
``<key>.npy``, every image's pixels back to back (flat uint8, memory-mapped, so memory stays
bounded and concurrent trials share the page cache), and ``<key>.index.npy`` (n, 3) int64 of
(offset, height, width); an image that cannot be decoded has height 0 and reads as an error,
which the stream turns into a black image as it does for a corrupt file. Both are published
atomically; trials that race to build the same key write identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clrbench.atomic import publish
from clrbench.data.images import LabeledImages

_UNREADABLE = (OSError, ValueError, SyntaxError)


def cache_key(card: str, card_version: int, split: str, split_hash: str, size: int) -> str:
    """sha256 over everything that can change the stored pixels (never a name alone)."""
    fields = {"card": f"{card}@{card_version}", "split": split, "split_hash": split_hash, "size": size,
              "resize": "shorter-side bicubic antialiased, never enlarged", "format": 1}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def shrink(image: Image.Image, size: int) -> Image.Image:
    """RGB ``image`` with its shorter side resized to ``size`` (bicubic; PIL antialiases when
    shrinking), or unchanged when it is already that small."""
    image = image.convert("RGB")
    w, h = image.size
    if min(w, h) <= size:
        return image
    scale = size / min(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)


class DecodedImages(LabeledImages):
    """A split served from the decode-once cache; same targets, ignore mask and ids."""

    def __init__(self, pixels: np.ndarray, index: np.ndarray, like: LabeledImages) -> None:
        super().__init__(like.targets, like.num_classes, ignore=like.ignore, ids=like.ids)
        self.pixels, self.index = pixels, index

    def load_image(self, i: int) -> Image.Image:
        off, h, w = (int(v) for v in self.index[i])
        if h == 0:
            raise OSError(f"image {self.ids[i]} could not be decoded when the cache was built")
        return Image.fromarray(np.asarray(self.pixels[off : off + h * w * 3]).reshape(h, w, 3))


def build(images: LabeledImages, size: int, path: Path) -> None:
    """Decode every image once, shrink it, and write the two cache files of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    index = np.zeros((len(images), 3), np.int64)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".raw")
    try:
        with os.fdopen(fd, "wb") as f:
            off = 0
            for i in range(len(images)):
                try:
                    a = np.asarray(shrink(images.load_image(i), size), dtype=np.uint8)
                except _UNREADABLE:
                    index[i] = (off, 0, 0)
                    continue
                f.write(a.tobytes())
                index[i] = (off, a.shape[0], a.shape[1])
                off += a.size
        # A .npy header in front of the raw bytes: np.load(mmap_mode="r") opens it.
        fd2, npy = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
        os.close(fd2)
        out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(max(off, 1),))
        with open(tmp, "rb") as f:
            pos = 0
            while chunk := f.read(1 << 24):
                out[pos : pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
                pos += len(chunk)
        out.flush()
        del out
        idx_tmp = path.with_name(f".{path.stem}.{os.getpid()}.index.npy")
        np.save(idx_tmp, index)
        publish(idx_tmp, path.with_suffix(".index.npy"))
        publish(npy, path)  # last: its presence means the pair is complete
    finally:
        Path(tmp).unlink(missing_ok=True)


def decoded(images: LabeledImages, key: str, cache_dir: Path, size: int) -> DecodedImages:
    """``images`` from the decode-once cache of ``key``, building it on first use."""
    path = Path(cache_dir) / "decoded" / f"{key}.npy"
    if not (path.exists() and path.with_suffix(".index.npy").exists()):
        build(images, size, path)
    return DecodedImages(np.load(path, mmap_mode="r"), np.load(path.with_suffix(".index.npy")), images)


def decoded_task(data: Any, card: Any, size: int, cache_dir: Path) -> Any:
    """The task with its train and val splits (both are trained on by the final retrain) served
    from the cache; test keeps the original images."""
    parts = {s: decoded(getattr(data, s), cache_key(card.name, card.version, s, data.split_hash, size),
                        cache_dir, size) for s in ("train", "val")}
    return replace(data, **parts)

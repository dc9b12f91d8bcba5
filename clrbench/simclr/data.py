"""Pretraining image sources and the sharded, resumable two-view batch stream.

Sources: ``embedded`` (procedural images that ship with clrbench, offline), an image
``folder`` (ImageNet layout or any tree of images), a Hugging Face dataset (``hf``: hub id or
local path), and torchvision's CIFAR-10/100 and STL-10. Fixed-size in-memory sources are
indexed directly and augmented in batch on the training device; file sources are decoded
and augmented per image in DataLoader workers. Either way the order of every epoch and the
random draws of every step derive from (seed, epoch, step), so a resumed run sees exactly
the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clrbench.config import AugmentConfig, DataConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif"}


class DataError(RuntimeError):
    """A data source that is missing, empty or unreadable; one clear sentence."""


@dataclass
class ArraySource:
    """In-memory images (n, H, W, 3) uint8, with optional labels (n,) for the online probe."""

    images: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class FileSource:
    """Images decoded on access from files or a Hugging Face dataset."""

    items: Sequence[Any]  # paths, or indices into ``hf``
    labels: np.ndarray | None
    hf: Any = None
    image_key: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> Any:
        from PIL import Image

        if self.hf is not None:
            im = self.hf[int(self.items[i])][self.image_key]
            return im.convert("RGB")
        with Image.open(self.items[i]) as im:
            return im.convert("RGB")


Source = ArraySource | FileSource


def _embedded(cfg: DataConfig) -> ArraySource:
    from clrbench import procedural

    images, labels = procedural.embedded_dataset(cfg.num_images or 20000, seed=0)
    return ArraySource(images, labels)


def _torchvision(cfg: DataConfig) -> ArraySource:
    import torchvision.datasets as tvd

    root = Path(cfg.path or "data")
    try:
        if cfg.source in ("cifar10", "cifar100"):
            cls = tvd.CIFAR10 if cfg.source == "cifar10" else tvd.CIFAR100
            ds = cls(str(root), train=cfg.split == "train", download=False)
            return ArraySource(np.asarray(ds.data), np.asarray(ds.targets))
        ds = tvd.STL10(str(root), split=cfg.split if cfg.split != "train" else "train+unlabeled", download=False)
        images = np.ascontiguousarray(np.asarray(ds.data).transpose(0, 2, 3, 1))
        labels = np.asarray(ds.labels)
        return ArraySource(images, None if (labels < 0).any() else labels)
    except RuntimeError as e:
        raise DataError(
            f"{cfg.source} is not under {root} ({e}). Fetch it once with "
            f"torchvision.datasets.{cfg.source.upper()}('{root}', download=True), "
            "or point data.path at the folder that holds it."
        ) from None


def _folder(cfg: DataConfig) -> FileSource:
    if not cfg.path:
        raise DataError("data.source folder needs data.path (or --data DIR).")
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataError(f"The data folder {root} does not exist.")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DataError(f"The data folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    classes = sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})
    labels = None
    if classes and all(len(p.relative_to(root).parts) > 1 for p in paths):
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p.relative_to(root).parts[0]] for p in paths])
    return FileSource(paths, labels)


def _hf(cfg: DataConfig) -> FileSource:
    import datasets

    if not cfg.path:
        raise DataError("data.source hf needs data.path: a hub id or a local dataset folder.")
    try:
        if Path(cfg.path).is_dir():
            ds = datasets.load_from_disk(cfg.path)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[cfg.split]
        else:
            ds = datasets.load_dataset(cfg.path, split=cfg.split)
    except Exception as e:  # datasets raises many types; one sentence is what the user needs
        raise DataError(f"Cannot open the Hugging Face dataset {cfg.path!r} (split {cfg.split}): {e}") from None
    key = cfg.image_key or next(
        (k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None
    )
    if key is None:
        raise DataError(f"{cfg.path} has no image column; name it with data.image_key.")
    labels = np.asarray(ds[cfg.label_key]) if cfg.label_key else None
    return FileSource(list(range(len(ds))), labels, hf=ds, image_key=key)


def open_source(cfg: DataConfig) -> Source:
    """Open the configured source (nothing is decoded yet except in-memory arrays)."""
    build = {"embedded": _embedded, "folder": _folder, "hf": _hf,
             "cifar10": _torchvision, "cifar100": _torchvision, "stl10": _torchvision}[cfg.source]
    src = build(cfg)
    if cfg.num_images is not None and cfg.source != "embedded":
        n = min(cfg.num_images, len(src))
        if isinstance(src, ArraySource):
            src = ArraySource(src.images[:n], None if src.labels is None else src.labels[:n])
        else:
            src = FileSource(src.items[:n], None if src.labels is None else src.labels[:n], src.hf, src.image_key)
    if len(src) == 0:
        raise DataError(f"The {cfg.source} source holds no images.")
    return src


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of one epoch; identical on every rank (a distributed sampler by hand)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def local_indices(order: np.ndarray, step: int, batch_size_global: int, rank: int, world: int) -> np.ndarray:
    """This rank's slice of the ``step``-th global batch of an epoch."""
    b = batch_size_global // world
    start = step * batch_size_global + rank * b
    return order[start : start + b]


class _TwoViewFiles(torch.utils.data.Dataset):
    """Decodes and augments one image per item; a corrupt file is replaced and counted."""

    def __init__(self, source: FileSource, cfg: AugmentConfig, seed: int) -> None:
        from clrbench.simclr.augment import TorchvisionTwoView

        self.source, self.augment, self.seed = source, TorchvisionTwoView(cfg), seed
        self.fallback_size = cfg.image_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        i, step = key
        label = int(self.source.labels[i]) if self.source.labels is not None else -1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, step, i)) & 0x7FFFFFFF)
            for attempt in range(len(self.source)):
                j = (i + attempt) % len(self.source)
                try:
                    a, b = self.augment(self.source.load(j))
                    return a, b, label, attempt
                except (OSError, ValueError, SyntaxError):
                    continue
        raise DataError("No image of the source could be decoded.")


def file_batches(
    source: FileSource, cfg: AugmentConfig, seed: int, epoch: int, start_step: int, steps: int,
    batch_size_global: int, rank: int, world: int, num_workers: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """Yield (view_a, view_b, labels, corrupt_count) for steps start_step..steps-1 of ``epoch``."""
    order = epoch_order(len(source), seed, epoch)
    global_step0 = epoch * 10_000_000
    batches = [
        [(int(i), global_step0 + s) for i in local_indices(order, s, batch_size_global, rank, world)]
        for s in range(start_step, steps)
    ]
    loader = torch.utils.data.DataLoader(
        _TwoViewFiles(source, cfg, seed), batch_sampler=batches, num_workers=num_workers,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )
    for a, b, labels, attempts in loader:
        yield a, b, labels, int((attempts > 0).sum())

"""The unlabelled images pretraining reads, from any source a recipe names (``data.source``).

Sources: ``embedded`` (procedural images that ship with clrbench, offline), an image
``folder`` (ImageNet layout or any tree of images), a Hugging Face dataset (``hf``: hub id or
local path), and torchvision's CIFAR-10/100 and STL-10. Each opens as the same
:class:`~clrbench.data.images.LabeledImages` evaluation uses; labels, where the source has
them, feed only the online probe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clrbench.config import DataConfig
from clrbench.data.images import ArrayImages, DatasetError, FileImages, HFImages, LabeledImages

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif"}


def _labels(labels: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """(targets, num_classes); no labels -> (None, 0): an unlabelled collection."""
    if labels is None:
        return None, 0
    labels = np.asarray(labels, dtype=np.int64)
    return labels, int(labels.max()) + 1 if len(labels) else 0


def _embedded(cfg: DataConfig) -> LabeledImages:
    from clrbench.data import procedural

    images, labels = procedural.embedded_dataset(cfg.num_images or 20000, seed=0)
    return ArrayImages(images, *_labels(labels))


def _torchvision(cfg: DataConfig) -> LabeledImages:
    import torchvision.datasets as tvd

    root = Path(cfg.path or "data")
    try:
        if cfg.source in ("cifar10", "cifar100"):
            cls = tvd.CIFAR10 if cfg.source == "cifar10" else tvd.CIFAR100
            ds = cls(str(root), train=cfg.split == "train", download=False)
            return ArrayImages(np.asarray(ds.data), *_labels(np.asarray(ds.targets)))
        ds = tvd.STL10(str(root), split=cfg.split if cfg.split != "train" else "train+unlabeled", download=False)
        images = np.ascontiguousarray(np.asarray(ds.data).transpose(0, 2, 3, 1))
        labels = np.asarray(ds.labels)
        return ArrayImages(images, *_labels(None if (labels < 0).any() else labels))
    except RuntimeError as e:
        raise DatasetError(
            f"{cfg.source} is not under {root} ({e}). Fetch it once with "
            f"torchvision.datasets.{cfg.source.upper()}('{root}', download=True), "
            "or point data.path at the folder that holds it."
        ) from None


def _folder(cfg: DataConfig) -> LabeledImages:
    if not cfg.path:
        raise DatasetError("data.source folder needs data.path (or --data DIR).")
    root = Path(cfg.path)
    if not root.is_dir():
        raise DatasetError(f"The data folder {root} does not exist.")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DatasetError(f"The data folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    classes = sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})
    labels = None
    if classes and all(len(p.relative_to(root).parts) > 1 for p in paths):
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p.relative_to(root).parts[0]] for p in paths])
    return FileImages(paths, *_labels(labels))


def _hf(cfg: DataConfig) -> LabeledImages:
    import datasets

    if not cfg.path:
        raise DatasetError("data.source hf needs data.path: a hub id or a local dataset folder.")
    try:
        if Path(cfg.path).is_dir():
            ds = datasets.load_from_disk(cfg.path)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[cfg.split]
        else:
            ds = datasets.load_dataset(cfg.path, split=cfg.split)
    except Exception as e:  # datasets raises many types; one sentence is what the user needs
        raise DatasetError(f"Cannot open the Hugging Face dataset {cfg.path!r} (split {cfg.split}): {e}") from None
    key = cfg.image_key or next(
        (k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None
    )
    if key is None:
        raise DatasetError(f"{cfg.path} has no image column; name it with data.image_key.")
    labels = np.asarray(ds[cfg.label_key]) if cfg.label_key else None
    return HFImages(ds, key, *_labels(labels))


def open_source(cfg: DataConfig) -> LabeledImages:
    """Open the configured source (nothing is decoded yet except in-memory arrays).

    Raises:
        DatasetError: a missing, empty or unreadable source, in one sentence.
    """
    build = {"embedded": _embedded, "folder": _folder, "hf": _hf,
             "cifar10": _torchvision, "cifar100": _torchvision, "stl10": _torchvision}[cfg.source]
    src = build(cfg)
    if cfg.num_images is not None and cfg.source != "embedded":
        src = src.subset(np.arange(min(cfg.num_images, len(src))))
    if len(src) == 0:
        raise DatasetError(f"The {cfg.source} source holds no images.")
    return src

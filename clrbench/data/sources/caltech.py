"""Caltech-101 with 102 classes (BACKGROUND_Google included) and the 30-per-class train split.

K19 / S-v1 B.8.1 train on 30 random images per class and test on all the rest; their counts
(3,060 / 6,084 of 9,144) imply the 102 folders of ``101_ObjectCategories`` including
BACKGROUND_Google, which torchvision's ``Caltech101`` drops, so this loader reads the folder tree
itself. The draw is without replacement (ssl-transfer's first list repeated 540 images) and
seeded, class by class in sorted order. Source: protocol.md §0, §1.1, §2.2.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import NamedFileImages, check_split, require

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def class_folders(base: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files; classes sorted by name, BACKGROUND_Google included."""
    tree = base / "101_ObjectCategories"
    out: dict[str, list[Path]] = {}
    for name in sorted(os.listdir(tree)):
        folder = tree / name
        if name.startswith(".") or not folder.is_dir():
            continue
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
        out[name] = [folder / f for f in files]
    return out


def train_mask(counts: list[int], per_class: int, seed: int) -> list[np.ndarray]:
    """Per class, a boolean mask of the ``per_class`` images drawn for training.

    One generator, seeded once, draws class after class without replacement, so the split is
    a pure function of (class sizes, per_class, seed).
    """
    rng = np.random.default_rng(seed)
    masks = []
    for n in counts:
        m = np.zeros(n, bool)
        m[rng.choice(n, per_class, replace=False)] = True
        masks.append(m)
    return masks


@LOADERS.register("caltech101")
def load_caltech101(root: Path | None, split: str, train_per_class: int = 30,
                    seed: int = 0) -> LabeledImages:
    """Caltech-101 ``train`` (``train_per_class`` random images per class) or ``test``."""
    check_split("caltech101", split, ("train", "test"))
    base = require(root, "caltech101")
    classes = class_folders(base)
    short = {c: len(f) for c, f in classes.items() if len(f) < train_per_class}
    if short:
        name, n = next(iter(short.items()))
        raise DatasetError(
            f"caltech101: class {name!r} has {n} images, fewer than the {train_per_class} "
            f"drawn for training ({len(short)} such classes); the folder tree is incomplete."
        )
    masks = train_mask([len(f) for f in classes.values()], train_per_class, seed)
    paths: list[Path] = []
    targets: list[int] = []
    for label, (files, mask) in enumerate(zip(classes.values(), masks, strict=True)):
        keep = mask if split == "train" else ~mask
        chosen = [f for f, k in zip(files, keep, strict=True) if k]
        paths.extend(chosen)
        targets.extend([label] * len(chosen))
    return NamedFileImages(paths, np.asarray(targets, np.int64), list(classes), root=base)

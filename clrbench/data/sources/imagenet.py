"""ILSVRC-2012 (ImageNet-1k) in the usual folder layout, for the ``imagenet`` card.

``DATA/imagenet/train/<wnid>/*.JPEG`` (1,281,167 images, 1,000 classes); the official val set
(50,000) either in class folders too (``val/<wnid>/*.JPEG``, as after the common
``valprep.sh``), or flat in ``val/`` with its labels from

- the devkit: ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (one
  ILSVRC2012_ID per image in file-name order) and ``.../data/meta.mat`` (ID -> wnid), or
- Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` with the wnid first).

Classes are the wnids sorted, torchvision ImageFolder's order (the index every ImageNet
checkpoint uses). The card carves val from train (10,000, stratified, seeded) and tests on the
official val (S-v1 B.6; protocol.md §2.3).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import NamedFileImages, check_split, need_root

SUFFIXES = (".jpeg", ".jpg", ".png")
DEVKIT = "ILSVRC2012_devkit_t12/data"
KAGGLE_VAL = "LOC_val_solution.csv"


def _files(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(SUFFIXES))


def _class_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def wnids(base: Path) -> list[str]:
    """The class folders of ``train/``, sorted."""
    train = base / "train"
    if not train.is_dir():
        raise DatasetError(f"imagenet: expected {train}/<wnid>/*.JPEG; the ILSVRC-2012 train folder is missing.")
    classes = _class_dirs(train)
    if not classes:
        raise DatasetError(f"imagenet: {train} has no class folders (train/<wnid>/*.JPEG).")
    return classes


def devkit_val_labels(base: Path) -> dict[str, str]:
    """Val file name -> wnid from the devkit's ground truth and meta.mat."""
    from scipy.io import loadmat

    data = base / DEVKIT
    try:
        synsets = loadmat(str(data / "meta.mat"), squeeze_me=True)["synsets"]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
        ids = [int(v) for v in (data / "ILSVRC2012_validation_ground_truth.txt").read_text().split()]
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DatasetError(f"imagenet: cannot read the devkit's val labels in {data} ({e}).") from None
    return {f"ILSVRC2012_val_{k:08d}.JPEG": id_to_wnid[i] for k, i in enumerate(ids, 1)}


def kaggle_val_labels(base: Path) -> dict[str, str]:
    with (base / KAGGLE_VAL).open(newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return {f"{r['ImageId']}.JPEG": r["PredictionString"].split()[0] for r in rows}
    except (KeyError, IndexError):
        raise DatasetError(f"imagenet: {base / KAGGLE_VAL} lacks the ImageId / PredictionString columns.") from None


def _val_flat(base: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    if (base / DEVKIT / "ILSVRC2012_validation_ground_truth.txt").is_file():
        labels = devkit_val_labels(base)
    elif (base / KAGGLE_VAL).is_file():
        labels = kaggle_val_labels(base)
    else:
        raise DatasetError(
            f"imagenet: {base / 'val'} holds images but no class folders, and neither the devkit's "
            f"{DEVKIT}/ILSVRC2012_validation_ground_truth.txt nor {KAGGLE_VAL} gives their labels.")
    pos = {w: i for i, w in enumerate(classes)}
    files = _files(base / "val")
    unknown = [f for f in files if labels.get(f) not in pos]
    if unknown:
        raise DatasetError(f"imagenet: val image {unknown[0]} has no label among the train classes "
                           f"({len(unknown)} such); the labels file does not match the images.")
    return [base / "val" / f for f in files], [pos[labels[f]] for f in files]


@LOADERS.register("imagenet")
def load_imagenet(root: Path | None, split: str) -> LabeledImages:
    """ILSVRC-2012 ``train`` or ``val`` (the official val, the card's test split)."""
    check_split("imagenet", split, ("train", "val"))
    base = need_root(root, "imagenet")
    classes = wnids(base)
    folder = base / split
    if not folder.is_dir():
        raise DatasetError(f"imagenet: the folder {folder} is missing.")
    paths: list[Path] = []
    targets: list[int] = []
    sub = _class_dirs(folder)
    if split == "val" and not sub:
        paths, targets = _val_flat(base, classes)
    else:
        extra = sorted(set(sub) - set(classes))
        if extra:
            raise DatasetError(f"imagenet: {folder}/{extra[0]} is not a train class ({len(extra)} such folders).")
        for label, w in enumerate(classes):
            if (folder / w).is_dir():
                names = _files(folder / w)
                paths += [folder / w / n for n in names]
                targets += [label] * len(names)
    if not paths:
        raise DatasetError(f"imagenet: no images under {folder}.")
    return NamedFileImages(paths, np.asarray(targets, np.int64), classes, root=base)

"""Loaders for the eight transfer datasets that torchvision parses.

Food-101, CIFAR-10/100, Stanford Cars, FGVC Aircraft (variant level), DTD (partition 1),
Oxford-IIIT Pets and Flowers-102. torchvision's own classes read the on-disk files
(download=False, always); targets come from their internal label lists, so no image is decoded
to count or carve a split. Each loader gets the dataset folder under the data root
(torchvision's folder name, e.g. ``DATA/food-101``) and hands its parent to torchvision.
Sources: protocol.md §1.3-§1.4, torchvision ``datasets/*.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import (
    NamedArrayImages,
    NamedFileImages,
    check_listed,
    check_split,
    read_lines,
    require,
    torchvision_call,
)


def _tv_parent(base: Path, folder: str, key: str) -> str:
    """The root to give torchvision, which appends its own fixed folder name to it."""
    if base.name != folder:
        raise DatasetError(
            f"{key}: torchvision reads a folder named {folder!r}, but the card points at "
            f"{base}; set source.root_dir to {folder!r}."
        )
    return str(base.parent)


def _files(key: str, paths: list[Any], labels: list[int], classes: list[str],
           listed_in: Path, root: Path) -> NamedFileImages:
    paths = [Path(p) for p in paths]
    check_listed(paths, listed_in, key)
    targets = np.asarray(labels, dtype=np.int64)
    if len(targets) and (targets.min() < 0 or targets.max() >= len(classes)):
        raise DatasetError(
            f"{key}: {listed_in} has labels outside 0..{len(classes) - 1}; the label file does "
            "not match the class list."
        )
    return NamedFileImages(paths, targets, classes, root=root)


@LOADERS.register("food101")
def load_food101(root: Path | None, split: str) -> LabeledImages:
    """Food-101 ``train`` (750/class) or ``test`` (250/class) from ``meta/<split>.json``."""
    from torchvision.datasets import Food101

    check_split("food101", split, ("train", "test"))
    base = require(root, "food101")
    parent = _tv_parent(base, "food-101", "food101")
    ds = torchvision_call("food101", lambda: Food101(parent, split=split, download=False))
    listed = set(read_lines(base / "meta" / "classes.txt"))
    if set(ds.classes) != listed:
        raise DatasetError(
            f"food101: meta/{split}.json names {len(ds.classes)} classes but meta/classes.txt "
            f"lists {len(listed)}; the metadata files do not belong together."
        )
    return _files("food101", ds._image_files, ds._labels, ds.classes,
                  base / "meta" / f"{split}.json", base)


def _cifar(cls: Any, key: str, folder: str, root: Path | None, split: str) -> LabeledImages:
    check_split(key, split, ("train", "test"))
    base = require(root, key)
    parent = _tv_parent(base, folder, key)

    class Unchecked(cls):
        # torchvision md5-checks every batch at each load; `clrbench data verify` does that once,
        # so loading stays fast and a re-saved or fixture copy still parses.
        train_list = [[name, None] for name, _ in cls.train_list]  # noqa: RUF012 - torchvision's attribute
        test_list = [[name, None] for name, _ in cls.test_list]  # noqa: RUF012 - torchvision's attribute
        meta = {**cls.meta, "md5": None}  # noqa: RUF012 - torchvision's attribute

    ds = torchvision_call(key, lambda: Unchecked(parent, train=split == "train", download=False))
    images = np.ascontiguousarray(ds.data)  # (n, 32, 32, 3) uint8, already in memory
    ids = [f"{split}/{i}" for i in range(len(images))]  # unique across splits, stable in order
    return NamedArrayImages(images, np.asarray(ds.targets, np.int64), list(ds.classes), ids=ids)


@LOADERS.register("cifar10")
def load_cifar10(root: Path | None, split: str) -> LabeledImages:
    """CIFAR-10 ``train`` (data_batch_1..5) or ``test`` (test_batch), 32x32 in memory."""
    from torchvision.datasets import CIFAR10

    return _cifar(CIFAR10, "cifar10", "cifar-10-batches-py", root, split)


@LOADERS.register("cifar100")
def load_cifar100(root: Path | None, split: str) -> LabeledImages:
    """CIFAR-100 ``train`` or ``test`` with the 100 fine labels."""
    from torchvision.datasets import CIFAR100

    return _cifar(CIFAR100, "cifar100", "cifar-100-python", root, split)


@LOADERS.register("cars")
def load_cars(root: Path | None, split: str) -> LabeledImages:
    """Stanford Cars ``train`` (devkit annotations) or ``test`` (the with-labels .mat file)."""
    from torchvision.datasets import StanfordCars

    check_split("cars", split, ("train", "test"))
    base = require(root, "cars")
    parent = _tv_parent(base, "stanford_cars", "cars")
    ds = torchvision_call("cars", lambda: StanfordCars(parent, split=split, download=False))
    paths, labels = [p for p, _ in ds._samples], [int(v) for _, v in ds._samples]
    return _files("cars", paths, labels, list(ds.classes), ds._annotations_mat_path, base)


@LOADERS.register("aircraft")
def load_aircraft(root: Path | None, split: str,
                  annotation_level: str = "variant") -> LabeledImages:
    """FGVC Aircraft 2013b, 100 variants (class index = line of ``variants.txt``)."""
    from torchvision.datasets import FGVCAircraft

    check_split("aircraft", split, ("train", "val", "trainval", "test"))
    base = require(root, "aircraft")
    parent = _tv_parent(base, "fgvc-aircraft-2013b", "aircraft")
    ds = torchvision_call("aircraft", lambda: FGVCAircraft(
        parent, split=split, annotation_level=annotation_level, download=False))
    listed = base / "data" / f"images_{annotation_level}_{split}.txt"
    return _files("aircraft", ds._image_files, ds._labels, list(ds.classes), listed, base)


@LOADERS.register("dtd")
def load_dtd(root: Path | None, split: str, partition: int = 1) -> LabeledImages:
    """DTD ``train``/``val``/``test`` of one of the creators' ten partitions (default 1)."""
    from torchvision.datasets import DTD

    check_split("dtd", split, ("train", "val", "test"))
    base = require(root, "dtd", (f"dtd/labels/{split}{partition}.txt",))
    parent = _tv_parent(base, "dtd", "dtd")
    ds = torchvision_call("dtd", lambda: DTD(parent, split=split, partition=partition,
                                             download=False))
    # torchvision takes the class list from the split file itself; check it against the image
    # folders so that a split file missing a class cannot shift every later class index.
    folders = sorted(p.name for p in (base / "dtd" / "images").iterdir() if p.is_dir())
    if list(ds.classes) != folders:
        raise DatasetError(
            f"dtd: labels/{split}{partition}.txt names {len(ds.classes)} classes but dtd/images "
            f"holds {len(folders)} class folders; the label file does not match the images."
        )
    return _files("dtd", ds._image_files, ds._labels, list(ds.classes),
                  base / "dtd" / "labels" / f"{split}{partition}.txt", base)


@LOADERS.register("pets")
def load_pets(root: Path | None, split: str) -> LabeledImages:
    """Oxford-IIIT Pets ``trainval`` or ``test``, 37 breeds (label = class id - 1)."""
    from torchvision.datasets import OxfordIIITPet

    check_split("pets", split, ("trainval", "test"))
    base = require(root, "pets")
    parent = _tv_parent(base, "oxford-iiit-pet", "pets")
    ds = torchvision_call("pets", lambda: OxfordIIITPet(parent, split=split,
                                                        target_types="category", download=False))
    return _files("pets", ds._images, ds._labels, list(ds.classes),
                  base / "annotations" / f"{split}.txt", base)


@LOADERS.register("flowers102")
def load_flowers102(root: Path | None, split: str) -> LabeledImages:
    """Oxford Flowers-102 ``train``/``val``/``test`` from ``setid.mat`` and ``imagelabels.mat``."""
    from torchvision.datasets import Flowers102

    check_split("flowers102", split, ("train", "val", "test"))
    base = require(root, "flowers102")
    parent = _tv_parent(base, "flowers-102", "flowers102")

    class Unchecked(Flowers102):
        # The .mat md5s are checked by `clrbench data verify`, not at every load (see _cifar).
        _file_dict = {k: (name, None) for k, (name, _) in Flowers102._file_dict.items()}  # noqa: RUF012 - torchvision's attribute

    ds = torchvision_call("flowers102", lambda: Unchecked(parent, split=split, download=False))
    return _files("flowers102", ds._image_files, ds._labels, list(Flowers102.classes),
                  base / "setid.mat", base)

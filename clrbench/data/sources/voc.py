"""PASCAL VOC2007 classification: 20-class multi-hot targets and the devkit's "difficult" mask.

Image ids come from ``ImageSets/Main/<split>.txt``, labels from ``Annotations/<id>.xml`` (the
source the devkit's ``<class>_<split>.txt`` lists are written from). A class whose only instances
in an image are marked difficult is 0 in the devkit lists and is left out of that class's AP
(official convention, the default here: ``ignore`` mask set); ssl-transfer counts it as a
negative instead (``difficult: negative``). Source: protocol.md §0, §1.4, §1.7.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import (
    NamedFileImages,
    check_listed,
    check_split,
    read_lines,
    require,
)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def parse_annotation(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One XML file -> (present, difficult_only), each (20,) bool.

    ``present`` is set by any instance of a class; ``difficult_only`` where every instance of
    the class in this image is marked difficult.

    Raises:
        DatasetError: the file is missing, not XML, or names an unknown class.
    """
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as e:
        raise DatasetError(f"voc2007: cannot read the annotation {path} ({e}).") from None
    easy = np.zeros(len(VOC_CLASSES), bool)
    hard = np.zeros(len(VOC_CLASSES), bool)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DatasetError(f"voc2007: {path} names the unknown class {name!r}.")
        k = VOC_CLASSES.index(name)
        if (obj.findtext("difficult") or "0").strip() == "1":
            hard[k] = True
        else:
            easy[k] = True
    return easy | hard, hard & ~easy


@LOADERS.register("voc2007")
def load_voc2007(root: Path | None, split: str, year_dir: str = "VOC2007",
                 difficult: str = "ignore") -> LabeledImages:
    """VOC2007 ``train`` / ``val`` / ``trainval`` / ``test`` as multi-hot targets.

    Args:
        root: the ``VOCdevkit`` folder.
        split: an image set of ``ImageSets/Main``.
        year_dir: the year folder inside ``VOCdevkit``.
        difficult: ``ignore`` (devkit: difficult-only entries are 0 and masked out of the
            metric) or ``negative`` (ssl-transfer: 0 and scored as negatives; no mask).
    """
    check_split("voc2007", split, ("train", "val", "trainval", "test"))
    if difficult not in ("ignore", "negative"):
        raise DatasetError(f"voc2007: difficult must be 'ignore' or 'negative', not {difficult!r}.")
    base = require(root, "voc2007") / year_dir
    listed = base / "ImageSets" / "Main" / f"{split}.txt"
    ids = [line.split()[0] for line in read_lines(listed)]
    xmls = [base / "Annotations" / f"{i}.xml" for i in ids]
    check_listed(xmls, listed, "voc2007")
    jpgs = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    check_listed(jpgs, listed, "voc2007")
    parsed = [parse_annotation(p) for p in xmls]
    present = np.stack([p for p, _ in parsed]) if parsed else np.zeros((0, 20), bool)
    hard_only = np.stack([h for _, h in parsed]) if parsed else np.zeros((0, 20), bool)
    targets = (present & ~hard_only).astype(np.uint8)
    ignore = hard_only if difficult == "ignore" else None
    return NamedFileImages(jpgs, targets, VOC_CLASSES, ignore=ignore, ids=ids)

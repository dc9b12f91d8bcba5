"""Birdsnap v1.1 over the images actually obtained from the rotted Flickr URL list.

The release ships metadata only (``species.txt``, ``images.txt``, ``test_images.txt``, all
tab-separated with a header); images are fetched by URL into ``download/images/<path>`` (the
layout of the release's ``get_birdsnap.py``, and of ``clrbench data download``). Train is every
obtained image not listed in ``test_images.txt``; test is every obtained listed one; how many of
the listed 47,386 / 2,443 were obtained is reported next to the score. Source: protocol.md §0,
§1.6.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import NamedFileImages, check_split, missing_on_disk, require

IMAGE_DIR = "download/images"


@dataclass(frozen=True)
class BirdsnapImage:
    """One row of ``images.txt`` (bounding box and parts left out)."""

    url: str
    md5: str
    path: str
    species_id: int


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def read_species(base: Path) -> list[str]:
    """Common names by species id (id 1 -> index 0)."""
    rows = _rows(base / "species.txt")
    try:
        by_id = {int(r["id"]): r["common"].strip() for r in rows}
    except (KeyError, ValueError, AttributeError):
        raise DatasetError(
            f"birdsnap: {base / 'species.txt'} lacks the id / common columns."
        ) from None
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise DatasetError(
            f"birdsnap: species ids in {base / 'species.txt'} are not 1..{len(by_id)}."
        )
    return [by_id[i] for i in range(1, len(by_id) + 1)]


def read_images(base: Path) -> list[BirdsnapImage]:
    """Every row of ``images.txt``, in file order."""
    try:
        return [BirdsnapImage(r["url"].strip(), r["md5"].strip().lower(), r["path"].strip(),
                              int(r["species_id"])) for r in _rows(base / "images.txt")]
    except (KeyError, ValueError, AttributeError):
        raise DatasetError(
            f"birdsnap: {base / 'images.txt'} lacks the url / md5 / path / species_id columns."
        ) from None


def read_test_paths(base: Path) -> set[str]:
    lines = (base / "test_images.txt").read_text().splitlines()
    return {s.strip() for s in lines[1:] if s.strip()}  # first line is the header "path"


def obtained_counts(root: Path, image_dir: str = IMAGE_DIR) -> dict[str, tuple[int, int]]:
    """``{"train": (obtained, listed), "test": (obtained, listed)}`` for reporting with a score."""
    base = require(root, "birdsnap")
    rows, test = read_images(base), read_test_paths(base)
    present = _present(base / image_dir, rows)
    out = {}
    for split, in_test in (("train", False), ("test", True)):
        listed = [r for r in rows if (r.path in test) == in_test]
        out[split] = (sum(r.path in present for r in listed), len(listed))
    return out


def _present(images: Path, rows: list[BirdsnapImage]) -> set[str]:
    paths = [images / r.path for r in rows]
    absent = {str(p) for p in missing_on_disk(paths)}
    return {r.path for r, p in zip(rows, paths, strict=True) if str(p) not in absent}


@LOADERS.register("birdsnap")
def load_birdsnap(root: Path | None, split: str, image_dir: str = IMAGE_DIR) -> LabeledImages:
    """Birdsnap ``train`` / ``test`` over the obtained images, 500 species in id order."""
    check_split("birdsnap", split, ("train", "test"))
    base = require(root, "birdsnap")
    classes = read_species(base)
    rows, test = read_images(base), read_test_paths(base)
    unknown = test - {r.path for r in rows}
    if unknown:
        raise DatasetError(
            f"birdsnap: {len(unknown)} paths of test_images.txt are not in images.txt (first: "
            f"{sorted(unknown)[0]}); the two files are from different releases."
        )
    bad = [r for r in rows if not 1 <= r.species_id <= len(classes)]
    if bad:
        raise DatasetError(f"birdsnap: images.txt gives {bad[0].path} the unknown species id "
                           f"{bad[0].species_id}; species.txt has {len(classes)}.")
    present = _present(base / image_dir, rows)
    if not present:
        raise DatasetError(
            f"birdsnap: none of the {len(rows)} images of images.txt is under {base / image_dir}; "
            f"`clrbench data download --tasks birdsnap --root {base.parent}` fetches them."
        )
    keep = [r for r in rows if r.path in present and (r.path in test) == (split == "test")]
    paths = [base / image_dir / r.path for r in keep]
    targets = np.asarray([r.species_id - 1 for r in keep], np.int64)
    return NamedFileImages(paths, targets, classes, ids=[r.path for r in keep])

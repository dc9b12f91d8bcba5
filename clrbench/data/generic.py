"""Loaders that need no code: a user's own image folders (``image_folder``) and CSV lists (``csv``).

``image_folder``: torchvision's ImageFolder layout, one folder per source split, one
sub-folder per class::

    PATH/train/<class>/*.jpg    PATH/test/<class>/*.jpg    (any split names the card uses)

Classes are the class folders found across every split folder, sorted by name (so a class
missing from one split does not shift the others); a card's ``classes`` list renumbers them.

``csv``: one file per source split, ``PATH/<split>.csv`` (or ``files: {split: file}``), each
line ``path,label`` with the image path relative to the CSV's folder (or absolute) and the label
a class name or an integer index; an optional header line ``path,label`` is skipped.

Relative ``path`` arguments of a user card are resolved against the card's own folder
(:mod:`clrbench.data.user_cards`); without ``path`` the loader reads the data root's
``root_dir`` folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import NamedFileImages, check_listed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _base(root: Path | None, path: str | None, key: str) -> Path:
    base = Path(path).expanduser() if path else root
    if base is None:
        raise DatasetError(f"{key}: give source.args.path in the card, or --data-root with source.root_dir.")
    if not base.exists():
        raise DatasetError(f"{key}: {base} does not exist.")
    return base


def _images_in(folder: Path) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))


@LOADERS.register("image_folder")
def load_image_folder(root: Path | None, split: str, path: str | None = None,
                      label_map: Mapping[str, str] | None = None) -> LabeledImages:
    """Split ``split`` of an ImageFolder tree (``PATH/<split>/<class>/<image>``); ``label_map``
    (folder name -> card class) is applied with the card's classes by the split loader."""
    base = _base(root, path, "image_folder")
    folder = base / split
    if not folder.is_dir():
        raise DatasetError(f"image_folder: expected the split folder {folder} (PATH/{split}/<class>/<image>).")
    splits = [d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")]
    classes = sorted({c.name for d in splits for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")})
    if not classes:
        raise DatasetError(f"image_folder: {folder} has no class sub-folders (PATH/{split}/<class>/<image>).")
    paths: list[Path] = []
    targets: list[int] = []
    for label, name in enumerate(classes):
        if (folder / name).is_dir():
            files = _images_in(folder / name)
            paths += [folder / name / f for f in files]
            targets += [label] * len(files)
    if not paths:
        raise DatasetError(f"image_folder: no images under {folder}.")
    out = NamedFileImages(paths, np.asarray(targets, np.int64), classes, root=base)
    return out


def _csv_rows(file: Path) -> list[tuple[str, str]]:
    with file.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    bad = next((i for i, r in enumerate(rows) if len(r) < 2), None)
    if bad is not None:
        raise DatasetError(f"csv: line {bad + 1} of {file} is not 'path,label'.")
    return [(r[0].strip(), r[1].strip()) for r in rows]


@LOADERS.register("csv")
def load_csv(root: Path | None, split: str, path: str | None = None,
             files: Mapping[str, str] | None = None, label_map: Mapping[str, str] | None = None) -> LabeledImages:
    """Split ``split`` listed in a CSV of ``path,label`` lines (``label_map`` as for image_folder)."""
    base = _base(root, path, "csv")
    name = (files or {}).get(split, f"{split}.csv")
    file = Path(name) if Path(name).is_absolute() else (base if base.is_dir() else base.parent) / name
    if not file.is_file():
        raise DatasetError(f"csv: expected the list {file} for split {split!r} (lines 'path,label').")
    rows = _csv_rows(file)
    if not rows:
        raise DatasetError(f"csv: {file} lists no images.")
    paths = [Path(p) if Path(p).is_absolute() else file.parent / p for p, _ in rows]
    check_listed(paths, file, "csv")
    labels = [lab for _, lab in rows]
    if all(lab.lstrip("-").isdigit() for lab in labels):
        out = NamedFileImages(paths, np.asarray([int(v) for v in labels], np.int64),
                              [str(i) for i in range(max(int(v) for v in labels) + 1)], root=file.parent)
        out.classes = None  # bare indices: no names to align
        return out
    # Classes by name: the union over every split's CSV beside this one, sorted (see image_folder).
    names = sorted(set(labels) | _other_labels(file, base, files))
    pos = {n: i for i, n in enumerate(names)}
    return NamedFileImages(paths, np.asarray([pos[v] for v in labels], np.int64), names, root=file.parent)


def _other_labels(file: Path, base: Path, files: Mapping[str, str] | None) -> set[str]:
    folder = base if base.is_dir() else base.parent
    others = [folder / f for f in (files or {}).values()] if files else sorted(folder.glob("*.csv"))
    out: set[str] = set()
    for f in others:
        if f.is_file() and f.resolve() != file.resolve():
            out |= {lab for _, lab in _csv_rows(f)}
    return out


GENERIC_LOADERS = ("image_folder", "csv", "hf")

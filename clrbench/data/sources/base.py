"""Shared pieces of the transfer-dataset loaders: named image collections and layout checks.

Every loader checks the files it needs before parsing anything, so a wrong directory layout is
one sentence naming the expected file and where, and checks that the images its label files list
are on disk, so a label file that does not match the images never surfaces mid-extraction
(design.md, "bad input"). Layouts per dataset: protocol.md §1.3.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from clrbench.data.images import ArrayImages, DatasetError, FileImages
from clrbench.data.sources.layout import REQUIRED_FILES

T = TypeVar("T")


class NamedFileImages(FileImages):
    """Image files plus the dataset's class names, in class-index order.

    Ids default to the paths relative to ``root`` (the dataset folder), so that records name
    images the same way on every machine.
    """

    def __init__(self, paths: Sequence[Path], targets: np.ndarray, classes: Sequence[str],
                 root: Path | None = None, **kw: Any) -> None:
        if root is not None and "ids" not in kw:
            kw["ids"] = [_relative(Path(p), Path(root)) for p in paths]
        super().__init__(paths, targets, len(classes), **kw)
        self.classes = tuple(classes)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # torchvision expanded "~" or the like: keep the full path
        return str(path)


class NamedArrayImages(ArrayImages):
    """In-memory images (CIFAR) plus the dataset's class names, in class-index order."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: Sequence[str],
                 **kw: Any) -> None:
        super().__init__(images, targets, len(classes), **kw)
        self.classes = tuple(classes)


def need_root(root: Path | None, key: str) -> Path:
    """The dataset folder, or a DatasetError when no data root was given at all."""
    if root is None:
        raise DatasetError(
            f"{key} reads files from disk but no data root was given; pass --data-root DIR "
            "or set CLRBENCH_DATA."
        )
    return Path(root)


def check_split(key: str, split: str, valid: tuple[str, ...]) -> str:
    if split not in valid:
        raise DatasetError(f"{key} has the source splits {', '.join(valid)}, not {split!r}.")
    return split


def require(root: Path | None, key: str, extra: Iterable[str] = ()) -> Path:
    """Check that every file of the dataset's layout exists under ``root``.

    Returns:
        ``root`` as a Path.

    Raises:
        DatasetError: naming the first missing file and where it was expected.
    """
    base = need_root(root, key)
    if not base.is_dir():
        raise DatasetError(
            f"{key}: the folder {base} does not exist; `clrbench data download --tasks {key} "
            f"--root {base.parent}` fetches it or prints how to."
        )
    for rel in (*REQUIRED_FILES.get(key, ()), *extra):
        if not (base / rel).exists():
            raise DatasetError(
                f"{key}: expected {rel} in {base} but it is not there; the layout is wrong or "
                "the archive was not fully extracted (clrbench data verify lists what is missing)."
            )
    return base


def missing_on_disk(paths: Sequence[Path]) -> list[Path]:
    """The listed paths that do not exist, found by listing each folder once (fast on NFS)."""
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for p in paths:
        by_dir[p.parent].append(p)
    missing: list[Path] = []
    for folder, files in by_dir.items():
        try:
            names = set(os.listdir(folder))
        except OSError:  # the folder itself is missing
            names = set()
        missing.extend(p for p in files if p.name not in names)
    return missing


def check_listed(paths: Sequence[Path], listed_in: Path | str, key: str) -> None:
    """Raise when a label file lists images that are not on disk."""
    missing = missing_on_disk(paths)
    if missing:
        raise DatasetError(
            f"{key}: {len(missing)} of the {len(paths)} images listed in {listed_in} are not on "
            f"disk (first: {missing[0]}); the label file does not match the images, re-extract "
            "the archive."
        )


def torchvision_call(key: str, build: Callable[[], T]) -> T:
    """Build a torchvision dataset with download=False, turning its errors into DatasetError."""
    try:
        return build()
    except DatasetError:
        raise
    except Exception as e:  # the constructor only parses files (scipy raises
        # MatReadError, pickle UnpicklingError, ...): any failure is a bad file, said in one line
        raise DatasetError(
            f"{key}: torchvision could not parse the files ({type(e).__name__}: {e}); "
            "clrbench data verify says which file is wrong."
        ) from None


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    return [s for s in (line.strip() for line in path.read_text().splitlines()) if s]

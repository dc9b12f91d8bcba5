"""``clrbench data download``: fetch what can still be fetched, say what must be done by hand.

Archives go to ``DATA/.downloads`` through the resumable, md5-checked :func:`download_file`,
are extracted with torchvision's ``extract_archive`` where torchvision would put them, and are
deleted once the dataset's layout is complete (``keep_archives`` keeps them). Birdsnap's images
are then fetched from its URL list. Dead or login-only sources (Stanford Cars, SUN397) and any
failure return the exact manual steps. Source: protocol.md §1.3-§1.6.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clrbench.data.cards import TaskCard
from clrbench.data.fetch.birdsnap import BirdsnapFetch, fetch_birdsnap_images
from clrbench.data.fetch.catalog import Recipe, recipes
from clrbench.data.fetch.http import FetchError, Progress, download_file
from clrbench.data.fetch.verify import dataset_dir, missing_files
from clrbench.data.sources.birdsnap import IMAGE_DIR

DownloadStatus = Literal["present", "downloaded", "partial", "manual", "failed", "unknown"]


@dataclass
class DownloadReport:
    """What ``download`` did for one task; ``message`` is for the user, verbatim."""

    task: str
    status: DownloadStatus
    message: str
    files: list[Path]
    birdsnap: BirdsnapFetch | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("present", "downloaded", "partial")


def _fetch(recipe: Recipe, data_root: Path, progress: Progress | None,
           timeout: float) -> tuple[list[Path], list[Path]]:
    """Download and extract every resource; return (files placed, archives to delete)."""
    from torchvision.datasets.utils import extract_archive

    placed, archives = [], []
    for res in recipe.resources:
        target = data_root / res.into
        if not res.extract:  # a plain file (Flowers' .mat lists) goes straight into place
            placed.append(download_file(res.url, target / res.filename, res.md5,
                                        progress=progress, timeout=timeout))
            continue
        archive = download_file(res.url, data_root / ".downloads" / res.filename, res.md5,
                                progress=progress, timeout=timeout)
        if progress:
            progress(f"extract {res.filename}", 0, None)
        target.mkdir(parents=True, exist_ok=True)
        extract_archive(str(archive), str(target))
        archives.append(archive)
        placed.append(target)
    return placed, archives


def _after_caltech(data_root: Path) -> None:
    """caltech-101.zip holds 101_ObjectCategories.tar.gz; unpack it as torchvision does."""
    from torchvision.datasets.utils import extract_archive

    inner = data_root / "caltech101" / "caltech-101"
    for gz in sorted(inner.glob("*.gz")) if inner.is_dir() else []:
        extract_archive(str(gz), str(data_root / "caltech101"))
    if (data_root / "caltech101" / "101_ObjectCategories").is_dir() and inner.is_dir():
        shutil.rmtree(inner)


def _after_birdsnap(folder: Path) -> None:
    """The metadata tarball may wrap its files in one folder; lift them to ``folder``."""
    if (folder / "species.txt").exists():
        return
    for found in folder.glob("*/species.txt"):
        for item in found.parent.iterdir():
            shutil.move(str(item), str(folder / item.name))
        found.parent.rmdir()
        return


def _birdsnap_images(card: TaskCard, folder: Path, workers: int,
                     progress: Progress | None) -> tuple[DownloadStatus, str, BirdsnapFetch]:
    image_dir = str(card.source.args.get("image_dir", IMAGE_DIR))
    got = fetch_birdsnap_images(folder, image_dir=image_dir, workers=workers, progress=progress)
    msg = (f"{card.name}: {got.obtained:,} of {got.listed:,} listed images obtained "
           f"({got.fetched:,} new this run)")
    if got.failed:
        failed = f"{got.failed:,} failed, listed in {got.fail_log} (rerun to retry)"
        return "partial", f"{msg}; {failed}.", got
    return "downloaded", msg + ".", got


def download_task(card: TaskCard, data_root: Path, *, progress: Progress | None = None,
                  workers: int = 16, keep_archives: bool = False,
                  timeout: float = 60.0) -> DownloadReport:
    """Fetch one card's dataset into ``data_root`` (see module docstring)."""
    data_root = Path(data_root)
    recipe = recipes().get(card.source.loader)
    folder = dataset_dir(card, data_root) or data_root
    if recipe is None:
        return DownloadReport(card.name, "unknown", f"{card.name}: clrbench has no download recipe "
                              f"for loader {card.source.loader!r}; put its files in {folder}.", [])
    manual = recipe.manual.format(data=data_root)
    missing = missing_files(card, data_root)
    if missing and not recipe.automatic:
        return DownloadReport(card.name, "manual", f"{card.name}: {manual}", [])
    placed: list[Path] = []
    try:
        if missing:
            placed, archives = _fetch(recipe, data_root, progress, timeout)
            if recipe.after == "caltech":
                _after_caltech(data_root)
            elif recipe.after == "birdsnap":
                _after_birdsnap(folder)
            still = missing_files(card, data_root)
            if still:
                return DownloadReport(card.name, "failed", f"{card.name}: after extraction "
                                      f"{folder / still[0]} is still missing. {manual}", placed)
            for a in archives if not keep_archives else []:
                a.unlink(missing_ok=True)
        if recipe.after == "birdsnap":
            status, msg, got = _birdsnap_images(card, folder, workers, progress)
            return DownloadReport(card.name, status, msg, placed, got)
    except FetchError as e:
        return DownloadReport(card.name, "failed", f"{e} If it stays unreachable: {manual}", placed)
    if not missing:
        return DownloadReport(card.name, "present", f"{card.name}: already in {folder}.", [])
    return DownloadReport(card.name, "downloaded", f"{card.name}: installed in {folder}.", placed)


def download_tasks(cards: list[TaskCard], data_root: Path, *, progress: Progress | None = None,
                   workers: int = 16, keep_archives: bool = False,
                   timeout: float = 60.0) -> list[DownloadReport]:
    """:func:`download_task` for each card, in order; one failure does not stop the others."""
    return [download_task(c, data_root, progress=progress, workers=workers,
                          keep_archives=keep_archives, timeout=timeout) for c in cards]

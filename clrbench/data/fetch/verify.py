"""``clrbench data verify``: what is on disk for each task card, compared with the card.

Per dataset: the layout files present and missing, the class count, the split sizes obtained
through the same code path evaluation runs (:func:`clrbench.data.splits.load_task`) against
the card's expected sizes, and the md5 of the files whose checksum torchvision publishes.
Birdsnap's shortfall from rotted URLs is reported as ``partial`` with the obtained counts
(protocol.md §0), not as a failure.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import clrbench.data.sources  # noqa: F401 - registers the loaders
from clrbench.data.cards import TaskCard
from clrbench.data.fetch.catalog import MANUAL_ONLY, recipes
from clrbench.data.fetch.http import Progress, md5_of
from clrbench.data.images import DatasetError, LabeledImages
from clrbench.data.sources.birdsnap import IMAGE_DIR, obtained_counts
from clrbench.data.sources.layout import REQUIRED_FILES
from clrbench.data.splits import load_task

Status = Literal["ok", "partial", "missing", "differs", "error"]


@dataclass(frozen=True)
class Md5Check:
    path: str  # relative to the dataset folder
    expected: str
    actual: str | None  # None: the file is absent

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


@dataclass
class VerifyReport:
    """One row of ``clrbench data verify``; ``diff`` is empty exactly when ``ok``."""

    task: str
    folder: Path | None
    status: Status = "ok"
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    num_classes: int | None = None
    expected_classes: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    expected_sizes: dict[str, int] = field(default_factory=dict)
    md5: list[Md5Check] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)  # one sentence per difference from the card
    notes: list[str] = field(default_factory=list)  # information (Birdsnap's obtained counts)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "partial")


def dataset_dir(card: TaskCard, data_root: Path | None) -> Path | None:
    """The folder the card's loader reads (as :func:`~clrbench.data.splits.load_task`)."""
    if data_root is None:
        return None
    return Path(data_root) / card.source.root_dir if card.source.root_dir else Path(data_root)


def missing_files(card: TaskCard, data_root: Path | None) -> list[str]:
    """Layout files of the card's dataset that are not on disk (paths relative to its folder)."""
    folder = dataset_dir(card, data_root)
    required = REQUIRED_FILES.get(card.source.loader, ())
    if folder is None:
        return list(required) or ["."]
    return [rel for rel in required if not (folder / rel).exists()]


def missing_message(card: TaskCard, data_root: Path | None) -> str:
    """One sentence for a task whose data is absent, naming the command that fetches it."""
    if data_root is None:
        return (f"{card.name}: no data root is set; pass --data-root DIR (or set CLRBENCH_DATA) "
                f"and run `clrbench data download --tasks {card.name} --root DIR`.")
    folder, missing = dataset_dir(card, data_root), missing_files(card, data_root)
    where = f"{folder}/{missing[0]} is missing" if missing else f"it is in {folder}"
    command = f"`clrbench data download --tasks {card.name} --root {data_root}`"
    if card.source.loader in MANUAL_ONLY:
        return (f"{card.name}: {card.title} is not installed ({where}); its source needs a login "
                f"or is offline, and {command} prints the manual steps.")
    return f"{card.name}: {card.title} is not installed ({where}); {command} fetches it."


def _md5_checks(card: TaskCard, folder: Path) -> list[Md5Check]:
    recipe = recipes().get(card.source.loader)
    known = recipe.md5 if recipe else {}
    return [Md5Check(rel, md5, md5_of(folder / rel) if (folder / rel).is_file() else None)
            for rel, md5 in known.items()]


def _classes_of(part: LabeledImages) -> tuple[int, tuple[str, ...]]:
    base = getattr(part, "base", part)  # a Subset of the loader's collection
    names = tuple(getattr(base, "classes", None) or ())
    return (len(names) if names else base.num_classes), names


def _compare(report: VerifyReport, card: TaskCard, names: tuple[str, ...]) -> None:
    if report.num_classes != card.num_classes:
        report.diff.append(
            f"{report.num_classes} classes on disk, the card says {card.num_classes}.")
    elif card.classes and names and tuple(card.classes) != names:
        k = next(i for i, (a, b) in enumerate(zip(card.classes, names, strict=True)) if a != b)
        report.diff.append(
            f"class {k} is {names[k]!r} on disk but {card.classes[k]!r} in the card.")
    for split, want in card.expected_sizes.items():
        got = report.sizes.get(split)
        if got != want:
            report.diff.append(f"{split} has {got:,} images, the card expects {want:,}.")
    report.diff += [f"{m.path} has md5 {m.actual}, expected {m.expected}." for m in report.md5
                    if m.actual is not None and not m.ok]


def _birdsnap_partial(report: VerifyReport, card: TaskCard, folder: Path) -> None:
    """Rotted URLs make Birdsnap short; if that is the only difference, it is ``partial``."""
    image_dir = str(card.source.args.get("image_dir", IMAGE_DIR))
    counts = obtained_counts(folder, image_dir)
    report.notes.append(
        "obtained {:,} of {:,} listed train images and {:,} of {:,} test images".format(
            *counts["train"], *counts["test"]))
    short = any(got < listed for got, listed in counts.values())
    size_diffs = [s for s, n in card.expected_sizes.items() if report.sizes.get(s) != n]
    if report.diff and short and len(report.diff) == len(size_diffs):  # nothing else differs
        report.status, report.diff = "partial", []


def verify_hub(card: TaskCard, split_dir: Path | None = None) -> VerifyReport:
    """Check one card's Hugging Face hub copy (cached, or fetched when online) against the card:
    classes mapped onto the card's, and split sizes; the card's own account of what differs
    from the protocol (``source.hub.differences``) is a note."""
    hub = card.source.hub
    report = VerifyReport(card.name, None, expected_classes=card.num_classes,
                          expected_sizes=dict(card.expected_sizes))
    if hub is None:
        report.status = "missing"
        report.diff.append(f"{card.name}: the card names no hub copy (source.hub); see tasks/README.md.")
        return report
    report.notes.append(f"hub {hub.id}" + ("" if hub.reproduces else f": {hub.differences}"))
    try:
        with tempfile.TemporaryDirectory(prefix="clrbench-verify-") as tmp:
            data = load_task(card, None, split_dir or Path(tmp), source="hf")
    except DatasetError as e:
        report.status = "error"
        report.diff.append(str(e))
        return report
    report.sizes = data.sizes()
    report.num_classes, names = _classes_of(data.train)
    _compare(report, card, names)
    report.status = "differs" if report.diff else "ok"
    return report


def verify_task(card: TaskCard, data_root: Path | None, *, check_md5: bool = True,
                split_dir: Path | None = None) -> VerifyReport:
    """Check one card's dataset under ``data_root``.

    Args:
        card: the task card (its loader, root_dir, classes and expected sizes).
        data_root: the data root; the dataset is in ``data_root/card.source.root_dir``.
        check_md5: hash the files whose md5 is known (CIFAR batches, Flowers' .mat lists).
        split_dir: stored split index lists to check against (the eval cache's ``splits``);
            None checks the splits as they would be carved now, writing nothing.
    """
    folder = dataset_dir(card, data_root)
    report = VerifyReport(card.name, folder, expected_classes=card.num_classes,
                          expected_sizes=dict(card.expected_sizes))
    report.missing = missing_files(card, data_root)
    required = REQUIRED_FILES.get(card.source.loader, ())
    report.present = [r for r in required if r not in report.missing]
    if report.missing or folder is None:
        report.status = "missing"
        report.diff.append(missing_message(card, data_root))
        return report
    if check_md5:
        report.md5 = _md5_checks(card, folder)
    try:
        with tempfile.TemporaryDirectory(prefix="clrbench-verify-") as tmp:
            data = load_task(card, Path(data_root) if data_root else None, split_dir or Path(tmp))
    except DatasetError as e:
        report.status = "error"
        # The loader's sentence points here; here, name the files that fail their md5 instead.
        msg = str(e).replace(" clrbench data verify says which file is wrong.", "")
        bad = [f"{folder / m.path}" for m in report.md5 if not m.ok]
        if bad:
            msg += f" Damaged or wrong file(s) (md5 differs): {', '.join(bad)}."
        elif not check_md5:
            msg += " Run without --no-md5 to find which file is wrong."
        report.diff.append(msg)
        return report
    report.sizes = data.sizes()
    report.num_classes, names = _classes_of(data.train)
    _compare(report, card, names)
    report.status = "differs" if report.diff else "ok"
    if card.source.loader == "birdsnap":
        _birdsnap_partial(report, card, folder)
    return report


def verify_tasks(cards: list[TaskCard], data_root: Path | None, *, check_md5: bool = True,
                 split_dir: Path | None = None, progress: Progress | None = None,
                 source: str = "files") -> list[VerifyReport]:
    """:func:`verify_task` (``source="hf"``: :func:`verify_hub`) for each card;
    ``progress("verify", done, total)`` after each."""
    out = []
    for i, card in enumerate(cards, 1):
        out.append(verify_hub(card, split_dir) if source == "hf" else
                   verify_task(card, data_root, check_md5=check_md5, split_dir=split_dir))
        if progress:
            progress("verify", i, len(cards))
    return out

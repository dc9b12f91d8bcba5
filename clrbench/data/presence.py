"""Which transfer datasets are on disk, checked when a run is planned, before anything runs.

A dataset that is not there is a missing prerequisite, not a failed measurement: the
evaluation plan leaves its tasks out (no record is written) and the command says once, in one
short block, what is missing, where clrbench looked and the commands that fetch it
(:func:`missing_block`). The check is the layout table of :mod:`clrbench.data.sources.layout`
(the same files ``clrbench data verify`` lists), so it is instant: no image is opened.
Procedural tasks (no ``root_dir``) are always present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clrbench.data.cards import TaskCard
from clrbench.data.fetch.catalog import MANUAL_ONLY
from clrbench.data.sources.layout import REQUIRED_FILES

DATA_ENV = "CLRBENCH_DATA"


@dataclass(frozen=True)
class MissingData:
    """One task whose dataset is not on disk.

    Attributes:
        task: the card name.
        folder: where the loader looked (None: no data root was given).
        first_missing: the first layout file not found (relative to ``folder``).
        manual: the source needs a login or is gone; ``data download`` prints manual steps.
    """

    task: str
    folder: Path | None
    first_missing: str
    manual: bool


def _missing_files(card: TaskCard, folder: Path | None) -> list[str]:
    required = REQUIRED_FILES.get(card.source.loader, ())
    if folder is None:
        return list(required) or ["."]
    if not folder.is_dir():
        return ["."]
    return [rel for rel in required if not (folder / rel).exists()]


def missing_tasks(cards: list[TaskCard], data_root: str | Path | None) -> list[MissingData]:
    """The cards among ``cards`` whose dataset is not under ``data_root``, in card order."""
    out = []
    for card in cards:
        if not card.source.root_dir:  # procedural: generated, never downloaded
            continue
        folder = Path(data_root).expanduser() / card.source.root_dir if data_root else None
        missing = _missing_files(card, folder)
        if missing:
            out.append(MissingData(card.name, folder, missing[0], card.source.loader in MANUAL_ONLY))
    return out


def installed(card: TaskCard, data_root: str | Path | None) -> bool | None:
    """True when the card's dataset is on disk, None for a procedural task (nothing to install)."""
    if not card.source.root_dir:
        return None
    return not missing_tasks([card], data_root)


def missing_block(missing: list[MissingData], data_root: str | Path | None, n_selected: int,
                  *, from_env: bool = False) -> list[str]:
    """The short plain-text block a user reads when datasets are missing (one item per line).

    Says which datasets, where clrbench looked, the two commands to run, and the manual step
    only for the sources that need one.
    """
    if not missing:
        return []
    names = [m.task for m in missing]
    run = "none of them run" if len(missing) == n_selected else "the other tasks still run"
    lines = [f"Missing data: {len(missing)} of {n_selected} selected task(s) have no dataset on disk "
             f"({', '.join(names)}); {run}, and no record is written for these."]
    if data_root is None:
        lines.append(f"Looked in: nowhere; no data root is set (neither --data-root nor ${DATA_ENV}).")
    else:
        where = f"${DATA_ENV}" if from_env else "--data-root"
        firsts = ", ".join(f"{m.folder.name}/{'' if m.first_missing == '.' else m.first_missing}"
                           for m in missing if m.folder is not None)
        lines.append(f"Looked in: {data_root} (from {where}) for {firsts}.")
    root = "" if data_root is None or from_env else f" --root {data_root}"
    auto = [m.task for m in missing if not m.manual]
    manual = [m.task for m in missing if m.manual]
    lines.append("To get them:")
    if data_root is None:
        lines.append(f"  export {DATA_ENV}=~/clrbench-data   # or pass --data-root DIR")
    if auto:
        lines.append(f"  clrbench data download --tasks {','.join(auto)}{root}")
    if manual:
        lines.append(f"  clrbench data download --tasks {','.join(manual)}{root}   # prints the manual steps: "
                     "these sources need a login or are gone")
    return lines

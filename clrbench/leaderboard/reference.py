"""Published transfer numbers as data: load and check ``clrbench/assets/reference/*.yaml``.

Each YAML file transcribes one table of one paper (SimCLR Table 8 and B.5, BYOL Table 3;
protocol.md §3) and cites it. The leaderboard shows these rows beside this project's
records, in the columns of the twelve Kornblith et al. 2019 datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clrbench.config import assets_dir
from clrbench.data.cards import transfer_tasks
from clrbench.errors import UserError

REFERENCE_DIR = assets_dir() / "reference"
# The twelve transfer datasets in the column order of K19 Table 1 and SimCLR Table 8.
TRANSFER_TASKS = transfer_tasks()  # the twelve, in board order, as the cards say
PUBLISHED_PROTOCOLS = ("linear", "finetune")
_ROW_KEYS = {"label", "protocol", "values", "method", "arch", "width", "note"}


class ReferenceDataError(UserError, ValueError):
    """A reference file that does not follow the format of ``assets/reference/README.md``."""


@dataclass(frozen=True)
class ReferenceRow:
    """One published row: a model evaluated under one protocol on some of the twelve tasks.

    Attributes:
        label: shown in the board, e.g. "SimCLR R50-4x (Chen et al. 2020, Table 8)";
            unique per protocol.
        protocol: "linear" or "finetune" (the paper's full recipe; never a shortened one).
        values: task -> published test metric in percent.
        citation: the paper, as cited in the file.
        short: the short citation, e.g. "Chen et al. 2020".
        table: the table within it, e.g. "Table 8".
        method, arch, width: what was evaluated, for filtering and plot legends.
        note: anything a reader must know about this row.
        file: the YAML file it came from.
    """

    label: str
    protocol: str
    values: dict[str, float]
    citation: str
    short: str
    table: str
    method: str = ""
    arch: str = ""
    width: float = 1.0
    note: str = ""
    file: str = ""


def load_references(directory: Path | str | None = None) -> list[ReferenceRow]:
    """Every published row under ``directory`` (default: the shipped ``assets/reference``).

    Files are read in name order and rows in file order, which is the order the board
    shows them in.

    Raises:
        ReferenceDataError: a malformed file, an unknown task or protocol, a value outside
            [0, 100], or two rows with one label under one protocol.
    """
    root = Path(directory) if directory is not None else REFERENCE_DIR
    rows: list[ReferenceRow] = []
    for path in sorted(root.glob("*.yaml")):
        rows.extend(_load_file(path))
    seen: set[tuple[str, str]] = set()
    for r in rows:
        if (r.label, r.protocol) in seen:
            raise ReferenceDataError(f"{r.file}: the label {r.label!r} appears twice under protocol {r.protocol}.")
        seen.add((r.label, r.protocol))
    return rows


def _load_file(path: Path) -> list[ReferenceRow]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as e:
        raise ReferenceDataError(f"{path} is not readable YAML ({e}).") from e
    if not isinstance(data, dict) or not isinstance(data.get("source"), dict) or not isinstance(data.get("rows"), list):
        raise ReferenceDataError(f"{path} needs a 'source' mapping and a 'rows' list.")
    source = data["source"]
    if not all(source.get(k) for k in ("citation", "short", "table")):
        raise ReferenceDataError(f"{path}: source needs citation, short and table, so every number is traceable.")
    return [_row(path, source, raw, i) for i, raw in enumerate(data["rows"])]


def _row(path: Path, source: dict[str, Any], raw: Any, i: int) -> ReferenceRow:
    where = f"{path.name} row {i + 1}"
    if not isinstance(raw, dict):
        raise ReferenceDataError(f"{where} is not a mapping.")
    unknown = sorted(set(raw) - _ROW_KEYS)
    if unknown or not raw.get("label") or raw.get("protocol") not in PUBLISHED_PROTOCOLS:
        raise ReferenceDataError(f"{where} needs a label and a protocol in {PUBLISHED_PROTOCOLS}"
                                 + (f", and has unknown keys {unknown}." if unknown else "."))
    values = raw.get("values")
    if not isinstance(values, dict) or not values:
        raise ReferenceDataError(f"{where} ({raw['label']}) needs a non-empty 'values' mapping.")
    for task, v in values.items():
        if task not in TRANSFER_TASKS:
            raise ReferenceDataError(f"{where}: unknown task {task!r}; use one of {', '.join(TRANSFER_TASKS)}.")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise ReferenceDataError(f"{where}: {task} must be a percentage in [0, 100], not {v!r}.")
    return ReferenceRow(
        label=str(raw["label"]),
        protocol=raw["protocol"],
        values={t: float(v) for t, v in values.items()},
        citation=str(source["citation"]),
        short=str(source["short"]),
        table=str(source["table"]),
        method=str(raw.get("method", "")),
        arch=str(raw.get("arch", "")),
        width=float(raw.get("width", 1.0)),
        note=str(raw.get("note", "")),
        file=path.name,
    )

"""One result record per (checkpoint, task, protocol): schema, provenance, atomic write, read.

A record is the only thing the leaderboard trusts, so it carries everything needed to
trust a number (design.md, Contracts: Record; style.md §3.5): the test metric in percent
and its standard error, the whole validation curve, the chosen hyper-parameters, the
per-example test predictions (for the paired permutation test of S-v1 B.8.1), the card and
protocol versions, the checkpoint hash, the split sizes actually used and where it ran.

Records live at ``results/records/<checkpoint_id>/<task>__<protocol>.json``. Only the driver
writes them, and always atomically, so a killed run leaves either the old file or the new
one, never a torn one.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from clrbench.atomic import write_bytes
from clrbench.errors import UserError

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "diverged")
METRICS = ("top1", "mean_per_class", "map11")


class RecordError(UserError, ValueError):
    """A record that cannot be written or read as asked; the message is one sentence."""


@dataclass(frozen=True)
class Record:
    """The result of one evaluation job; see ``results/README.md`` for every field."""

    checkpoint_id: str  # short stable id, e.g. "quickstart-3f2a9c1d" or "random-resnet18"
    task: str  # card name, e.g. "cifar10", "digits"
    protocol: str  # "linear", "finetune", "finetune-short", ...
    metric: str  # "top1" | "mean_per_class" | "map11"
    status: str  # "ok" | "failed" | "diverged"
    value: float | None  # test metric in percent (0-100); None unless ok
    stderr: float | None  # its standard error, in percent
    task_version: int
    protocol_version: int
    checkpoint: dict[str, Any]  # {"path", "sha256", "kind", "arch", "width", ...}
    hparams: dict[str, Any]  # chosen hyper-parameters
    val_curve: list[Any]  # [[param, val %], ...] or [{...}, ...]
    predictions: dict[str, Any]  # {"y": [...], "pred": [...]} on the test split
    split_sizes: dict[str, int]  # {"train", "val", "test"} actually used
    expected_split_sizes: dict[str, int]  # from the card
    split_hash: str  # hash of the index lists
    timings: dict[str, Any]  # seconds per phase
    provenance: dict[str, Any]  # see clrbench.provenance.provenance()
    error: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)  # e.g. {"study": "temperature"}
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        """Check status, metric and the percent range of the value."""
        where = f"record {self.checkpoint_id}/{self.task}__{self.protocol}"
        if self.status not in STATUSES:
            raise RecordError(f"{where}: status must be one of {', '.join(STATUSES)}, not {self.status!r}.")
        if self.status != "ok":
            if self.value is not None:
                raise RecordError(f"{where}: a {self.status} record carries no value.")
            return
        if self.metric not in METRICS:
            raise RecordError(f"{where}: metric must be one of {', '.join(METRICS)}, not {self.metric!r}.")
        v = self.value
        # Percent, not a fraction: a value outside [0, 100] is a unit bug upstream.
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 100.0:
            raise RecordError(f"{where}: an ok record needs a value in percent (0-100), not {v!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)


def record_path(results_dir: Path | str, checkpoint_id: str, task: str, protocol: str) -> Path:
    """``results_dir/records/<checkpoint_id>/<task>__<protocol>.json``.

    Raises:
        RecordError: a component is empty, hidden, or would leave its folder.
    """
    for name, part in (("checkpoint id", checkpoint_id), ("task", task), ("protocol", protocol)):
        bad = not part or part.startswith(".") or "/" in part or "\\" in part
        # '__' separates task from protocol in the file name, so neither may contain it.
        if bad or (name != "checkpoint id" and "__" in part):
            raise RecordError(f"{name} {part!r} cannot name a record file (empty, hidden, a path, or has '__').")
    return Path(results_dir) / "records" / checkpoint_id / f"{task}__{protocol}.json"


def write_record(results_dir: Path | str, record: Record) -> Path:
    """Write ``record`` atomically to its :func:`record_path`, replacing any previous one.

    Returns:
        The path written.
    """
    path = record_path(results_dir, record.checkpoint_id, record.task, record.protocol)
    side = failed_path(path)
    if record.status != "ok" and _is_ok(path):
        # A failed recompute never replaces a good result: the failure goes beside it, where
        # the board notes it, and the ok record stays what the board shows.
        write_bytes(side, dumps_record(record).encode("utf-8"))
        return side
    write_bytes(path, dumps_record(record).encode("utf-8"))
    if record.status == "ok":
        side.unlink(missing_ok=True)  # the recompute that failed has now succeeded
    return path


FAILED_SUFFIX = ".failed.json"


def failed_path(path: Path) -> Path:
    """``<task>__<protocol>.failed.json``: where a failed recompute of an ok record is kept."""
    return path.with_name(path.name[: -len(".json")] + FAILED_SUFFIX)


def _is_ok(path: Path) -> bool:
    try:
        return path.is_file() and read_record(path).status == "ok"
    except RecordError:
        return False


def failed_recomputes(results_dir: Path | str) -> list[Record]:
    """The failures kept beside ok records (see :func:`write_record`); unreadable ones skipped."""
    out = []
    for p in sorted((Path(results_dir) / "records").glob(f"*/*{FAILED_SUFFIX}")):
        try:
            out.append(read_record(p))
        except RecordError:
            continue
    return out


def dumps_record(record: Record) -> str:
    """The record as JSON: sorted keys, indent 1, predictions and flat lists on one line.

    Non-finite floats (e.g. the val loss of a diverged trial) become ``null`` so the file
    stays strict JSON that any reader accepts.
    """
    return _dump(_plain(record.to_dict(), "record"), 0, compact=False) + "\n"


def _plain(obj: Any, where: str) -> Any:
    """Convert numpy scalars/arrays, tuples and paths into JSON types; reject anything else."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, where) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalar or array, without importing numpy here
        return _plain(obj.tolist(), where)
    raise RecordError(f"{where} holds a {type(obj).__name__}, which a JSON record cannot store.")


def _is_flat(obj: Any) -> bool:
    """Scalars, lists of scalars, and short dicts of scalars: printed on one line."""
    if isinstance(obj, dict):
        scalars = all(not isinstance(v, (dict, list)) for v in obj.values())
        return scalars and len(json.dumps(obj)) <= 100
    if isinstance(obj, list):
        return all(not isinstance(v, (dict, list)) for v in obj)
    return True


def _dump(obj: Any, level: int, compact: bool) -> str:
    # json.dumps(indent=1) would put each of 25,000 predictions on its own line; this keeps
    # the readable layout for metadata and one line per flat list (and for all predictions).
    if compact or _is_flat(obj):
        return json.dumps(obj, sort_keys=True, separators=(",", ":") if compact else (", ", ": "))
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        items = [
            f"{inner}{json.dumps(k)}: {_dump(obj[k], level + 1, compact=k == 'predictions' and level == 0)}"
            for k in sorted(obj)
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [inner + _dump(v, level + 1, compact=False) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "checkpoint_id": (str,), "task": (str,), "protocol": (str,), "metric": (str,), "status": (str,),
    "value": (int, float, type(None)), "stderr": (int, float, type(None)), "task_version": (int,),
    "protocol_version": (int,), "checkpoint": (dict,), "hparams": (dict,), "val_curve": (list,),
    "predictions": (dict,), "split_sizes": (dict,), "expected_split_sizes": (dict,),
    "split_hash": (str,), "timings": (dict,), "provenance": (dict,), "error": (str, type(None)),
    "tags": (dict,), "schema": (int,),
}


def record_from_dict(data: Any, where: str = "record") -> Record:
    """Build a :class:`Record` from parsed JSON, checking fields, types and schema.

    Raises:
        RecordError: missing, unknown or mistyped fields, or a newer schema.
    """
    if not isinstance(data, dict):
        raise RecordError(f"{where} is not a JSON object.")
    schema = data.get("schema", SCHEMA_VERSION)
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise RecordError(
            f"{where} has schema {schema}, newer than this clrbench reads ({SCHEMA_VERSION}); upgrade clrbench."
        )
    names = {f.name for f in fields(Record)}
    required = {f.name for f in fields(Record) if f.default is MISSING and f.default_factory is MISSING}
    missing, unknown = sorted(required - data.keys()), sorted(data.keys() - names)
    if missing or unknown:
        what = "; ".join(s for s in (f"lacks {', '.join(missing)}" if missing else "",
                                     f"has unknown field(s) {', '.join(unknown)}" if unknown else "") if s)
        raise RecordError(f"{where} {what}.")
    for k, v in data.items():
        # bool is an int in Python, but true/false is never a valid version or value.
        if isinstance(v, bool) or not isinstance(v, _JSON_TYPES[k]):
            raise RecordError(f"{where}: field {k} should be {' or '.join(t.__name__ for t in _JSON_TYPES[k])}, "
                              f"not {type(v).__name__}.")
    return Record(**data)



def read_record(path: Path | str) -> Record:
    """Read one record file.

    Raises:
        RecordError: the file is unreadable, torn, not valid JSON or not a valid record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path} is not a readable JSON record ({e}); delete it and rerun that job.") from e
    try:
        return record_from_dict(data, str(path))
    except RecordError:
        raise
    except (TypeError, ValueError) as e:
        raise RecordError(f"{path} is not a valid record ({e}); delete it and rerun that job.") from e


def read_records(results_dir: Path | str, lenient: bool = False) -> list[Record]:
    """Every record under ``results_dir/records``, sorted by path; none skipped silently.

    Temporary files of an in-flight atomic write (hidden ``.*.tmp``) are not records, nor are
    failed recomputes kept beside an ok record (``*.failed.json``, :func:`failed_recomputes`).

    Args:
        lenient: skip an invalid file with one warning line naming it (once per process),
            so one damaged file does not hide the rest of a board.

    Raises:
        RecordError: (not lenient) naming the first file that is invalid or misplaced.
    """
    root = Path(results_dir) / "records"
    if not root.is_dir():
        return []
    records = []
    for path in sorted(root.glob("*/*.json")):
        if path.name.startswith(".") or path.name.endswith(FAILED_SUFFIX):
            continue
        try:
            rec = read_record(path)
            expected = record_path(results_dir, rec.checkpoint_id, rec.task, rec.protocol)
            if expected != path:
                raise RecordError(f"{path} holds the record of {rec.checkpoint_id}/{rec.task}__{rec.protocol}; "
                                  f"move it to {expected} or delete it.")
        except RecordError as e:
            if not lenient:
                raise
            _warn_once(path, f"warning: skipped a damaged record: {e}")
            continue
        records.append(rec)
    return records


_WARNED: set[Path] = set()


def _warn_once(path: Path, message: str) -> None:
    import logging

    if path not in _WARNED:
        _WARNED.add(path)
        logging.getLogger("clrbench").warning(message)


def has_record(results_dir: Path | str, checkpoint_id: str, task: str, protocol: str) -> bool:
    """True only if an ``ok`` record exists for the key.

    Failed, diverged and unreadable records count as absent, so a rerun retries them and
    overwrites the file.
    """
    path = record_path(results_dir, checkpoint_id, task, protocol)
    if not path.is_file():
        return False
    try:
        return read_record(path).status == "ok"
    except RecordError:
        return False

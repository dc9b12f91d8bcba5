"""Evaluation jobs: one (checkpoint, task, protocol) in, one record out, in plain Python.

An :class:`EvalJob` names what to evaluate; the runner of its protocol's kind
(:mod:`clrbench.eval.runners`) turns it into a :class:`~clrbench.records.Record` anywhere (this
process, a Ray worker) without writing it: only the driver writes records. This module holds
what every runner shares: the job, loading its task, the standard error of a test metric, and
:func:`make_record`, the one constructor of records (so every record carries the card's and
the protocol's versions, the expected split sizes and the provenance the same way).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.errors import UserError
from clrbench.provenance import provenance
from clrbench.records import Record


class EvalError(UserError, RuntimeError):
    """An evaluation that cannot run as asked; one clear sentence."""


@dataclass(frozen=True)
class EvalJob:
    """One (checkpoint, task, protocol): its record is named by :attr:`key`."""

    checkpoint: str  # a --checkpoint spec: path, random:<arch>,..., torchvision:<arch>
    checkpoint_id: str
    task: str
    protocol: str
    data_root: str | None = None
    cache_dir: str = ".cache/clrbench"
    tasks_dir: str | None = None
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)  # protocol-specific overrides (e.g. resources)
    source: str = "files"  # files | hf | auto (clrbench.data.hub)
    limit: int | None = None  # at most this many images per split (clrbench.data.limit)
    card_file: str | None = None  # a user task card's file (clrbench.data.user_cards)
    force: bool = False  # --force: recompute the feature-cache entries too

    @property
    def key(self) -> tuple[str, str, str]:
        """(checkpoint_id, task, protocol name): names the record (a protocol given as a
        path is recorded under the name inside the file)."""
        from clrbench.data.limit import limited_name

        return (self.checkpoint_id, self.task, limited_name(protocol_name(self.protocol), self.limit))

    def resources(self) -> dict[str, float]:
        """Ray requests: the protocol file's ``resources`` (overridden by ``options``), without
        GPUs when the job runs on the CPU; the executor adds one CPU when none is named."""
        from clrbench.eval.protocols import load_protocol

        req = {**load_protocol(self.protocol).resources, **self.options.get("resources", {})}
        if self.device == "cpu":
            req.pop("num_gpus", None)  # a CPU job needs no GPU, even if its protocol wants one
        return req


@functools.lru_cache(maxsize=64)
def protocol_name(protocol: str) -> str:
    """The name a protocol (shipped name or YAML path, maybe with an @<R>px variant) records under."""
    if not protocol.split("@", 1)[0].endswith((".yaml", ".yml")):
        return protocol
    from clrbench.eval.protocols import load_protocol

    return load_protocol(protocol).name


def job_card(job: EvalJob) -> Any:
    """The task card of ``job`` (a :class:`~clrbench.data.cards.TaskCard`; a user card's file
    when the job names one)."""
    from clrbench.data.user_cards import find_card

    return find_card(job.task, job.tasks_dir, job.card_file)


def split_dir(job: EvalJob) -> Path:
    return Path(job.cache_dir) / "splits"


def load_job_task(job: EvalJob) -> tuple[Any, Any]:
    """(card, TaskData) of the job; a missing dataset names the command that fetches it."""
    from clrbench.data.images import DatasetError
    from clrbench.data.splits import load_task

    card = job_card(job)
    root = Path(job.data_root) if job.data_root else None
    try:
        return card, load_task(card, root, split_dir(job), job.source, job.limit)
    except DatasetError as e:
        if card.source.root_dir is None:  # offline tasks: nothing to fetch
            raise
        from clrbench.data.fetch import missing_message

        raise DatasetError(f"{e} {missing_message(card, root)}") from None


def test_stderr(y: np.ndarray, pred: np.ndarray, multilabel: bool, value: float) -> float:
    """Standard error of the test metric in percent: binomial for accuracy-like metrics,
    a bootstrap-free approximation (per-example accuracy spread) for mAP."""
    n = max(len(y), 1)
    if multilabel:
        per_example = (np.asarray(pred) == np.asarray(y)).mean(1)
        return float(100 * per_example.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    p = value / 100
    return float(100 * np.sqrt(max(p * (1 - p), 0.0) / n))


def _safe_card(task: str, tasks_dir: str | None) -> Any:
    from clrbench.data.cards import load_cards

    try:
        return load_cards(tasks_dir).get(task)
    except Exception:  # called while reporting a failure: must not raise again
        return None


def _safe_protocol(protocol: str) -> Any:
    from clrbench.eval.protocols import load_protocol

    try:
        return load_protocol(protocol)
    except Exception:  # called while reporting a failure: must not raise again
        return None


def make_record(checkpoint_id: str, task: str, protocol: str, *, status: str = "ok", card: Any = None,
                proto: Any = None, tasks_dir: str | None = None, checkpoint: dict[str, Any] | None = None,
                value: float | None = None, stderr: float | None = None,
                hparams: dict[str, Any] | None = None, val_curve: list[Any] | None = None,
                predictions: dict[str, Any] | None = None, split_sizes: dict[str, int] | None = None,
                split_hash: str = "", timings: dict[str, Any] | None = None, error: str | None = None,
                tags: dict[str, Any] | None = None, expected_split_sizes: dict[str, int] | None = None,
                data_tags: dict[str, Any] | None = None) -> Record:
    """The one constructor of evaluation records.

    ``card`` and ``proto`` fill the metric, the versions and the expected sizes; when they are
    not given they are looked up by name (``task``, ``protocol``) without ever raising, so a
    failed job still gets its record. A protocol given as a path records under its name.
    ``expected_split_sizes`` overrides the card's (a few-shot draw expects k per class).
    ``data_tags`` are the task data's (``TaskData.tags``: hub source, ``--limit``): they join the
    record's tags, and a limited run records under ``PROTOCOL@limitN`` (clrbench.data.limit).
    """
    from clrbench.data.limit import LIMIT_TAG, limited_name

    card = card if card is not None else _safe_card(task, tasks_dir)
    proto = proto if proto is not None else _safe_protocol(protocol)
    name = limited_name(proto.name if proto is not None else protocol, (data_tags or {}).get(LIMIT_TAG))
    return Record(
        checkpoint_id=checkpoint_id, task=task, protocol=name,
        metric=card.metric if card is not None else "", status=status, value=value, stderr=stderr,
        task_version=card.version if card is not None else 0,
        protocol_version=proto.version if proto is not None else 0,
        checkpoint=checkpoint or {}, hparams=hparams or {}, val_curve=val_curve or [],
        predictions=predictions or {}, split_sizes=split_sizes or {},
        expected_split_sizes=(expected_split_sizes if expected_split_sizes is not None
                              else dict(card.expected_sizes) if card is not None else {}),
        split_hash=split_hash,
        timings=timings or {}, provenance=provenance(), error=error, tags={**(data_tags or {}), **(tags or {})},
    )


def failed_record(job: Any, error: BaseException) -> Record:
    """The record of a job that raised: status failed, the error kept, no value.

    Works for any job whose ``key`` is (checkpoint_id, task, protocol).
    """
    from clrbench.data.splits import task_tags

    cid, task, protocol = tuple(job.key)[:3]
    proto = _safe_protocol(getattr(job, "protocol", protocol))
    # The key's protocol is already PROTOCOL@limitN; the limit is re-applied only to proto.name.
    limited = task_tags("files", getattr(job, "limit", None)) if proto is not None else None
    return make_record(cid, task, protocol if proto is None else proto.name, status="failed", proto=proto,
                       tasks_dir=getattr(job, "tasks_dir", None), data_tags=limited,
                       checkpoint={"path": getattr(job, "checkpoint", "")},
                       error=f"{type(error).__name__}: {error}")

"""Run evaluation jobs and write their records: in this process, or fanned out over Ray.

Only the driver writes records (atomically), so a killed driver leaves no torn or duplicate
record, and a rerun of the same command runs only what is missing. A job that raises is
recorded as failed with its error, and the rest of the suite completes.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clrbench.records import Record, provenance, write_record
from clrbench.transfer.jobs import EvalJob, run_job

Event = dict[str, Any]  # {"job": EvalJob, "state": "running" | "done" | "failed", "record": Record | None}


def failed_record(job: EvalJob, error: BaseException) -> Record:
    """The record of a job that raised: status failed, the error kept, no value."""
    from clrbench.transfer.taskcard import load_cards, load_protocol

    card = load_cards(job.tasks_dir).get(job.task)
    try:
        proto_version = load_protocol(job.protocol).version
    except Exception:  # noqa: BLE001 - the record must still be written
        proto_version = 0
    return Record(
        checkpoint_id=job.checkpoint_id, task=job.task, protocol=job.protocol,
        metric=card.metric if card else "", status="failed", value=None, stderr=None,
        task_version=card.version if card else 0, protocol_version=proto_version,
        checkpoint={"path": job.checkpoint}, hparams={}, val_curve=[], predictions={},
        split_sizes={}, expected_split_sizes=dict(card.expected_sizes) if card else {}, split_hash="",
        timings={}, provenance=provenance(), error=f"{type(error).__name__}: {error}",
    )


def _is_user_error(e: BaseException) -> bool:
    """Missing data and the like: one sentence in the record, no traceback."""
    from clrbench.checkpoint import CheckpointError
    from clrbench.config import ConfigError
    from clrbench.transfer.datasets import DatasetError

    return isinstance(e, (CheckpointError, ConfigError, DatasetError))


def run_local(jobs: list[EvalJob], results_dir: Path,
              on_event: Callable[[Event], None] | None = None) -> list[Record]:
    """Run the jobs one after another in this process, writing each record as it completes."""
    records = []
    for job in jobs:
        if on_event:
            on_event({"job": job, "state": "running", "record": None})
        try:
            rec = run_job(job)
        except Exception as e:  # noqa: BLE001 - recorded as failed; the suite goes on
            if not _is_user_error(e):
                traceback.print_exc()
            rec = failed_record(job, e)
        write_record(results_dir, rec)
        records.append(rec)
        if on_event:
            on_event({"job": job, "state": "done" if rec.status == "ok" else "failed", "record": rec})
    return records


def run_jobs(jobs: list[EvalJob], results_dir: Path, executor: str = "local",
             on_event: Callable[[Event], None] | None = None, **ray_options: Any) -> list[Record]:
    """Dispatch to the local loop or to Ray (``executor='ray'``)."""
    if executor == "local":
        return run_local(jobs, results_dir, on_event)
    if executor == "ray":
        return run_ray(jobs, results_dir, on_event, **ray_options)
    raise ValueError(f"Unknown executor {executor!r}; use local or ray.")


def run_ray(jobs: list[EvalJob], results_dir: Path, on_event: Callable[[Event], None] | None = None,
            address: str | None = None, workers: int | None = None) -> list[Record]:
    """Submit every job as a Ray task; the driver writes each record as its result arrives."""
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=workers if address is None else None,
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    @ray.remote(num_cpus=1, max_retries=2, retry_exceptions=False)
    def _remote(job: EvalJob) -> Record:
        import torch

        torch.set_num_threads(1)  # Ray reuses workers: set threads inside every task
        return run_job(job)

    pending = {_remote.remote(job): job for job in jobs}
    for job in jobs:
        if on_event:
            on_event({"job": job, "state": "running", "record": None})
    records = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            rec = ray.get(ready[0])
        except Exception as e:  # noqa: BLE001 - a job that still fails after retries
            cause = getattr(e, "cause", None) or e
            rec = failed_record(job, cause)
        write_record(results_dir, rec)
        records.append(rec)
        if on_event:
            on_event({"job": job, "state": "done" if rec.status == "ok" else "failed", "record": rec})
    return records

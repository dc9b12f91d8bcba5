"""Which code runs a job: the runner of its protocol's kind, and how its result is stored.

Every protocol kind has one runner ``(EvalJob) -> Record``; a fine-tune trial job
(:class:`~clrbench.eval.finetune.grid.TrialJob`) has its own, returning a ``TrialResult``
that is persisted under the cache folder, never as a record. These are the ``run``,
``write`` and ``on_failure`` the executor is given for evaluation jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clrbench.eval.fewshot import run_fewshot
from clrbench.eval.finetune.asha import run_asha
from clrbench.eval.finetune.grid import (
    TrialJob,
    TrialResult,
    run_finetune,
    run_trial_job,
    save_trial,
)
from clrbench.eval.finetune.semi import run_semi
from clrbench.eval.jobs import EvalError, EvalJob, failed_record
from clrbench.eval.knn import run_knn
from clrbench.eval.linear import run_linear
from clrbench.records import Record, write_record

#: protocol kind -> runner. A new protocol kind adds its runner here.
RUNNERS: dict[str, Callable[[EvalJob], Record]] = {
    "linear": run_linear,
    "knn": run_knn,
    "fewshot": run_fewshot,
    "finetune": run_finetune,
    "semi": run_semi,
    "finetune-asha": run_asha,  # the same grid, searched by ASHA on Ray Tune
}


def run_job(job: EvalJob | TrialJob) -> Record | TrialResult:
    """Run one job to its record (or a trial job to its TrialResult); never writes a record."""
    if isinstance(job, TrialJob):
        return run_trial_job(job)
    from clrbench.eval.protocols import load_protocol

    kind = load_protocol(job.protocol).kind
    runner = RUNNERS.get(kind)
    if runner is None:
        raise EvalError(f"protocol {job.protocol!r} has kind {kind!r}, which no runner evaluates.")
    return runner(job)


def write_result(results_dir: Path, result: Any) -> Path:
    """Store what :func:`run_job` returned: a Record as its record file, a TrialResult as its
    trial file under the cache folder (where the final job looks for it)."""
    if isinstance(result, TrialResult):
        return save_trial(result)
    return write_record(results_dir, result)


def on_failure(job: Any, error: BaseException) -> Record | None:
    """The failed record of a job, or None for a trial (its final job reruns a missing trial)."""
    if isinstance(job, TrialJob):
        return None
    return failed_record(job, error)


def plan_trials(jobs: list[Any]) -> list[TrialJob]:
    """The trial jobs, not yet persisted, of the fine-tune jobs among ``jobs`` (others ignored).

    Running these first (in parallel) and then ``jobs`` gives the same records as running
    ``jobs`` alone; it only spreads the grid over workers.
    """
    from clrbench.eval.finetune.grid import trial_jobs
    from clrbench.eval.protocols import load_protocol

    return [t for job in jobs if isinstance(job, EvalJob) and load_protocol(job.protocol).kind == "finetune"
            for t in trial_jobs(job)]

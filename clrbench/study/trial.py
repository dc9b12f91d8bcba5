"""One study job: (trial, task, feature layer) -> one linear-probe record, pretraining first.

The executor's unit is a job with one record (``clrbench.eval.executor``), while a trial
is one pretraining run probed on several tasks (and on h and g(h) in the head study). So
every job of a trial first makes sure its run is trained: the first job to take the run's
file lock trains it (resuming a run a killed study left half-way), and the others find the
finished run, whatever process or Ray worker they are in. The outcome of the pretraining
(ok, diverged, failed) is written beside the run, so a diverged run is not trained again
for each of its tasks, and shows as a diverged cell in the study's picture.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clrbench.atomic import write_bytes
from clrbench.config import PretrainConfig, load_pretrain_config
from clrbench.records import Record
from clrbench.study.grids import Trial

PROTOCOL = "linear"
OUTCOME = "outcome.json"  # beside last.pt: {"status": ok|diverged|failed, "error", pretraining facts}


@dataclass(frozen=True)
class StudyContext:
    """What every job of one study shares (picklable; paths as strings for Ray workers)."""

    study: str
    recipe: str  # base recipe: a shipped name or a path
    base_overrides: tuple[str, ...]  # the user's --set, then the budget's
    ident: str  # short hash of the resolved base config: runs of other settings never mix
    study_dir: str
    cache_dir: str = ".cache/clrbench"
    data_root: str | None = None
    tasks_dir: str | None = None
    device: str = "cpu"  # feature extraction and probe
    cpus: float = 1.0  # Ray request of one job
    gpus: float = 0.0


@dataclass(frozen=True)
class StudyJob:
    """The record of one trial on one task for one layer (``h`` or ``g``)."""

    trial: Trial
    task: str
    layer: str
    ctx: StudyContext

    @property
    def run_name(self) -> str:
        return f"{self.ctx.study}-{self.trial.key}-{self.ctx.ident}"

    @property
    def checkpoint_id(self) -> str:
        """Stable before training (resume plans by it); ``-g`` marks features after the head."""
        return self.run_name + ("-g" if self.layer == "g" else "")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.checkpoint_id, self.task, PROTOCOL)

    @property
    def series(self) -> str:
        """What the study's table and picture group this job's records by: the feature layer."""
        return self.layer

    @property
    def run_dir(self) -> Path:
        return Path(self.ctx.study_dir) / "runs" / self.run_name

    def resources(self) -> dict[str, float]:
        return {"num_cpus": self.ctx.cpus, "num_gpus": self.ctx.gpus}

    def config(self) -> PretrainConfig:
        """Base recipe, then the user's and the budget's overrides, then the grid point's."""
        where = [f"run.out={Path(self.ctx.study_dir) / 'runs'}", f"run.name={self.run_name}"]
        return load_pretrain_config(self.ctx.recipe, [*self.ctx.base_overrides, *self.trial.overrides, *where])

    def tags(self) -> dict[str, Any]:
        return {"study": self.ctx.study, "trial": self.trial.key, "point": dict(self.trial.point),
                "layer": self.layer, "study_id": self.ctx.ident}


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX advisory), held by one job of a trial at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_outcome(run_dir: Path) -> dict[str, Any] | None:
    """The pretraining outcome written beside the run, or None (not trained, or unreadable)."""
    try:
        return json.loads((run_dir / OUTCOME).read_text())
    except (OSError, ValueError):
        return None


def _last_metrics(run_dir: Path) -> dict[str, Any]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    return json.loads(lines[-1]) if lines else {}


def pretrain_once(job: StudyJob) -> dict[str, Any]:
    """Train the job's run unless a finished (or diverged) one is there; return its outcome.

    A run a killed study left half-way resumes from its last checkpoint. A NaN loss is the
    outcome ``diverged`` (a result: S-v1 Table 5's raw dot products can blow up), any other
    error ``failed`` with its message; the next study command retries failed runs only.
    """
    from clrbench.pretraining.train import TrainingError, train_loop

    run_dir = job.run_dir
    with locked(run_dir.parent / f".{job.run_name}.lock"):
        done = read_outcome(run_dir)
        if done and (done["status"] == "diverged" or (done["status"] == "ok" and (run_dir / "last.pt").exists())):
            return done
        if done and done["status"] == "failed":
            return done  # failed in this study command already: do not train it once per task
        try:
            summary = train_loop(job.config(), resume=True)
        except TrainingError as e:
            # train.py words a non-finite loss "The loss became nan at step ..."
            status = "diverged" if "loss became" in str(e) else "failed"
            out: dict[str, Any] = {"status": status, "error": str(e)}
        except Exception as e:  # the trial's outcome, shown in the picture; the study goes on
            from clrbench.log import logger

            logger.warning(f"Pretraining {job.run_name} failed.", exc_info=True)
            out = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        else:
            last = _last_metrics(run_dir)
            out = {"status": "ok", "error": None, "steps": summary.steps, "lr": summary.derived.lr,
                   "batch_size_global": summary.derived.batch_size_global,
                   "loss": last.get("loss"), "contrastive_acc": last.get("contrastive_acc")}
            if math.isfinite(summary.seconds):
                out["seconds"] = round(summary.seconds, 1)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes(run_dir / OUTCOME, json.dumps(out, indent=1).encode())
        return out


def run_study_job(job: StudyJob) -> Record:
    """Pretrain the trial if needed, then probe its ``layer`` on ``task``; never writes the record."""
    from clrbench.eval.jobs import EvalJob
    from clrbench.eval.linear import run_linear
    from clrbench.study.projection import SCHEME, register

    register()  # in every process that runs jobs: Ray workers import this module, not the CLI
    outcome = pretrain_once(job)
    if outcome["status"] != "ok":
        return unfinished_record(job, outcome["status"], outcome.get("error"))
    ckpt = str(job.run_dir / "last.pt")
    spec = ckpt if job.layer == "h" else f"{SCHEME}:{ckpt}"
    ev = EvalJob(spec, job.checkpoint_id, job.task, PROTOCOL, job.ctx.data_root, job.ctx.cache_dir,
                 job.ctx.tasks_dir, job.ctx.device)
    rec = run_linear(ev)
    pretrain = {k: v for k, v in outcome.items() if k not in ("status", "error")}
    return replace(rec, tags={**rec.tags, **job.tags(), "pretrain": pretrain})


def unfinished_record(job: Any, status: str, error: str | None) -> Record:
    """The record of a job whose pretraining diverged or whose run failed: no value, the error kept.

    ``job`` is any study job (:class:`StudyJob` or the label-efficiency study's): its ``key``
    names the record."""
    from clrbench.eval.jobs import make_record

    # make_record looks the card and protocol up without ever raising: this runs when something
    # already went wrong, and one failed job must not stop the whole study.
    checkpoint_id, task, protocol = job.key
    return make_record(checkpoint_id, task, protocol, status=status, tasks_dir=job.ctx.tasks_dir,
                       checkpoint={"path": str(job.run_dir / "last.pt")}, error=error or status, tags=job.tags())


def on_job_failure(job: Any, error: BaseException) -> Record:
    """The executor's ``on_failure``: a job that raised becomes a failed record with its tags."""
    return unfinished_record(job, "failed", f"{type(error).__name__}: {error}")

"""The evaluation plan: checkpoints x tasks x protocols -> jobs -> executor -> records.

:func:`plan_eval` expands what ``clrbench eval`` was asked into an :class:`EvalPlan`: the jobs
still to run, those already recorded, and how to run them. :meth:`EvalPlan.execute` runs
them through the executor (in this process or on Ray) and reports progress as events (dicts,
see :mod:`clrbench.eval.executor`) that a front end renders; the studies plan their own jobs
and run them through the same object. Fine-tune protocols fan out on Ray in two phases:
every (lr, wd) trial beside the other jobs first, then the final jobs, which find their trials
done (:mod:`clrbench.eval.finetune.grid`).
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clrbench.eval.jobs import EvalError, EvalJob
from clrbench.records import Record, has_record


@dataclass(frozen=True)
class EvalOptions:
    """Where the data and caches are, and where jobs compute (shared by every job of a plan)."""

    data_root: str | None = None
    cache_dir: str = ".cache/clrbench"
    tasks_dir: str | None = None
    device: str = "cpu"
    force: bool = False  # recompute jobs that already have a record
    source: str = "files"  # files | hf | auto: where the task images come from (clrbench.data.hub)
    limit: int | None = None  # smoke run: at most this many images per split (clrbench.data.limit)


@dataclass
class EvalPlan:
    """Jobs to run (``todo``), jobs already recorded (``done``), and how to run and store them.

    ``run``, ``write`` and ``on_failure`` default to the evaluation runners
    (:mod:`clrbench.eval.runners`); a study passes its own. ``annotate`` edits a record in
    the driver before it is written (e.g. adds the checkpoint's training step).
    """

    results: Path
    todo: list[Any]
    done: list[Any] = field(default_factory=list)
    run: Callable[[Any], Any] | None = None
    write: Callable[[Path, Any], Any] | None = None
    on_failure: Callable[[Any, BaseException], Record | None] | None = None
    annotate: Callable[[Any, Record], Record] | None = None
    planned_at: float | None = None  # when the records were read: later ones are another driver's

    @property
    def checkpoint_ids(self) -> list[str]:
        """Ids of every planned checkpoint, in order, without repeats."""
        return list(dict.fromkeys(getattr(j, "checkpoint_id", j.key[0]) for j in self.todo + self.done))

    def phases(self, executor: str) -> list[list[Any]]:
        """The job lists to run one after another: on Ray, fine-tune trials fan out beside the
        other jobs first and the fine-tune final jobs follow; locally, the final jobs run their
        trials themselves, one after another."""
        if executor != "ray" or self.run is not None:
            return [list(self.todo)]
        from clrbench.eval.runners import plan_trials

        trials = plan_trials(self.todo)
        fanned = {t.key for t in trials}
        first = trials + [j for j in self.todo if j.key not in fanned]
        return [p for p in (first, [j for j in self.todo if j.key in fanned]) if p]

    def execute(self, executor: str = "local", on_event: Callable[[dict[str, Any]], None] | None = None,
                address: str | None = None, workers: int | None = None) -> list[Any]:
        """Run every job still to do; records are written as they arrive.

        Returns:
            What was stored (records and trial results), in completion order.
        """
        from clrbench.eval.executor import run_jobs

        phases = self.phases(executor)
        if on_event is not None:  # the whole plan is known up front: show it queued
            for job in (j for phase in phases for j in phase):
                on_event({"job": job, "state": "queued", "record": None, "error": None})
        stored: list[Any] = []
        for phase in phases:
            stored += run_jobs(phase, self.results, executor=executor, on_event=on_event, run=self.run,
                               write=self.write, on_failure=self.on_failure, annotate=self.annotate,
                               address=address, workers=workers, since=self.planned_at)
        return stored


def plan_jobs(checkpoints: Sequence[str], tasks: str, protocols: Sequence[str], results_dir: Path, *,
              data_root: str | None = None, cache_dir: str = ".cache/clrbench", tasks_dir: str | None = None,
              device: str = "cpu", force: bool = False, source: str = "files",
              limit: int | None = None) -> tuple[list[EvalJob], list[EvalJob]]:
    """Expand checkpoints x tasks x protocols; returns (to run, already recorded).

    Raises:
        ConfigError: an unknown task or protocol, or a malformed protocol file.
        CheckpointError: a checkpoint that cannot be identified.
    """
    from clrbench.data.user_cards import select_cards
    from clrbench.eval.protocols import load_protocol
    from clrbench.eval.variants import resolve_native
    from clrbench.weights.identity import encoder_info, known_checkpoint_id

    cards = select_cards(tasks, tasks_dir)
    # Fail early on an unknown name or a malformed file; a protocol given as a path is
    # recorded under the name inside it. NAME@native becomes NAME@<R>px per encoder.
    for p in protocols:
        if not p.endswith("@native"):
            load_protocol(p)
    todo: list[EvalJob] = []
    done: list[EvalJob] = []
    for spec in checkpoints:
        info = encoder_info(spec, cache_dir)
        cid = known_checkpoint_id(info, results_dir)  # same weights, same id and records
        resolved = {p: resolve_native(p, info.meta, spec) for p in protocols}
        for card, card_file in cards:
            for p in protocols:
                job = EvalJob(spec, cid, card.name, resolved[p], data_root, cache_dir, tasks_dir,
                              device, source=source, limit=limit, card_file=card_file, force=force)
                recorded = not force and has_record(results_dir, *job.key)
                (done if recorded else todo).append(job)
    return todo, done


def plan_eval(checkpoints: Sequence[str], tasks: str, protocols: Sequence[str], results: Path,
              options: EvalOptions = EvalOptions()) -> EvalPlan:
    """The plan of one ``clrbench eval`` batch; records of a pretraining run's checkpoints get the
    run's name, step and epoch (what a score-vs-epoch curve needs)."""
    import time

    planned_at = time.time()  # before the records are read: one written meanwhile is not missed
    todo, done = plan_jobs(checkpoints, tasks, protocols, results, data_root=options.data_root,
                           cache_dir=options.cache_dir, tasks_dir=options.tasks_dir, device=options.device,
                           force=options.force, source=options.source, limit=options.limit)
    progress: dict[str, dict[str, Any]] = {}  # read on first use: a plan with nothing to do reads no file

    def annotate(job: Any, rec: Record) -> Record:
        from clrbench.eval.watch import (
            checkpoint_progress,  # imports torch: only once a job has run
        )

        spec = getattr(job, "checkpoint", "")
        if spec not in progress:
            progress[spec] = checkpoint_progress(spec)
        info = progress[spec]
        return replace(rec, checkpoint={**info, **rec.checkpoint}) if info else rec

    return EvalPlan(Path(results), todo, done, annotate=annotate, planned_at=planned_at)


def expand_checkpoints(specs: Sequence[str]) -> list[str]:
    """``--checkpoint`` values with their globs expanded (sorted), without repeats.

    Raises:
        EvalError: a glob that matches nothing.
    """
    out: list[str] = []
    for s in specs:
        if any(ch in s for ch in "*?[") and ":" not in s:
            hits = sorted(glob.glob(s))
            if not hits:
                raise EvalError(f"no checkpoint matches {s!r}.")
            out.extend(hits)
        else:
            out.append(s)
    return list(dict.fromkeys(out))


def check_writable(results: Path) -> None:
    """Fail now, not after an hour of jobs, when records cannot be written under ``results``."""
    try:
        (results / "records").mkdir(parents=True, exist_ok=True)
        probe_file = results / "records" / ".write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise EvalError(f"cannot write to the results folder {results} ({e.strerror}); "
                        "choose another with --results.") from None

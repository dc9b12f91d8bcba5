"""The fine-tune grid searched by ASHA on Ray Tune: the paper's grid and steps, a sixth of the cost.

S-v1 B.8.1 trains every (lr, wd) pair of a 7 x 8 grid for 20,000 steps (protocol.md §2.2).
Here each pair is one Ray Tune trial (``Tuner`` + ``ASHAScheduler``, Li et al. 2020,
asynchronous successive halving) that reports its val metric at the protocol's rungs (e.g.
1,250 / 5,000 / 20,000 steps, reduction factor 4): at each rung a trial below the top 1/4 of
the scores already recorded there stops. Every trial keeps the schedule and batches of the
full-length run (``train_trial(..., until=rung)``), so a trial that reaches the last rung is
the very trial ``finetune`` would have trained, seed included. Among those the best on val
(ties: the earlier grid point) is retrained on train+val and scored on test by
:mod:`clrbench.eval.finetune.grid`'s own code, unchanged.

State, all under the job's content-addressed cache folder (shared storage on a cluster):

- ``rungs-lr{i}-wd{j}.json``: the rows a trial has finished (steps, val, status); the source
  of truth for the record's rung table. A restarted trial replays them instead of retraining.
- ``trial-lr{i}-wd{j}.pt``: the trial's weights at its last rung or ``checkpoint_every``
  step, so a preempted trial resumes there (deleted when the search ends).
- ``tune/asha/``: Ray Tune's experiment state; rerunning the command after the driver was
  killed restores it (``Tuner.restore``): finished and stopped trials stay done, the others
  resume.

The search itself (:func:`run_search`) takes any ``trial_fn(point, until) -> row``, so the
rung schedule and the selection are tested on a stub without training.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clrbench.atomic import write_bytes
from clrbench.errors import UserError
from clrbench.eval.finetune import grid as grid_mod
from clrbench.eval.protocols import FinetuneAshaProtocol
from clrbench.records import Record

if TYPE_CHECKING:
    from clrbench.eval.jobs import EvalJob

Point = tuple[int, int]  # (lr index, wd index) into the protocol's grids
TrialFn = Callable[[Point, int], dict[str, Any]]  # (point, until step) -> {"val", "status", "seconds", ...}
EXPERIMENT = "asha"  # Tune's experiment folder name under <folder>/tune/
_CONTEXTS: dict[tuple[Any, ...], Any] = {}  # per worker process: the one job's loaded Context
_FLOOR = 0.0  # what a diverged trial reports to ASHA: the metric's minimum, so it ranks last
_TIE = 1e-7  # weight of the training loss in the score ASHA ranks by: breaks ties of val only


def score(row: dict[str, Any]) -> float:
    """What ASHA compares at a rung: val, ties broken by the lower training loss.

    Early rungs of hard or barely-trained tasks tie at chance (measured: 14 of 16 trials at
    exactly 10.0% val on digits after 4 steps), and ASHA promotes a trial unless it is strictly
    below the cutoff, so without a tie-break it promotes them all. 1e-7 x loss is far below
    any val difference (one image of val moves it by >= 1e-4 points up to a million images).
    Selection among full-length trials uses val alone, as ``finetune`` does.
    """
    if row["status"] != "ok" or row.get("val") is None:
        return _FLOOR
    loss = row.get("final_loss")
    return float(row["val"]) - (_TIE * float(loss) if loss is not None and math.isfinite(loss) else 0.0)


@dataclass(frozen=True)
class Search:
    """What one ASHA search needs, independent of what a trial trains.

    ``points`` are in launch order (a seeded permutation of the grid, so early trials, which
    asynchronous halving promotes more easily, are not all of the smallest lr).
    ``resources`` are one trial's Ray requests (``num_cpus``, ``num_gpus``, fractions allowed).
    """

    points: tuple[Point, ...]
    rungs: tuple[int, ...]
    reduction_factor: int
    folder: str
    resources: dict[str, float]
    max_concurrent: int = 0
    max_failures: int = 2  # a trial whose worker dies restarts this often (from its rung files)

    @property
    def experiment(self) -> Path:
        return Path(self.folder).resolve() / "tune" / EXPERIMENT


def rows_path(folder: str | Path, point: Point) -> Path:
    return Path(folder) / f"rungs-lr{point[0]}-wd{point[1]}.json"


def read_rows(folder: str | Path, point: Point) -> list[dict[str, Any]]:
    """The rung rows a trial has finished, in step order; [] when none or unreadable."""
    try:
        rows = json.loads(rows_path(folder, point).read_text())
    except (OSError, ValueError):
        return []
    return sorted((r for r in rows if isinstance(r, dict) and "steps" in r), key=lambda r: r["steps"])


def _write_rows(folder: str | Path, point: Point, rows: list[dict[str, Any]]) -> None:
    write_bytes(rows_path(folder, point), (json.dumps(rows, sort_keys=True) + "\n").encode())


class AshaError(UserError, RuntimeError):
    """A finetune-asha search that cannot run as asked; one sentence."""


def _trainable(config: dict[str, Any], search: Search, trial_fn: TrialFn) -> None:
    """One Tune trial. ``tune.report`` waits for the scheduler's decision, so a trial ASHA
    stops trains no further than the rung it stopped at."""
    import torch
    from ray import tune

    threads = max(1, int(search.resources.get("num_cpus", 1)))
    torch.set_num_threads(threads)  # its CPU request (a reused actor keeps what the last trial set)
    os.environ["CLRBENCH_CPUS"] = str(threads)  # the loader sizes its workers from it
    point = (int(config["trial"][0]), int(config["trial"][1]))
    run_trial(point, search, trial_fn, tune.report)


def run_trial(point: Point, search: Search, trial_fn: TrialFn, report: Callable[[dict[str, Any]], None]) -> None:
    """Run ``point`` to each rung in turn and ``report`` {"val", "steps"} there; a rung already
    in the trial's rung file is replayed from it (a restarted trial does not retrain it). A
    diverged rung reports the metric's floor and ends the trial."""
    rows = read_rows(search.folder, point)
    for rung in search.rungs:
        row = next((r for r in rows if r["steps"] == rung), None)
        if row is None:
            row = {**trial_fn(point, rung), "steps": rung}
            rows = [*rows, row]
            _write_rows(search.folder, point, rows)
        ok = row["status"] == "ok" and row.get("val") is not None
        report({"val": float(row["val"]) if ok else _FLOOR, "score": score(row), "steps": rung})
        if not ok:
            return


def _replaying_asha(folder: str, **kw: Any) -> Any:
    """Ray's ASHAScheduler that also learns, as each trial is added, the rungs the trial's rung
    file says it already passed. A restored experiment re-creates the scheduler as it was
    first built (empty rungs), so without this a trial resumed after the driver was killed
    would be compared with nothing and promoted (measured: tests/eval/test_finetune_asha.py)."""
    from ray.tune.schedulers import ASHAScheduler

    class ReplayingASHA(ASHAScheduler):
        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            super().on_trial_add(tune_controller, trial)
            bracket = self._trial_info.get(trial.trial_id)
            rungs = dict(getattr(bracket, "_rungs", []))  # {milestone: {trial_id: score}}
            for row in read_rows(folder, (int(trial.config["trial"][0]), int(trial.config["trial"][1]))):
                if row["steps"] in rungs:
                    rungs[row["steps"]].setdefault(trial.trial_id, (self._metric_op or 1.0) * score(row))

    return ReplayingASHA(**kw)


def _tuner(search: Search, trial_fn: TrialFn) -> Any:
    """A Tuner over ``search.points``: restored from its experiment folder when one is there."""
    from ray import tune

    res = {"cpu": float(search.resources.get("num_cpus", 1)), "gpu": float(search.resources.get("num_gpus", 0))}
    trainable = tune.with_resources(tune.with_parameters(_trainable, search=search, trial_fn=trial_fn), res)
    path = search.experiment
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    scheduler = _replaying_asha(search.folder, time_attr="steps", metric="score", mode="max", max_t=search.rungs[-1],
                                grace_period=search.rungs[0], reduction_factor=search.reduction_factor)
    return tune.Tuner(
        trainable, param_space={"trial": tune.grid_search([list(p) for p in search.points])},
        # reuse_actors: a new trial takes over a finished trial's worker process (and its loaded
        # task and encoder) instead of paying a process start and the imports again.
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1,
                                    max_concurrent_trials=search.max_concurrent or None, reuse_actors=True),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(path.parent), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=search.max_failures)),
    )


def run_search(search: Search, trial_fn: TrialFn, *, address: str | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the ASHA search; returns its rung table (see :func:`rung_table`).

    Starts a local Ray cluster unless one is initialised or ``address`` names one.
    """
    import logging

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard/CSV files per trial
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Trials are the work, not background help: Ray's default worker niceness (15) starves them
    # on a machine that runs anything else.
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials keep the driver's working folder
    # Trial workers of a local cluster import the clrbench this driver runs (a checkout may
    # shadow an installed copy only through the driver's working directory, which they lack).
    root = str(Path(__file__).resolve().parents[3])
    if root not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local clusters: no token prompt
    import ray

    if not ray.is_initialized():  # else: the caller's cluster (e.g. the Ray executor's)
        from clrbench.launch import check_ray_address

        check_ray_address(address)  # a dead address fails in seconds, not after minutes of retries
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as e:
            raise AshaError(f"cannot reach a Ray cluster at {address!r} ({e}).") from None
    results = _tuner(search, trial_fn).fit()
    errored: set[Point] = set()
    for r in results:
        if r.error is not None:
            i, j = r.config["trial"]
            errored.add((int(i), int(j)))
    return rung_table(search, errored)


def rung_table(search: Search, errored: set[Point] | frozenset[Point] = frozenset()) -> list[dict[str, Any]]:
    """Every trial's rows, in launch order: one row per (trial, rung reached).

    Each row: ``trial`` ("lr{i}-wd{j}"), ``point`` [i, j], ``launch`` (its place in the launch
    order), ``steps``, ``val`` (percent, None if diverged), ``status`` ("ok" | "diverged" |
    "failed"), ``seconds``, and ``stopped``: True on the last row of a trial ASHA stopped
    before the last rung (a diverged or failed trial is not "stopped", it ended).
    """
    table = []
    full = search.rungs[-1]
    for k, point in enumerate(search.points):
        rows = read_rows(search.folder, point)
        for n, r in enumerate(rows):
            last = n == len(rows) - 1
            status = (
                "failed" if last and point in errored and r["status"] == "ok" and r["steps"] < full else r["status"]
            )
            table.append({"trial": f"lr{point[0]}-wd{point[1]}", "point": list(point), "launch": k,
                          "steps": int(r["steps"]), "val": r.get("val"), "status": status,
                          "seconds": r.get("seconds"), "stopped": bool(last and status == "ok" and r["steps"] < full)})
        if not rows and point in errored:
            table.append({"trial": f"lr{point[0]}-wd{point[1]}", "point": list(point), "launch": k, "steps": 0,
                          "val": None, "status": "failed", "seconds": None, "stopped": False})
    return table


def trial_steps(table: list[dict[str, Any]]) -> int:
    """Training steps the search spent: each trial's furthest rung, summed."""
    furthest: dict[str, int] = {}
    for r in table:
        furthest[r["trial"]] = max(furthest.get(r["trial"], 0), r["steps"])
    return sum(furthest.values())


def finalists(table: list[dict[str, Any]], full: int) -> list[Point]:
    """Trials that reached ``full`` steps with a val score, in grid order (the tie order)."""
    return sorted(tuple(r["point"]) for r in table if r["steps"] == full and r["status"] == "ok"
                  and r["val"] is not None)


def launch_order(proto: FinetuneAshaProtocol) -> tuple[Point, ...]:
    """The grid in a permutation seeded by the protocol's seed."""
    points = grid_mod.grid(proto)
    order = np.random.default_rng([proto.seed, 7_031]).permutation(len(points))
    return tuple(points[k] for k in order)


class FinetuneTrials:
    """``trial_fn`` of a real fine-tune job: train (i, j) to a rung, score val. Picklable; the
    task and encoder are loaded once per worker process, on first use."""

    def __init__(self, job: EvalJob) -> None:
        self.job = job
        self._ctx: grid_mod.Context | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"job": self.job, "_ctx": None}

    def context(self) -> grid_mod.Context:
        if self._ctx is None:
            key = (self.job.checkpoint, self.job.task, self.job.protocol, self.job.cache_dir, self.job.data_root)
            if key not in _CONTEXTS:  # a reused worker process keeps the task and encoder loaded
                _CONTEXTS.clear()
                _CONTEXTS[key] = grid_mod.context(self.job)
            self._ctx = _CONTEXTS[key]
        return self._ctx

    def __call__(self, point: Point, until: int) -> dict[str, Any]:
        from clrbench.eval.finetune.trainer import predict, train_trial

        ctx = self.context()
        i, j = point
        lr, wd, seed = ctx.proto.lrs[i], ctx.proto.wds[j], grid_mod.trial_seed(ctx.proto, i, j)
        spec = grid_mod.spec_for(ctx, lr, wd, seed, len(ctx.data.train))
        t0 = time.time()
        net, out = train_trial(ctx.encoder, ctx.data.train, spec, ctx.job.device,
                               ctx.folder / f"trial-lr{i}-wd{j}.pt", until=until)
        value = None
        if out.status == "ok":
            scores, valid = predict(net, ctx.encoder, ctx.data.val, ctx.sizes, spec, ctx.job.device)
            value = grid_mod.split_score(ctx, scores, valid, "val") if np.isfinite(scores[valid]).all() else None
        return {"val": value, "status": "ok" if value is not None else "diverged",
                "seconds": round(time.time() - t0, 3), "final_loss": out.final_loss,
                "resumed_from": out.resumed_from}


def search_of(ctx: grid_mod.Context) -> Search:
    """The Search of a fine-tune-asha job; trials ask for the protocol's resources, without
    GPUs when the job runs on the CPU."""
    proto = ctx.proto
    if not isinstance(proto, FinetuneAshaProtocol):
        raise AshaError(f"protocol {ctx.job.protocol!r} is not a finetune-asha protocol.")
    res = {k: float(v) for k, v in proto.resources.items() if k in ("num_cpus", "num_gpus")}
    if ctx.job.device == "cpu":
        res.pop("num_gpus", None)
    return Search(launch_order(proto), tuple(proto.rungs), proto.reduction_factor, str(ctx.folder), res,
                  proto.max_concurrent)


def run_asha(job: EvalJob, *, address: str | None = None) -> Record:
    """The finetune-asha protocol of one (checkpoint, task) -> one Record.

    Search with ASHA, select among full-length trials exactly as ``finetune`` selects, retrain
    on train+val, score test; the record's ``val_curve`` is the whole rung table.
    """
    # Trials run in their own working folders: every path they are handed must be absolute.
    job = replace(job, cache_dir=str(Path(job.cache_dir).resolve()),
                  data_root=str(Path(job.data_root).resolve()) if job.data_root else None,
                  tasks_dir=str(Path(job.tasks_dir).resolve()) if job.tasks_dir else None)
    ctx = grid_mod.context(job)
    search = search_of(ctx)
    t0 = time.time()
    table = run_search(search, FinetuneTrials(job), address=address)
    trials = _trial_results(ctx, table)
    full = search.rungs[-1]
    best = grid_mod.select([t for t in trials if t.steps == full])
    if best is None:
        rec = grid_mod.grid_record(
            ctx, trials, None, None, t0, "no (lr, wd) trial reached the last rung without diverging"
        )
    else:
        rec = grid_mod.retrain_final(ctx, trials, best, t0)
    for p in ctx.folder.glob("trial-lr*-wd*.pt"):  # the search is over: its weights are not needed
        with contextlib.suppress(OSError):
            p.unlink()
    return annotate(rec, search, table, len(grid_mod.grid(ctx.proto)) * full)


def _trial_results(ctx: grid_mod.Context, table: list[dict[str, Any]]) -> list[grid_mod.TrialResult]:
    """One TrialResult per trial (its furthest rung), in grid order, for grid's select/_record."""
    last: dict[tuple[int, ...], dict[str, Any]] = {}
    for r in table:
        last[tuple(r["point"])] = r
    out = []
    for (i, j), r in sorted(last.items()):
        status = "ok" if r["status"] == "ok" and r["val"] is not None else "diverged"
        out.append(grid_mod.TrialResult(ctx.job.checkpoint_id, ctx.card.name, ctx.proto.name, ctx.proto.lrs[i],
                                        ctx.proto.wds[j], grid_mod.trial_seed(ctx.proto, i, j), status,
                                        r["val"] if status == "ok" else None, r["steps"], r["seconds"] or 0.0,
                                        None, 0, str(rows_path(ctx.folder, (i, j))), None))
    return out


def annotate(rec: Record, search: Search, table: list[dict[str, Any]], grid_steps: int) -> Record:
    """The record with the rung table as its ``val_curve`` and the search in timings and tags."""
    spent = trial_steps(table)
    stopped = sum(1 for r in table if r["stopped"])
    timings = {**rec.timings, "trial_steps": spent, "grid_trial_steps": grid_steps,
               "trial_steps_ratio": round(spent / grid_steps, 4) if grid_steps else math.nan}
    tags = {**rec.tags, "search": {"scheduler": "asha", "rungs": list(search.rungs),
                                   "reduction_factor": search.reduction_factor, "trials": len(search.points),
                                   "stopped": stopped, "resources": search.resources}}
    return replace(rec, val_curve=table, timings=timings, tags=tags)

"""Plan a study (trials -> jobs, what is already recorded, the cost), run the rest, draw it.

A study lives in ``<out>/<study>/``: ``runs/`` (one pretraining run per trial), ``results/``
(the records, one per trial x task x layer, readable by ``clrbench leaderboard``),
``study.json`` (the plan), ``<study>.png`` and ``<study>.md`` (the picture and the table).
Run names carry a hash of the resolved base recipe, so a study rerun with other settings
(another budget, another ``--set``) never mixes with the first. A study killed half-way is
resumed by running the same command: jobs with a record are skipped, a trial whose run is
trained is not trained again, and a half-trained run continues from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clrbench.atomic import write_bytes
from clrbench.config import PretrainConfig, load_pretrain_config, to_dict
from clrbench.records import RecordError, read_record, record_path
from clrbench.study.budget import Budget
from clrbench.study.cost import TrialCost, count_images, seconds_per_image, trial_cost
from clrbench.study.grids import Trial
from clrbench.study.results import Outcome, Table, collect, to_markdown
from clrbench.study.trial import OUTCOME, StudyContext, StudyJob, read_outcome

CONFIRM_ABOVE_S = 3600.0  # a study estimated above this many seconds needs --yes
FILE_SOURCES = ("folder", "hf")  # decoded per image in DataLoader workers (clrbench.pretraining.stream)


@dataclass
class StudyPlan:
    """Everything decided before the first trial runs."""

    study: str
    ctx: StudyContext
    trials: list[Trial]
    jobs: list[Any]  # every job of the study (StudyJob, or an ``expand``'s), in submission order
    todo: list[Any]  # those without a record yet
    results_dir: Path
    budget: Budget
    tasks: list[str]
    num_images: int  # in the base recipe's pretraining source
    baseline_id: str = ""  # the random-init encoder of the same shape: what pretraining adds to
    baseline_todo: list[Any] = field(default_factory=list)  # its EvalJobs without a record
    costs: dict[str, TrialCost] = field(default_factory=dict)  # trial key -> estimate
    per_image: dict[str, tuple[float, float]] = field(default_factory=dict)  # trial key -> (train, infer) s
    run: Any = None  # job -> Record on a worker (module-level); default trial.run_study_job

    @property
    def study_dir(self) -> Path:
        return Path(self.ctx.study_dir)

    def trials_to_run(self) -> list[Trial]:
        keys = {j.trial.key for j in self.todo}
        return [t for t in self.trials if t.key in keys]

    def estimate_s(self) -> float:
        """Seconds for the trials still to run (pretraining only when it is not done)."""
        total = 0.0
        for t in self.trials_to_run():
            c = self.costs.get(t.key)
            if c is None:
                continue
            trained = (read_outcome(self.jobs_of(t)[0].run_dir) or {}).get("status") == "ok"
            total += c.eval_s + (0.0 if trained else c.pretrain_s)
        return total

    def jobs_of(self, trial: Trial) -> list[Any]:
        return [j for j in self.jobs if j.trial.key == trial.key]


def settings_id(cfg: PretrainConfig) -> str:
    """Six hex digits over everything in the base config that can change a trial's weights."""
    d = to_dict(cfg)
    d["run"] = {k: d["run"][k] for k in ("seed", "precision", "channels_last")}
    d["data"].pop("num_workers", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:6]


def plan_study(study: str, trials: list[Trial], *, recipe: str, overrides: list[str], budget: Budget,
               tasks: str, out: Path | str, results: Path | str | None = None,
               cache_dir: str = ".cache/clrbench", data_root: str | None = None, tasks_dir: str | None = None,
               device: str = "cpu", cpus: float = 1.0, gpus: float = 0.0,
               expand: Callable[[list[Trial], list[str], StudyContext], list[Any]] | None = None,
               run: Callable[[Any], Any] | None = None, baseline: bool = True) -> StudyPlan:
    """Expand trials x tasks x layers into jobs, check every trial's config, find what is done.

    ``expand`` (trials, task names, context) -> jobs replaces the trials x tasks x layers probes
    (jobs with a ``key``, ``trial``, ``series`` and ``run_dir``), run on workers by ``run``;
    ``baseline`` False skips the random-init encoder's probes.

    Raises:
        ConfigError: an unknown task, a bad override, or a trial that cannot train (e.g. a
            batch larger than the data), before anything runs.
    """
    from clrbench.data.cards import load_cards, select_tasks

    cards = select_tasks(tasks, load_cards(tasks_dir))
    base_overrides = (*budget.overrides, *overrides)  # the user's --set wins over the budget
    base = load_pretrain_config(recipe, list(base_overrides))
    study_dir = Path(out) / study
    ctx = StudyContext(study, str(recipe), base_overrides, settings_id(base), str(study_dir), cache_dir,
                       data_root, tasks_dir, device, cpus, gpus)
    # Waves: every trial's first job before any trial's second, so parallel workers train
    # different trials instead of queueing on one trial's lock.
    layers = ("h", "g")
    jobs: list[Any] = (
        expand(trials, [c.name for c in cards], ctx) if expand is not None
        else [StudyJob(t, c.name, layer, ctx) for layer in layers for c in cards for t in trials if layer in t.layers])
    results_dir = Path(results) if results else study_dir / "results"
    todo = [j for j in jobs if not recorded(results_dir, j)]
    plan = StudyPlan(study, ctx, trials, jobs, todo, results_dir, budget, [c.name for c in cards],
                     count_images(base), run=run)
    if baseline:
        plan.baseline_id, plan.baseline_todo = _baseline(base, ctx, tasks, results_dir)
    for t in trials:
        check_trial(plan.jobs_of(t)[0].config(), plan.num_images)
    return plan


def _baseline(base: PretrainConfig, ctx: StudyContext, tasks: str, results_dir: Path) -> tuple[str, list[Any]]:
    """The random-init encoder every trial starts from (same arch, width, stem and seed)."""
    from clrbench.eval.plan import plan_jobs

    m = base.model
    spec = f"random:{m.arch},width={m.width:g},stem={m.stem},seed={base.run.seed}"
    todo, done = plan_jobs([spec], tasks, ["linear"], results_dir, data_root=ctx.data_root,
                           cache_dir=ctx.cache_dir, tasks_dir=ctx.tasks_dir, device=ctx.device)
    return (todo + done)[0].checkpoint_id, todo


def check_trial(cfg: PretrainConfig, num_images: int) -> None:
    """Fail now, not an hour in: ops and their parameters, batch against data, schedule."""
    from clrbench.config import derive
    from clrbench.simclr.augment import build_op

    for op in cfg.augment.ops:
        build_op(op, cfg.augment.image_size)
    if (cfg.augment.ops or cfg.augment.asymmetric) and cfg.data.source in FILE_SOURCES:
        from clrbench.simclr.augment import TorchvisionTwoView

        TorchvisionTwoView(cfg.augment)  # raises the one-sentence ConfigError of that case
    derive(cfg, num_images)


def recorded(results_dir: Path, job: Any) -> bool:
    """An ok or diverged record (a result); failed and unreadable records are run again."""
    path = record_path(results_dir, *job.key)
    if not path.is_file():
        return False
    try:
        return read_record(path).status in ("ok", "diverged")
    except RecordError:
        return False


def estimate(plan: StudyPlan, eval_images: dict[str, int]) -> None:
    """Fill ``plan.costs`` for the trials still to run (one timing per distinct model)."""
    timings: dict[str, tuple[float, float]] = {}
    for t in plan.trials_to_run():
        jobs = plan.jobs_of(t)
        cfg = jobs[0].config()
        model_key = json.dumps([to_dict(cfg.model), cfg.augment.image_size, cfg.run.device, cfg.run.precision])
        if model_key not in timings:
            timings[model_key] = seconds_per_image(cfg)
        images = sum(eval_images.get(j.task, 0) for j in jobs)
        plan.per_image[t.key] = timings[model_key]
        plan.costs[t.key] = trial_cost(cfg, timings[model_key], images, len(jobs), plan.num_images)


def write_plan(plan: StudyPlan, command: str) -> Path:
    """``study.json``: the command, settings and trials, so a picture can be traced to its run."""
    data: dict[str, Any] = {
        "study": plan.study, "command": command, "recipe": plan.ctx.recipe, "budget": plan.budget.name,
        "overrides": list(plan.ctx.base_overrides), "settings_id": plan.ctx.ident, "tasks": plan.tasks,
        "results": str(plan.results_dir),
        "trials": [{"key": t.key, "point": t.point, "overrides": list(t.overrides)} for t in plan.trials],
        "series": sorted({j.series for j in plan.jobs}),  # layers, or the label study's protocols
    }
    path = plan.study_dir / "study.json"
    write_bytes(path, json.dumps(data, indent=1).encode())
    return path


def forget_failed(plan: StudyPlan) -> None:
    """Let runs that failed in an earlier command train again (diverged runs stay a result)."""
    for t in plan.trials_to_run():
        run_dir = plan.jobs_of(t)[0].run_dir
        if (read_outcome(run_dir) or {}).get("status") == "failed":
            (run_dir / OUTCOME).unlink(missing_ok=True)


def execute(plan: StudyPlan, executor: str = "local", on_event: Any = None, address: str | None = None,
            workers: int | None = None) -> list[Any]:
    """Run the jobs still to do through the executor; records are written as they arrive."""
    from clrbench.eval.executor import run_jobs
    from clrbench.study.trial import on_job_failure, run_study_job

    forget_failed(plan)
    records = run_jobs(plan.todo, plan.results_dir, executor=executor, on_event=on_event, run=plan.run or run_study_job,
                       on_failure=on_job_failure, address=address, workers=workers)
    if plan.baseline_todo:  # after the trials: a few probes, and the study's records come first
        run_jobs(plan.baseline_todo, plan.results_dir, executor=executor, on_event=on_event, address=address,
                 workers=workers)
    return records


def finish(plan: StudyPlan, ops: list[str] | None = None, subtitle: str = "") -> tuple[list[Outcome], Table, Path]:
    """Collect the outcomes, write ``<study>.md`` and ``<study>.png``; return them."""
    from clrbench.study import results as res
    from clrbench.study.plots import plot_study

    outcomes = collect(plan.jobs, plan.results_dir)
    baseline = res.collect_baseline(plan.baseline_id, plan.tasks, plan.results_dir) if plan.baseline_id else None
    # label-efficiency: each series (protocol) is a method at a label fraction
    points = {j.series: {"method": j.method, "label_percent": j.fraction} for j in plan.jobs if hasattr(j, "method")}
    table = {
        "augment": lambda: res.augment_table(outcomes, ops or []),
        "temperature": lambda: res.temperature_table(outcomes),
        "batch-size": lambda: res.batch_size_table(outcomes),
        "head": lambda: res.head_table(outcomes),
        "label-efficiency": lambda: res.label_table(outcomes, points),
    }[plan.study]()
    table = res.with_noise(table, outcomes)
    if baseline is not None:
        table = res.with_baseline(table, baseline)
    md = f"### {table.title}\n\n{to_markdown(table)}\n{table.caption}\n"
    write_bytes(plan.study_dir / f"{plan.study}.md", md.encode())
    png = plot_study(plan.study, outcomes, plan.study_dir / f"{plan.study}.png", ops, subtitle, baseline, points)
    return outcomes, table, png

"""SimCLRv2's label-efficiency study (Chen et al. 2020b, "Big Self-Supervised Models are Strong
Semi-Supervised Learners", S-v2 Fig. 1): encoder size x label fraction x how labels are used.

S-v2's bottom line is that bigger self-supervised encoders gain more when labels are few, and
that a fine-tuned model distils into one of the same size (self-distillation) without losing
accuracy. The study pretrains one encoder per width (a trial; ``model.width`` 0.25 / 0.5 / 1 on
a laptop, R50 1x / 2x / 4x in S-v2), and for every task and label fraction runs

* ``linear``: the linear probe on that fraction of train (``linear-1pct``, ``linear-10pct``,
  ``linear``; :mod:`clrbench.eval.linear`);
* ``finetune``: S-v2's fine-tune on it (``semi-1pct``, ``semi-10pct``, ``semi-100pct``;
  :mod:`clrbench.eval.finetune.semi`), from ``head:1`` below 100% and from the encoder at 100%
  (S-v2 sec 3);
* ``distill``: self-distillation of that fine-tuned network into an encoder of its own width on
  the task's train images without labels (S-v2 sec 2, alpha 0, tau 1;
  :mod:`clrbench.eval.distill_job`), scored by the student's own classifier. The student starts
  from the trial's pretrained encoder (``--student-init pretrained``) or from random weights.

Every (trial, task, method, fraction) is one job with one record, keyed by the trial's run and
the protocol, so ``clrbench leaderboard --results`` shows the study as a board too. A distill
job needs its teacher: it runs (or finds) the fine-tune under the same lock as the fine-tune's
own job, so on Ray the two never train it twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clrbench.config import ConfigError, PretrainConfig
from clrbench.records import Record
from clrbench.study.grids import Trial
from clrbench.study.trial import StudyContext, StudyJob, locked, pretrain_once, unfinished_record

STUDY = "label-efficiency"
METHODS = ("linear", "finetune", "distill")
STUDENT_INITS = ("pretrained", "random")


@dataclass(frozen=True)
class EvalBudget:
    """How long the fine-tunes and distillations of one budget train.

    ``None`` keeps the shipped protocol's value (S-v2's): 60 epochs at 1%, 30 at 10% and 100%,
    three learning rates chosen on val, 400 epochs of distillation."""

    name: str
    lr_bases: tuple[float, ...] | None = None
    finetune_epochs: dict[float, float] | None = None  # label percent -> epochs
    distill_epochs: float = 400.0  # S-v2 sec 3
    # Images per step of fine-tunes and distillations. S-v2's 1024 (4096 for distillation) is
    # 1,250 steps per ImageNet epoch but one step per epoch on a 1,000-image task: 10 steps of
    # fine-tuning at 100%. A smaller batch keeps the images seen and gives the steps back (the
    # lr follows sqrt(batch), S-v2 sec 3).
    batch_size: int | None = None


#: ``laptop``: S-v2's epochs where they are cheap (1%, 10%), 10 instead of 30 at 100%, batches
#: of 64, 10 distillation epochs, and lr_base 0.005 (S-v2's for standard ResNets, sec 3) or 0.05,
#: chosen on val: these runs take 60-160 steps where S-v2's take thousands, and with 0.005 alone
#: they stopped far short (width 0.25 on digits: 43.0 / 59.9 at 10% / 100% of the labels, 57.5 /
#: 73.3 with 0.05; 0.5 diverged; docs/studies/label-efficiency.md).
EVAL_BUDGETS = {
    "laptop": EvalBudget("laptop", (0.005, 0.05), {1.0: 60.0, 10.0: 30.0, 100.0: 10.0}, 10.0, 64),
    "smoke": EvalBudget("smoke", (0.005,), {1.0: 1.0, 10.0: 1.0, 100.0: 1.0}, 1.0, 64),
}


def eval_budget(name: str) -> EvalBudget:
    """The evaluation lengths that go with a pretraining budget: the paper's with ``paper`` and
    ``recipe`` (a GPU run), the smoke test's with ``smoke``, and the laptop's with ``laptop`` or
    a step / epoch count (a longer CPU pretraining should not bring 400 epochs of distillation)."""
    if name in ("paper", "recipe"):
        return EvalBudget("paper")
    return EVAL_BUDGETS.get(name, EVAL_BUDGETS["laptop"])


def parse_widths(text: str) -> list[float]:
    """``"0.25,0.5,1"`` -> [0.25, 0.5, 1.0]: positive width multipliers, sorted."""
    from clrbench.study.grids import parse_numbers

    return sorted(parse_numbers(text, "widths"))


def parse_fractions(text: str) -> list[float]:
    """``"1,10,100"`` -> [1.0, 10.0, 100.0]: label percentages in (0, 100], sorted."""
    from clrbench.study.grids import parse_numbers

    values = sorted(parse_numbers(text, "fractions"))
    if values[-1] > 100:
        raise ConfigError(f"--fractions are percentages of the labels, at most 100; got {values[-1]:g}.")
    return values


def parse_methods(text: str) -> list[str]:
    from clrbench.registry import did_you_mean
    from clrbench.study.grids import parse_list

    methods = parse_list(text, "methods")
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"Unknown method {m!r}.{did_you_mean(m, list(METHODS))} Known: {', '.join(METHODS)}.")
    return [m for m in METHODS if m in methods]


def width_grid(widths: list[float], cfg: PretrainConfig) -> list[Trial]:
    """One pretraining run per width multiplier, with the encoder's parameter count (S-v2 Fig. 1's x axis)."""
    from clrbench.simclr.encoder import build_encoder

    trials = []
    for w in widths:
        encoder, _ = build_encoder(cfg.model.arch, w, cfg.model.stem)
        params = sum(p.numel() for p in encoder.parameters())
        trials.append(Trial(study=STUDY, key=f"w{w:g}", point={"width": float(w), "params": int(params)},
                            overrides=(f"model.width={float(w)!r}",)))
    return trials


@dataclass(frozen=True)
class LabelJob:
    """One (trial, task, method, label fraction): one record, keyed by the trial's run and ``protocol``.

    ``spec`` is what the evaluation loads (a shipped protocol name or a derived file); for
    ``distill``, ``teacher`` is the fine-tune protocol's spec and ``protocol`` is
    ``distill-<its name>``."""

    trial: Trial
    task: str
    ctx: StudyContext
    method: str
    fraction: float  # percent of the labels
    protocol: str
    spec: str
    teacher: str = ""
    distill_epochs: float = 400.0
    student_init: str = "pretrained"
    distill_batch: int = 4096  # S-v2 sec 3: the pretraining batch (capped at the train split)

    @property
    def pretraining(self) -> StudyJob:
        return StudyJob(self.trial, self.task, "h", self.ctx)

    @property
    def run_dir(self) -> Path:
        return self.pretraining.run_dir

    @property
    def checkpoint_id(self) -> str:
        return self.pretraining.run_name

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.checkpoint_id, self.task, self.protocol)

    @property
    def series(self) -> str:
        return self.protocol

    def resources(self) -> dict[str, float]:
        return self.pretraining.resources()

    def config(self) -> PretrainConfig:
        return self.pretraining.config()

    def tags(self) -> dict[str, Any]:
        return {**self.pretraining.tags(), "layer": None, "method": self.method, "label_percent": self.fraction}


def protocol_specs(fractions: list[float], methods: list[str], budget: EvalBudget,
                   directory: Path) -> list[tuple[str, float, str, str, str]]:
    """(method, percent, record protocol, spec to load, teacher spec) for every method x fraction.

    1%, 10% and 100% use the shipped protocols (the fine-tunes changed by ``budget`` into
    derived files named ``<protocol>-<budget>`` under ``directory``); other fractions get derived
    files too. Distillation runs below 100%, where S-v2 distils (Table 3).
    """
    out = []
    for pct in fractions:
        if "linear" in methods:
            name, spec = _linear_spec(pct, directory)
            out.append(("linear", pct, name, spec, ""))
        if "finetune" in methods or "distill" in methods:
            name, spec = _semi_spec(pct, budget, directory)
            if "finetune" in methods:
                out.append(("finetune", pct, name, spec, ""))
            if "distill" in methods and pct < 100:
                out.append(("distill", pct, f"distill-{name}", "", spec))
    return out


def _pct_name(pct: float) -> str:
    return f"{pct:g}pct".replace(".", "p")


def _linear_spec(pct: float, directory: Path) -> tuple[str, str]:
    if pct == 100:
        return "linear", "linear"
    name = f"linear-{_pct_name(pct)}"
    if pct in (1, 10):
        return name, name
    return name, _derived("linear-10pct", name, {"label_fraction": pct / 100}, directory)


def _semi_spec(pct: float, budget: EvalBudget, directory: Path) -> tuple[str, str]:
    base = f"semi-{_pct_name(pct)}"
    shipped = pct in (1, 10, 100)
    changes: dict[str, Any] = {}
    if not shipped:  # S-v2 sec 3: 60 epochs at 1% of the labels, 30 above (from head:1, as semi-10pct)
        changes = {"fraction": pct / 100, "epochs": 60.0 if pct <= 1 else 30.0}
    if budget.lr_bases is not None:
        changes["lr_bases"] = list(budget.lr_bases)
    if budget.batch_size is not None:
        changes["batch_size"] = budget.batch_size
    if budget.finetune_epochs is not None:  # a fraction the budget does not name: its nearest one's
        near = min(budget.finetune_epochs, key=lambda k: abs(math.log(k / pct)))
        changes["epochs"] = budget.finetune_epochs[near]
    if not changes:
        return base, base
    name = base if budget.name == "paper" else f"{base}-{budget.name}"
    return name, _derived("semi-10pct" if not shipped else base, name, changes, directory)


def _derived(source: str, name: str, changes: dict[str, Any], directory: Path) -> str:
    """The protocol ``source`` with ``changes``, as ``<directory>/protocols/<name>.yaml``; its path."""
    from clrbench.eval.protocols import load_protocol, write_derived

    notes = f"{source} with {changes} (clrbench study {STUDY}: the budget's evaluation lengths)."
    return write_derived(load_protocol(source), name, changes, directory, notes)


def expand_jobs(trials: list[Trial], tasks: list[str], ctx: StudyContext, fractions: list[float],
                methods: list[str], budget: EvalBudget, student_init: str) -> list[LabelJob]:
    """Every job of the study, in waves: each trial's cheap linear probes first, then the
    fine-tunes, then the distillations (which reuse the fine-tunes' networks)."""
    specs = protocol_specs(fractions, methods, budget, Path(ctx.study_dir))
    if not specs:  # only distill, only at 100%
        raise ConfigError("nothing to run: distillation runs below 100% of the labels, where S-v2 distils "
                          "(Table 3); add a fraction below 100 or another --methods.")
    order = {m: i for i, m in enumerate(METHODS)}
    return [LabelJob(t, task, ctx, method, pct, name, spec, teacher, budget.distill_epochs, student_init,
                     budget.batch_size or 4096)
            for method, pct, name, spec, teacher in sorted(specs, key=lambda s: order[s[0]])
            for task in tasks for t in trials]


def run_label_job(job: LabelJob) -> Record:
    """Pretrain the trial if needed, then probe, fine-tune or distil; never writes the record."""
    from clrbench.eval.jobs import EvalJob
    from clrbench.eval.linear import run_linear

    outcome = pretrain_once(job.pretraining)
    if outcome["status"] != "ok":
        return unfinished_record(job, outcome["status"], outcome.get("error"))
    ckpt = str(job.run_dir / "last.pt")
    if job.method == "linear":
        c = job.ctx
        rec = run_linear(EvalJob(ckpt, job.checkpoint_id, job.task, job.spec, c.data_root, c.cache_dir, c.tasks_dir,
                                 c.device))
    elif job.method == "finetune":
        rec = fine_tuned(job, ckpt, job.spec)
    else:
        rec = _distilled(job, ckpt)
    pretrain = {k: v for k, v in outcome.items() if k not in ("status", "error")}
    return replace(rec, tags={**rec.tags, **job.tags(), "pretrain": pretrain})


def fine_tuned(job: LabelJob, ckpt: str, spec: str) -> Record:
    """The S-v2 fine-tune ``spec`` of the trial on ``job.task``, under a lock shared with the
    distill jobs that need it as their teacher (its trials are reused from the cache)."""
    from clrbench.eval.finetune.semi import run_semi
    from clrbench.eval.jobs import EvalJob

    c = job.ctx
    lock = job.run_dir.parent / f".{job.checkpoint_id}-{job.task}-{Path(spec).stem}.lock"
    with locked(lock):
        return run_semi(EvalJob(ckpt, job.checkpoint_id, job.task, spec, c.data_root, c.cache_dir, c.tasks_dir,
                                c.device))


def _distilled(job: LabelJob, ckpt: str) -> Record:
    """Self-distillation of the trial's fine-tuned network (S-v2 sec 2): the student has the
    teacher's encoder shape and sees the train images without their labels (alpha 0, tau 1)."""
    from clrbench.eval.distill_job import DistillConfig, distill_student

    teacher = fine_tuned(job, ckpt, job.teacher)
    model = teacher.tags.get("model")
    if teacher.status != "ok" or not isinstance(model, dict):
        return unfinished_record(job, teacher.status if teacher.status != "ok" else "failed",
                                 f"its teacher ({teacher.protocol}): {teacher.error or 'no stored network'}")
    cfg = job.config()
    m = cfg.model
    student = ckpt if job.student_init == "pretrained" else f"random:{m.arch},width={m.width:g},stem={m.stem}"
    c = job.ctx
    out = job.run_dir / "students" / f"{job.task}-{job.protocol}.pt"
    distill = DistillConfig(model["path"], student, job.task, alpha=0.0, temperature=1.0, epochs=job.distill_epochs,
                            batch_size=job.distill_batch, precision=cfg.run.precision, out=str(out),
                            data_root=c.data_root, cache_dir=c.cache_dir, tasks_dir=c.tasks_dir, device=c.device)
    rec, _path = distill_student(distill, teacher_test=teacher.value)
    # Keyed by the trial's run, so the study (and its board) finds it before the student exists;
    # the student's own id and path stay in checkpoint.distill / tags.distill.
    return replace(rec, checkpoint_id=job.checkpoint_id, protocol=job.protocol,
                   tags={**rec.tags, "student_id": rec.checkpoint_id, "student_init": job.student_init})


def add_training_costs(plan: Any) -> None:
    """Add what the fine-tunes and distillations still to run will train to ``plan.costs``.

    Per trial: every fine-tune not recorded yet (once per task and protocol, also when only a
    distill job needs it as its teacher) trains lrs x epochs x its labelled images and predicts
    val and test once per lr; every distillation trains epochs x the train images after one
    teacher pass. Seconds per image are the trial's measured training / inference speeds."""
    from clrbench.data.cards import load_cards
    from clrbench.eval.protocols import SemiProtocol, load_protocol

    cards = load_cards(plan.ctx.tasks_dir)
    for t in plan.trials_to_run():
        cost, speed = plan.costs.get(t.key), plan.per_image.get(t.key)
        if cost is None or speed is None:
            continue
        train = infer = 0.0
        seen: set[tuple[str, str]] = set()
        for j in (j for j in plan.todo if j.trial.key == t.key and j.method != "linear"):
            sizes = cards[j.task].expected_sizes if j.task in cards else {}
            n_train, n_eval = sizes.get("train", 0), sizes.get("val", 0) + sizes.get("test", 0)
            spec = j.spec or j.teacher
            if (j.task, spec) not in seen:
                seen.add((j.task, spec))
                proto = load_protocol(spec)
                if isinstance(proto, SemiProtocol):
                    labelled = max(cards[j.task].num_classes if j.task in cards else 1,
                                   round((proto.fraction or 1.0) * n_train))
                    train += len(proto.lr_bases) * proto.epochs * labelled
                    infer += len(proto.lr_bases) * n_eval
            if j.method == "distill":
                train += j.distill_epochs * n_train
                infer += n_train + n_eval
        plan.costs[t.key] = replace(cost, eval_s=cost.eval_s + train * speed[0] + infer * speed[1])

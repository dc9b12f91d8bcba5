"""`clrbench study augment|temperature|batch-size|head`: SimCLR's ablations, one command each.

Each command builds its grid, prints what it will cost, runs the missing trials through the
executor, and draws the paper's figure (S-v1 = Chen et al. 2020, arXiv 2002.05709).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clrbench.cli.common import _guard, app, console, fail, stdout
from clrbench.cli.study_view import TrialProgress, print_plan, print_trials, show_table

study_app = typer.Typer(
    name="study", no_args_is_help=True, rich_markup_mode="rich",
    help="SimCLR's ablations as studies: a grid of pretraining runs, each probed, drawn as the paper does. "
         "Rerun the same command to resume a study that was stopped.",
)
app.add_typer(study_app, name="study")

Recipe = Annotated[str, typer.Option(help=(
    "Base recipe (name or path); each trial overrides it. quickstart runs on the embedded images."))]
Sets = Annotated[list[str], typer.Option("--set", help=(
    "Override the base recipe for every trial, e.g. --set data.path=~/cifar (repeatable)."))]
Tasks = Annotated[str, typer.Option(help=(
    "Tasks each trial is probed on: quick (offline), a comma list, or all. Fewer tasks = faster studies."))]
BudgetOpt = Annotated[str, typer.Option("--budget", help=(
    "Length of each trial: laptop (default, CPU), smoke (seconds), paper (100 epochs, for a GPU), recipe, a step count "
    "(500) or epochs (100ep)."))]
Out = Annotated[Path, typer.Option(help="Studies folder; this study lives in OUT/<study>/ (runs, records, picture).")]
Results = Annotated[Path | None, typer.Option(help=(
    "Records folder (default OUT/<study>/results); `clrbench leaderboard --results` shows it."))]
Executor = Annotated[str, typer.Option(help="local (trials one after another) or ray (in parallel on a cluster).")]
Workers = Annotated[int | None, typer.Option(help="CPUs of the local Ray cluster, and the most trials at once.")]
Address = Annotated[str | None, typer.Option(help="Ray cluster address (auto = the one running here).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N, for pretraining and probes.")]
GpusPerTrial = Annotated[float, typer.Option(help="GPUs a trial asks of Ray (0.25 puts four small trials on one GPU).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Start even when the estimate is above an hour.")]
DryRun = Annotated[bool, typer.Option(help="Print the trials and the cost estimate, then stop.")]
CacheDir = Annotated[str, typer.Option(help="Feature and split cache (content-addressed, safe to share).")]
DataRoot = Annotated[str | None, typer.Option(help="Folder holding the task datasets (default: $CLRBENCH_DATA).")]

# The options every study shares, declared once: (name, annotation, default).
_SHARED: list[tuple[str, Any, Any]] = [
    ("recipe", Recipe, "quickstart"), ("set_", Sets, []), ("tasks", Tasks, "quick"), ("budget", BudgetOpt, "laptop"),
    ("out", Out, Path("runs/studies")), ("results", Results, None), ("executor", Executor, "local"),
    ("workers", Workers, None), ("address", Address, None), ("device", Device, "auto"),
    ("gpus_per_trial", GpusPerTrial, 0.0), ("yes", Yes, False), ("dry_run", DryRun, False),
    ("cache_dir", CacheDir, ".cache/clrbench"), ("data_root", DataRoot, None),
]


def study_command(name: str | None = None, defaults: dict[str, Any] | None = None,
                  **kwargs: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a study command: its own options, then the shared ones (``_SHARED``, with the
    command's ``defaults`` for some), which the command reads from ``ctx.params`` (see
    :func:`_common`) instead of repeating them."""
    import functools
    import inspect
    import typing

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(fn).parameters.values())
        mine = defaults or {}
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=mine.get(n, d), annotation=a)
                  for n, a, d in _SHARED]

        @functools.wraps(fn)
        def wrapper(**kw: Any) -> None:
            for n, _, _ in _SHARED:
                kw.pop(n, None)
            fn(**kw)

        hints = typing.get_type_hints(fn, include_extras=True)
        wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own] + shared)
        wrapper.__annotations__ = {**hints, **{n: a for n, a, _ in _SHARED}}
        return study_app.command(name, **kwargs)(_guard(wrapper))

    return deco


def _common(ctx: typer.Context, study: str, trials_for: Callable[[Any], list[Any]],
            ops: list[str] | None = None, jobs: dict[str, Any] | None = None,
            priced: Callable[[Any], None] | None = None) -> None:
    """Plan, price, confirm, run and draw one study; the shared options come from ``ctx.params``.

    ``jobs`` are plan_study's ``expand``/``run``/``baseline`` for a study whose jobs are not the
    trials x tasks probes; ``priced(plan)`` adds to the estimate what those jobs train."""
    from clrbench.study.runner import CONFIRM_ABOVE_S, estimate

    p = ctx.params
    if p["executor"] not in ("local", "ray"):
        fail(f"--executor must be local or ray, not {p['executor']!r}.")
    plan = _plan(study, trials_for, p, jobs or {})
    estimate(plan, _eval_images(plan.tasks))
    if priced is not None:
        priced(plan)
    print_plan(plan)
    if p["dry_run"]:
        print_trials(plan)
        return
    if plan.estimate_s() > CONFIRM_ABOVE_S and not p["yes"]:
        fail("that is over an hour; add --yes to start it, or choose a smaller --budget or fewer --tasks.", 1)
    from clrbench.study.runner import execute, finish, write_plan

    write_plan(plan, _command_line(ctx))
    if plan.todo or plan.baseline_todo:
        with TrialProgress(len(plan.todo) + len(plan.baseline_todo)) as on_event:
            execute(plan, p["executor"], on_event, address=p["address"], workers=p["workers"])
    sets = "".join(f" --set {o}" for o in p["set_"])
    subtitle = f"{p['recipe']}, budget {plan.budget.name}{sets}, tasks {','.join(plan.tasks)}"
    outcomes, table, png = finish(plan, ops, subtitle=subtitle)
    show_table(table)
    for o in outcomes:
        if o.status in ("failed", "diverged"):
            console.print(f"[red]{o.status}[/] " + escape(f"{o.trial.key}: {o.error}"), highlight=False)
    stdout.print(
        f"Picture: [bold]{escape(str(png))}[/]  "
        + escape(f"table: {png.with_suffix('.md')}  records: clrbench leaderboard --results {plan.results_dir}"),
        highlight=False,
    )
    failed = sum(o.status == "failed" for o in outcomes)  # diverged is a result (S-v1 Table 5), not a failure
    if failed:
        console.print(f"{failed} trial job(s) failed (listed above); rerun the same command to retry them. "
                      "Exit status 1.")
        raise typer.Exit(1)


def _plan(study: str, trials_for: Callable[[Any], list[Any]], p: dict[str, Any], jobs: dict[str, Any]) -> Any:
    """The study's plan from the shared options (checks every trial before anything runs)."""
    import os

    from clrbench.config import load_pretrain_config
    from clrbench.study.budget import parse_budget
    from clrbench.study.runner import plan_study

    b = parse_budget(p["budget"], study)
    overrides = list(p["set_"]) + ([f"run.device={p['device']}"] if p["device"] != "auto" else [])
    trials = trials_for(load_pretrain_config(p["recipe"], [*b.overrides, *overrides]))
    return plan_study(study, trials, recipe=p["recipe"], overrides=overrides, budget=b, tasks=p["tasks"],
                      out=p["out"], results=p["results"], cache_dir=p["cache_dir"],
                      data_root=p["data_root"] or os.environ.get("CLRBENCH_DATA"),
                      device=_eval_device(p["device"]), gpus=p["gpus_per_trial"], **jobs)


def _command_line(ctx: typer.Context) -> str:
    """The command as typed, rebuilt from the parsed options that differ from their defaults."""
    words = ["clrbench", "study", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name == "option" and value != param.default and value not in (None, [], ()):
            flag = max(param.opts, key=len)
            if getattr(param, "is_flag", False):
                words.append(flag if value else (param.secondary_opts or [flag])[0])
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                words += [flag, str(v)]
    return shlex.join(words)


def _eval_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _eval_images(tasks: list[str]) -> dict[str, int]:
    from clrbench.data.cards import load_cards

    cards = load_cards()
    return {t: sum(cards[t].expected_sizes.values()) if t in cards else 0 for t in tasks}


_EXAMPLE_GPU = (
    "  clrbench study {cmd} --recipe cifar10-r18 --set data.path=~/data --device cuda --budget paper"
    " --tasks cifar10 --yes"
)


@study_command(
    epilog="Examples:\n\n  clrbench study augment                 # 49 trials, ~30 min on 2 CPU cores\n\n"
    "  clrbench study augment --ops crop,color,blur --budget 300\n\n" + _EXAMPLE_GPU.format(cmd="augment")
)
def augment(
    ctx: typer.Context,
    ops: Annotated[
        str,
        typer.Option(
            help=("Ops to compose (clrbench.simclr.augment.OPS). n ops = n*n trials: keep it short on a CPU.")
        ),
    ] = "crop,cutout,color,sobel,noise,blur,rotate",
) -> None:
    """Every op and every ordered pair after a random crop, on one branch only (S-v1 Fig. 5): a heatmap."""
    from clrbench.study.grids import augment_grid, parse_list

    names = parse_list(ops, "ops")
    _common(ctx, "augment", lambda cfg: augment_grid(names, cfg.augment.color_strength), ops=names)


@study_command(
    epilog="Examples:\n\n  clrbench study temperature            # 6 trials, ~10 min on 2 CPU cores\n\n"
    "  clrbench study temperature --values 0.1,0.2,0.5 --values-no-l2 ''\n\n" + _EXAMPLE_GPU.format(cmd="temperature")
)
def temperature(
    ctx: typer.Context,
    values: Annotated[
        str, typer.Option(help=("tau with l2-normalised (cosine) similarity; S-v1 Table 5 sweeps 0.05,0.1,0.5,1.0."))
    ] = "0.05,0.1,0.5,1.0",
    values_no_l2: Annotated[
        str, typer.Option(help=("tau with raw dot products (no l2 normalisation); Table 5 uses 10,100. '' skips them."))
    ] = "10,100",
) -> None:
    """The NT-Xent temperature, with and without l2 normalisation (S-v1 Table 5)."""
    from clrbench.study.grids import parse_numbers, temperature_grid

    l2 = parse_numbers(values, "values")
    raw = parse_numbers(values_no_l2, "values-no-l2") if values_no_l2.strip() else []
    _common(ctx, "temperature", lambda cfg: temperature_grid(l2, raw))


@study_command(
    "batch-size",
    epilog="Examples:\n\n  clrbench study batch-size              # 9 trials, ~10 min on 2 CPU cores\n\n"
    "  clrbench study batch-size --values 256,1024,4096 --epochs 100,200,400 --recipe cifar10-r18 "
    "--set data.path=~/data --device cuda --yes",
)
def batch_size(
    ctx: typer.Context,
    values: Annotated[str, typer.Option(help=(
        "Global batch sizes (images per step). The "
        "lr scales with them by the recipe's optim.lr_scaling."))] = "64,128,256",
    epochs: Annotated[str, typer.Option(help=(
        "Training epochs; every (batch, epochs) pair is its own run with its own schedule."))] = "2,4,8",
) -> None:
    """Probe accuracy against epochs for each batch size (S-v1 Fig. 9).

    The budget sets the data, --epochs the length."""
    from clrbench.study.grids import batch_size_grid, parse_numbers

    sizes = parse_numbers(values, "values", int)
    eps = parse_numbers(epochs, "epochs")
    _common(ctx, "batch-size", lambda cfg: batch_size_grid(sizes, eps))


@study_command(epilog="Examples:\n\n  clrbench study head                    # 15 trials, ~20 min on 2 CPU cores\n\n"
                   "  clrbench study head --heads linear,nonlinear --dims 64,128\n\n" + _EXAMPLE_GPU.format(cmd="head"))
def head(
    ctx: typer.Context,
    heads: Annotated[str, typer.Option(help=(
        "none, linear, nonlinear (S-v1's 2-layer "
        "MLP), nonlinear-v2 (SimCLRv2's 3 layers)."))] = "none,linear,nonlinear",
    dims: Annotated[str, typer.Option(help=(
        "Output dimensions of the head (size of z), as S-v1 Fig. 8."))] = "32,64,128,256,512,1024,2048",
) -> None:
    """Projection heads and their output size, probed before (h) and after (g(h)) the head (S-v1 Fig. 8, sec. 4.2)."""
    from clrbench.study.grids import head_grid, parse_list, parse_numbers

    kinds = parse_list(heads, "heads")
    sizes = parse_numbers(dims, "dims", int)
    _common(ctx, "head", lambda cfg: head_grid(kinds, sizes))


@study_command(
    "label-efficiency", defaults={"recipe": "quickstart-v2", "tasks": "digits"},
    epilog="Examples:\n\n  clrbench study label-efficiency        # 3 widths on digits, ~40 min on 2 CPU cores\n\n"
    "  clrbench study label-efficiency --widths 0.25,0.5 --methods linear,finetune --tasks quick\n\n"
    "  clrbench study label-efficiency --recipe imagenet-r50-1x-v2 --widths 1,2,4 --set data.path=~/imagenet "
    "--tasks imagenet --device cuda --budget paper --executor ray --gpus-per-trial 1 --yes",
)
def label_efficiency(
    ctx: typer.Context,
    widths: Annotated[str, typer.Option(help=(
        "Width multipliers of the encoder, one pretraining run each (S-v2 Fig. 1: R50 1x, 2x, 4x). Each width step "
        "quadruples the parameters and the CPU time: width 1 is most of a laptop run."))] = "0.25,0.5,1",
    fractions: Annotated[str, typer.Option(help=(
        "Label percentages of the task's train split (class-balanced, >= 1 image per class; S-v2: 1, 10, 100)."))
    ] = "1,10,100",
    methods: Annotated[str, typer.Option(help=(
        "linear (probe on the labelled subset), finetune (S-v2's, from head:1 below 100%), distill "
        "(self-distillation of that fine-tune on the unlabelled train images, below 100%)."))
    ] = "linear,finetune,distill",
    student_init: Annotated[str, typer.Option(help=(
        "Where a self-distilled student starts: pretrained (the trial's SimCLR encoder; learns in the laptop "
        "budget's 10 epochs) or random (S-v2's students train 400 epochs)."))] = "pretrained",
) -> None:
    """Bigger encoders gain more when labels are few (S-v2 Fig. 1): widths x label fractions x linear,
    fine-tune and self-distillation, drawn as metric against parameters, one line per fraction."""
    from clrbench.study import labels

    ws = labels.parse_widths(widths)
    pcts = labels.parse_fractions(fractions)
    ms = labels.parse_methods(methods)
    if student_init not in labels.STUDENT_INITS:
        fail(f"--student-init must be pretrained or random, not {student_init!r}.")
    budget = labels.eval_budget(ctx.params["budget"])

    def expand(trials: list[Any], tasks: list[str], study_ctx: Any) -> list[Any]:
        return labels.expand_jobs(trials, tasks, study_ctx, pcts, ms, budget, student_init)

    _common(ctx, labels.STUDY, lambda cfg: labels.width_grid(ws, cfg),
            jobs={"expand": expand, "run": labels.run_label_job, "baseline": False}, priced=labels.add_training_costs)

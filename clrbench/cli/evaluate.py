"""`clrbench eval`: parse, plan (the library's EvalPlan), render the progress and the board."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clrbench.cli.common import _guard, app, console, fail
from clrbench.cli.leaderboard import show_board, show_curves
from clrbench.cli.progress import JobProgress


@app.command(
    "eval",
    epilog="Examples:\n\n  clrbench eval --checkpoint runs/quickstart/last.pt"
    " --checkpoint random:resnet18,width=0.25,stem=cifar --tasks quick\n\n"
    "  clrbench eval --checkpoint 'runs/r18/step_*.pt' --tasks quick --executor ray --workers 2\n\n"
    "  clrbench eval --watch runs/quickstart/ --tasks quick    # each new checkpoint, until the run ends\n\n"
    "  clrbench eval --checkpoint ckpt.pt --tasks all --protocol linear,finetune --data-root /data"
    " --executor ray --address auto",
)
@_guard
def eval_(
    checkpoint: Annotated[list[str] | None, typer.Option("--checkpoint", "-c", help=(
        "A checkpoint file or glob (clrbench .pt, exported .safetensors, a torchvision ResNet state dict, official "
        "SimCLR v1/v2 weights converted to PyTorch, a lightly or solo-learn .ckpt; recognised from its keys), "
        "torchvision:<arch> (ImageNet weights from the local torch hub cache) or random:<arch>[,width=W,stem=S,seed=N] "
        "(the baseline every board needs). Force "
        "an adapter with NAME:PATH, e.g. simclr-v1:r50_1x.pth. Repeatable."))] = None,
    tasks: Annotated[str, typer.Option(help=(
        "quick, all, or a comma list of task names "
        "or task card files (clrbench tasks ls); list prints them."))] = "quick",
    protocol: Annotated[str, typer.Option(help=(
        "Comma list: linear, linear-v2, knn, fewshot-K (e.g. fewshot-5), finetune, finetune-short, finetune-asha (the "
        "fine-tune grid searched by ASHA, about a quarter of the cost), finetune-asha-short, semi-1pct, semi-10pct "
        "(SimCLRv2 few-label fine-tuning), or a protocol YAML path; NAME@native or NAME@32px at another "
        "resolution."))] = "linear",
    resolution: Annotated[str | None, typer.Option(help=(
        "native (each encoder's training resolution, from its metadata) or pixels, e.g. 32: every protocol runs as "
        "PROTOCOL@native / PROTOCOL@32px, recorded under that name."))] = None,
    data_root: Annotated[str | None, typer.Option(help=(
        "Folder holding the datasets (default: $CLRBENCH_DATA)."))] = None,
    results: Annotated[Path, typer.Option(help="Results folder; records go to RESULTS/records/.")] = Path("results"),
    cache_dir: Annotated[str, typer.Option(help=(
        "Feature and split cache (content-addressed, safe to share); "
        "on a cluster, a folder every node can read."))] = ".cache/clrbench",
    executor: Annotated[str, typer.Option(help=(
        "local (this process) or ray (a running cluster or a local one)."))] = "local",
    workers: Annotated[int | None, typer.Option(help=(
        "Ray: CPUs of the local cluster to start, and at most this many jobs at once."))] = None,
    address: Annotated[str | None, typer.Option(help=(
        "Ray cluster address, e.g. auto; default: start a local cluster."))] = None,
    device: Annotated[str, typer.Option(help=(
        "cpu or cuda for feature extraction, probes and fine-tuning trials."))] = "cpu",
    force: Annotated[bool, typer.Option(help="Recompute jobs that already have a record.")] = False,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of task cards (default: shipped).")] = None,
    watch: Annotated[Path | None, typer.Option(help=(
        "A pretraining run folder (runs/NAME/): evaluate each checkpoint "
        "it writes until its last one; Ctrl-C stops."))] = None,
    poll: Annotated[float, typer.Option(help="--watch: seconds between looks at the run folder.")] = 10.0,
    feature_layer: Annotated[str | None, typer.Option(help=(
        "Override the protocols' feature layer: encoder, or head:K (the K-th projection-head layer, S-v2; needs a "
        "checkpoint that kept its head). Records go under PROTOCOL-headK."))] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=(
        "Start fine-tune protocols even when their estimate is above an hour."))] = False,
    source: Annotated[str, typer.Option(help=(
        "files (the data root), hf (the cards' Hugging Face hub copies) or auto (the files if on disk, else the hub "
        "copy)."))] = "auto",
    limit: Annotated[int | None, typer.Option(help=(
        "Smoke run: at most N images per split; records are kept apart (protocol@limitN)."))] = None,
    wandb_project: Annotated[str | None, typer.Option("--wandb", help=(
        "Also log the boards and records to this Weights & Biases project (pip install wandb; WANDB_MODE=offline needs "
        "no network)."))] = None,
) -> None:
    """Measure how encoders transfer: linear probe / fine-tune per task, one record each, then the board."""
    from clrbench.eval.plan import EvalOptions, check_writable, expand_checkpoints

    if executor not in ("local", "ray"):
        fail(f"--executor must be local or ray, not {executor!r}.")
    from clrbench.cli.notices import print_task_list, skip_missing_data
    from clrbench.cli.sinks import check_wandb, log_wandb

    if tasks == "list":
        return print_task_list(tasks_dir, data_root or os.environ.get("CLRBENCH_DATA"))
    if not checkpoint and watch is None:
        fail("name what to evaluate: --checkpoint CKPT (repeatable, globs allowed) or --watch runs/NAME/.")
    _check_inputs(device, protocol, tasks_dir, limit)
    if poll <= 0 or (workers is not None and workers < 1):
        fail("--poll must be > 0 seconds and --workers >= 1.")
    check_writable(results)
    check_wandb(wandb_project)
    # A dataset not on disk is a missing prerequisite: its tasks are left out here, said once.
    tasks, skipped = skip_missing_data(tasks, data_root or os.environ.get("CLRBENCH_DATA"), tasks_dir, source)
    if not tasks:
        raise typer.Exit(2)
    specs = expand_checkpoints(checkpoint or [])
    protocols = [p.strip() for p in protocol.split(",") if p.strip()]
    if resolution is not None:  # eval/variants.py: the record names the resolution
        protocols = [p if "@" in p else f"{p}@{resolution.strip().removesuffix('px')}" for p in protocols]
    if feature_layer is not None:
        from clrbench.eval.protocols import check_layer_for, with_feature_layer

        protocols = [with_feature_layer(p, feature_layer, cache_dir) for p in protocols]
        check_layer_for(specs, feature_layer)
    batch = _Batch(tasks, protocols, results, executor,
                   EvalOptions(data_root or os.environ.get("CLRBENCH_DATA"), cache_dir,
                               str(tasks_dir) if tasks_dir else None, device, force, source, limit),
                   {"address": address, "workers": workers} if executor == "ray" else {}, yes)
    ids = batch.evaluate(specs)
    if watch is not None:
        ids += _watch(batch, watch, Path(cache_dir) / "watch", poll)
    show_board(results, None, "table", None, None, ids, include_limited=limit is not None)
    log_wandb(wandb_project, results, ids, {"tasks": tasks, "protocols": protocol, "checkpoints": checkpoint or [],
                                            "watch": str(watch) if watch else None})
    if batch.failed:  # exit codes: README "When things go wrong"
        console.print(f"{batch.failed} job(s) failed (listed above); their records say why. Exit status 1.")
        raise typer.Exit(1)
    if skipped:
        console.print(f"Not run, data missing (see above): {', '.join(skipped)}.", markup=False, highlight=False)
        raise typer.Exit(1)


def _check_inputs(device: str, protocol: str, tasks_dir: Path | None, limit: int | None = None) -> None:
    """Flags checked where they are parsed: one sentence each, before any work."""
    if limit is not None and limit < 1:
        fail(f"--limit must be >= 1 image per split, got {limit}; leave it out for the whole task.")
    if device not in ("cpu", "auto"):  # those always resolve; checking others imports torch (~2 s)
        from clrbench.device import pick_device

        pick_device(device)
    if not [p for p in protocol.split(",") if p.strip()]:
        fail("--protocol is empty; name one or more of linear, knn, fewshot, finetune, finetune-asha, semi-10pct.")
    if tasks_dir is not None and not tasks_dir.is_dir():
        fail(f"--tasks-dir {tasks_dir} is not a folder of task cards.")
    if tasks_dir is not None and not any(tasks_dir.glob("*.yaml")):
        fail(f"--tasks-dir {tasks_dir} holds no task cards (*.yaml).")


@dataclass
class _Batch:
    """What one `clrbench eval` evaluates per batch of checkpoints (a watched run gives several)."""

    tasks: str
    protocols: list[str]
    results: Path
    executor: str
    options: Any  # clrbench.eval.plan.EvalOptions
    ray_args: dict[str, Any]
    yes: bool = False  # --yes: fine-tune jobs may start past an hour of estimated time
    failed: int = 0  # jobs whose record is not ok, over every batch

    def evaluate(self, specs: list[str]) -> list[str]:
        """Run every missing job of ``specs`` with live progress; returns their checkpoint ids."""
        from clrbench.eval.plan import plan_eval
        from clrbench.records import Record

        if not specs:
            return []
        plan = plan_eval(specs, self.tasks, self.protocols, self.results, self.options)
        if plan.done:
            console.print(f"{len(plan.done)} job(s) already recorded in {self.results}/records "
                          "(use --force to recompute).", markup=False)
        _confirm_finetune_cost(plan.todo, self.yes)
        if plan.todo:
            with JobProgress(console) as on_event:
                stored = plan.execute(self.executor, on_event, **self.ray_args)
            for r in stored:
                if isinstance(r, Record) and r.status != "ok":
                    self.failed += 1
                    console.print(
                        f"[red]{r.status}[/] " + escape(f"{r.checkpoint_id} / {r.task} / {r.protocol}: {r.error}")
                    )
        return plan.checkpoint_ids


def _confirm_finetune_cost(todo: list[Any], yes: bool) -> None:
    """Print the fine-tune jobs' estimated trial-steps and time (a timed probe step); past an
    hour, stop unless --yes."""
    from clrbench.eval.finetune.cost import CONFIRM_ABOVE_S, estimate_jobs
    from clrbench.study.cost import format_seconds

    costs = estimate_jobs(todo)
    for c in costs:
        console.print(f"Estimate: {c.checkpoint_id} / {c.task} / {c.protocol}: {c.trials} trials, {c.trial_steps:,.0f} "
                      f"trial-steps + {c.final_steps:,} final, {c.step_s * 1000:.0f} ms a step -> about "
                      f"{format_seconds(c.seconds)}", highlight=False)
    total = sum(c.seconds for c in costs)
    if len(costs) > 1:
        console.print(f"Estimate: fine-tuning in all about {format_seconds(total)} on one {todo[0].device} device.")
    if total > CONFIRM_ABOVE_S and not yes:
        fail("that is over an hour of fine-tuning; add --yes to start it, or choose fewer --tasks or a "
             "shorter protocol (finetune-asha, finetune-short).", 1)


def _watch(batch: _Batch, run_dir: Path, snapshots: Path, poll: float) -> list[str]:
    from clrbench.eval.watch import watch_run

    ids: list[str] = []

    def evaluate(paths: list[Path]) -> None:
        console.print(f"[bold]{escape(str(run_dir))}[/]: new checkpoint(s) " + escape(", ".join(p.stem for p in paths)))
        ids.extend(batch.evaluate([str(p) for p in paths]))
        show_curves(batch.results, ids)

    console.print(f"Watching {run_dir} every {poll:g} s; Ctrl-C stops (records so far are kept).", markup=False)
    try:
        watcher = watch_run(run_dir, snapshots, evaluate, poll_s=poll)
    except KeyboardInterrupt:
        console.print("Stopped watching.")
        return ids
    if watcher.finished:
        console.print(f"{run_dir}: the run's final checkpoint is evaluated.", markup=False)
    return ids

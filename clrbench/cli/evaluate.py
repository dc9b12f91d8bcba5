"""`clrbench eval`, `probe` and `leaderboard`: the evaluation side of the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from clrbench.cli.board import JobBoard
from clrbench.cli.common import _guard, app, console, fail, stdout


@app.command(epilog="The npz holds train_x, train_y, val_x, val_y, test_x, test_y (y: integer labels, or 0/1 columns for map11).")
@_guard
def probe(
    features: Annotated[Path, typer.Argument(help="An .npz of features from anywhere.")],
    metric: Annotated[str | None, typer.Option(help="top1, mean_per_class or map11 (default: from the labels).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a summary.")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Run the Kornblith linear probe (45-point lambda grid, L-BFGS) on precomputed features."""
    import json

    from clrbench.device import pick_device
    from clrbench.eval.probe import probe_npz

    pick_device(device)  # a device this machine lacks is one sentence, before any work
    res = probe_npz(features, metric=metric, device=device)
    if json_:
        stdout.print_json(json.dumps(res.to_json()))
    else:
        stdout.print(f"{res.metric} on test: [bold]{res.test:.2f}[/]  (lambda {res.best_lambda:.3g} chosen on val, "
                  f"{res.n_train}/{res.n_val}/{res.n_test} train/val/test, {res.seconds:.1f} s)")


# ----------------------------------------------------------------------------- eval


@app.command("eval", epilog="Examples:\n\n  clrbench eval --checkpoint runs/quickstart/last.pt --checkpoint random:resnet18,width=0.25,stem=cifar --tasks quick\n\n"
             "  clrbench eval --checkpoint 'runs/r18/step_*.pt' --tasks quick --executor ray --workers 2\n\n"
             "  clrbench eval --watch runs/quickstart/ --tasks quick    # each new checkpoint, until the run ends\n\n"
             "  clrbench eval --checkpoint ckpt.pt --tasks all --protocol linear,finetune --data-root /data --executor ray --address auto")
@_guard
def eval_(
    checkpoint: Annotated[list[str] | None, typer.Option("--checkpoint", "-c", help="A checkpoint file or glob (clrbench .pt, exported .safetensors, a torchvision ResNet state dict, official SimCLR v1/v2 weights converted to PyTorch, a lightly or solo-learn .ckpt; recognised from its keys), torchvision:<arch> (ImageNet weights from the local torch hub cache) or random:<arch>[,width=W,stem=S,seed=N] (the baseline every board needs). Force an adapter with NAME:PATH, e.g. simclr-v1:r50_1x.pth. Repeatable.")] = None,
    tasks: Annotated[str, typer.Option(help="quick, all, or a comma list of task names (clrbench tasks ls).")] = "quick",
    protocol: Annotated[str, typer.Option(help="Comma list: linear, finetune, finetune-short.")] = "linear",
    data_root: Annotated[str | None, typer.Option(help="Folder holding the datasets (default: $CLRBENCH_DATA).")] = None,
    results: Annotated[Path, typer.Option(help="Results folder; records go to RESULTS/records/.")] = Path("results"),
    cache_dir: Annotated[str, typer.Option(help="Feature and split cache (content-addressed, safe to share); on a cluster, a folder every node can read.")] = ".cache/clrbench",
    executor: Annotated[str, typer.Option(help="local (this process) or ray (a running cluster or a local one).")] = "local",
    workers: Annotated[int | None, typer.Option(help="Ray: CPUs of the local cluster to start, and at most this many jobs at once.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address, e.g. auto; default: start a local cluster.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda for feature extraction, probes and fine-tuning trials.")] = "cpu",
    force: Annotated[bool, typer.Option(help="Recompute jobs that already have a record.")] = False,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of task cards (default: shipped).")] = None,
    watch: Annotated[Path | None, typer.Option(help="A pretraining run folder (runs/NAME/): evaluate each checkpoint it writes until its last one; Ctrl-C stops.")] = None,
    poll: Annotated[float, typer.Option(help="--watch: seconds between looks at the run folder.")] = 10.0,
) -> None:
    """Measure how encoders transfer: linear probe / fine-tune per task, one record each, then the board."""
    if executor not in ("local", "ray"):
        fail(f"--executor must be local or ray, not {executor!r}.")
    if not checkpoint and watch is None:
        fail("name what to evaluate: --checkpoint CKPT (repeatable, globs allowed) or --watch runs/NAME/.")
    _check_inputs(device, protocol, tasks_dir)
    if poll <= 0 or (workers is not None and workers < 1):
        fail("--poll must be > 0 seconds and --workers >= 1.")
    _check_writable(results)
    plan = _Plan(tasks, [p.strip() for p in protocol.split(",") if p.strip()], results, executor,
                 {"data_root": data_root or os.environ.get("CLRBENCH_DATA"), "cache_dir": cache_dir,
                  "tasks_dir": str(tasks_dir) if tasks_dir else None, "device": device, "force": force},
                 {"address": address, "workers": workers} if executor == "ray" else {})
    ids = plan.evaluate(_expand_checkpoints(checkpoint or []))
    if watch is not None:
        ids += _watch(plan, watch, Path(cache_dir) / "watch", poll)
    _show_board(results, None, "table", None, None, ids)
    if plan.failed:  # exit codes: README "When things go wrong"
        console.print(f"{plan.failed} job(s) failed (listed above); their records say why. Exit status 1.")
        raise typer.Exit(1)


def _check_inputs(device: str, protocol: str, tasks_dir: Path | None) -> None:
    """Flags checked where they are parsed: one sentence each, before any work."""
    from clrbench.device import pick_device

    pick_device(device)
    if not [p for p in protocol.split(",") if p.strip()]:
        fail("--protocol is empty; name one or more of linear, finetune, finetune-short.")
    if tasks_dir is not None and not tasks_dir.is_dir():
        fail(f"--tasks-dir {tasks_dir} is not a folder of task cards.")
    if tasks_dir is not None and not any(tasks_dir.glob("*.yaml")):
        fail(f"--tasks-dir {tasks_dir} holds no task cards (*.yaml).")


class _Plan:
    """What one `clrbench eval` runs per batch of checkpoints: plan, run on the board, report."""

    def __init__(self, tasks: str, protocols: list[str], results: Path, executor: str,
                 job_args: dict[str, Any], ray_args: dict[str, Any]) -> None:
        self.tasks, self.protocols, self.results = tasks, protocols, results
        self.executor, self.job_args, self.ray_args = executor, job_args, ray_args
        self.failed = 0  # jobs whose record is not ok, over every batch

    def evaluate(self, specs: list[str]) -> list[str]:
        """Run every missing job of ``specs``; returns their checkpoint ids."""
        from clrbench.eval.executor import run_jobs
        from clrbench.eval.jobs import plan_jobs, plan_trials
        from clrbench.eval.watch import checkpoint_progress
        from clrbench.records import Record

        if not specs:
            return []
        todo, done = plan_jobs(specs, self.tasks, self.protocols, self.results, **self.job_args)
        if done:
            console.print(f"{len(done)} job(s) already recorded in {self.results}/records (use --force to recompute).")
        progress = {spec: checkpoint_progress(spec) for spec in specs}
        if todo:
            with JobBoard(console) as on_event:
                phases = _phases(todo, plan_trials(todo) if self.executor == "ray" else [])
                for job in phases[0] + phases[1]:
                    on_event({"job": job, "state": "queued", "record": None, "error": None})
                stored = [r for phase in phases if phase for r in run_jobs(
                    phase, self.results, executor=self.executor, on_event=on_event,
                    annotate=lambda job, r: _with_progress(r, progress.get(job.checkpoint, {})), **self.ray_args)]
            for r in stored:
                if isinstance(r, Record) and r.status != "ok":
                    self.failed += 1
                    console.print(f"[red]{r.status}[/] {r.checkpoint_id} / {r.task} / {r.protocol}: {r.error}")
        return list(dict.fromkeys(j.checkpoint_id for j in todo + done))


def _phases(todo: list[Any], trials: list[Any]) -> tuple[list[Any], list[Any]]:
    """On Ray, fine-tune trials fan out beside the other jobs first; the fine-tune final jobs
    run after them and find their trials done (see clrbench.eval.jobs)."""
    fanned = {t.key for t in trials}
    return trials + [j for j in todo if j.key not in fanned], [j for j in todo if j.key in fanned]


def _with_progress(rec: Any, info: dict[str, Any]) -> Any:
    """The record with the checkpoint's run, step and epoch (what a score-vs-epoch curve needs)."""
    from dataclasses import replace

    return replace(rec, checkpoint={**info, **rec.checkpoint}) if info else rec


def _watch(plan: _Plan, run_dir: Path, snapshots: Path, poll: float) -> list[str]:
    from clrbench.eval.watch import watch_run

    ids: list[str] = []

    def evaluate(paths: list[Path]) -> None:
        console.print(f"[bold]{run_dir}[/]: new checkpoint(s) {', '.join(p.stem for p in paths)}")
        ids.extend(plan.evaluate([str(p) for p in paths]))
        _show_curves(plan.results, ids)

    console.print(f"Watching {run_dir} every {poll:g} s; Ctrl-C stops (records so far are kept).")
    try:
        watcher = watch_run(run_dir, snapshots, evaluate, poll_s=poll)
    except KeyboardInterrupt:
        console.print("Stopped watching.")
        return ids
    if watcher.finished:
        console.print(f"{run_dir}: the run's final checkpoint is evaluated.")
    return ids


def _expand_checkpoints(specs: list[str]) -> list[str]:
    import glob

    out_specs: list[str] = []
    for s in specs:
        if any(ch in s for ch in "*?[") and ":" not in s:
            hits = sorted(glob.glob(s))
            if not hits:
                fail(f"no checkpoint matches {s!r}.")
            out_specs.extend(hits)
        else:
            out_specs.append(s)
    return list(dict.fromkeys(out_specs))


def _check_writable(results: Path) -> None:
    try:
        (results / "records").mkdir(parents=True, exist_ok=True)
        probe_file = results / "records" / ".write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        fail(f"cannot write to the results folder {results} ({e.strerror}); choose another with --results.")


# ----------------------------------------------------------------------------- leaderboard


@app.command(epilog="Examples:\n\n  clrbench leaderboard\n\n  clrbench leaderboard --format md > board.md\n\n"
             "  clrbench leaderboard --baseline random-resnet18-w0.25-cifar-s0 --plot board.png\n\n"
             "  clrbench leaderboard --tasks all --baseline 'SimCLR R50 (' --plot board.png")
@_guard
def leaderboard(
    results: Annotated[Path, typer.Option(help="Results folder holding records/.")] = Path("results"),
    format_: Annotated[str, typer.Option("--format", help="table, md, csv or json.")] = "table",
    baseline: Annotated[str | None, typer.Option(help="A row (checkpoint id or published label, or a unique prefix) to show deltas and significance against.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only this protocol's table.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Columns: all (the 12 Kornblith tasks), quick, or a comma list; default: the tasks recorded.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a grouped bar chart PNG here (and PLOT-curve.png when a run has several checkpoints).")] = None,
) -> None:
    """Show the records as one table per protocol, beside the published numbers, and score-vs-epoch curves."""
    _show_board(results, protocol, format_, baseline, plot, None, tasks)


def _columns(tasks: str | None) -> list[str] | None:
    from clrbench.data.cards import load_cards, select_tasks
    from clrbench.leaderboard.reference import TRANSFER_TASKS

    if tasks is None:
        return None
    names = [c.name for c in select_tasks(tasks, load_cards())]
    return sorted(names, key=lambda t: (TRANSFER_TASKS.index(t) if t in TRANSFER_TASKS else 99, names.index(t)))


def _show_board(results: Path, protocol: str | None, fmt: str, baseline: str | None, plot: Path | None,
                only: list[str] | None, tasks: str | None = None) -> None:
    from clrbench.leaderboard import board as lb
    from clrbench.leaderboard import render

    if fmt not in ("table", "md", "csv", "json"):
        fail(f"--format must be table, md, csv or json, not {fmt!r}.")
    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot writes a PNG; give it a .png name, not {plot}.")
    boards = lb.board_for_results(results, protocol=protocol, baseline=baseline, checkpoints=only,
                                  tasks=_columns(tasks))
    if not boards and protocol is not None:
        _check_protocol_recorded(results, protocol)
    if not boards:
        fail(f"no records in {results}/records yet; run clrbench eval first.", 1)
    for board in boards:
        if fmt == "table":
            for block in render.render_rich_blocks(board, stdout.width):
                stdout.print(block)
        else:
            stdout.print({"md": render.to_markdown, "csv": render.to_csv, "json": render.to_json}[fmt](board), end="",
                         markup=False, highlight=False, soft_wrap=True)
        if plot is not None:
            target = plot if len(boards) == 1 else plot.with_name(f"{plot.stem}-{board.protocol}{plot.suffix}")
            render.plot(board, target)
            console.print(f"Plot written to {target}.")
    if fmt in ("table", "md") or plot is not None:
        _show_curves(results, only, protocol, fmt if fmt in ("table", "md") else None, plot)


def _check_protocol_recorded(results: Path, protocol: str) -> None:
    """--protocol that matches no record: say which protocols have records."""
    from clrbench.records import read_records

    have = sorted({r.protocol for r in read_records(results, lenient=True)})
    if have:
        fail(f"no {protocol!r} records in {results}/records; protocols with records: {', '.join(have)}.")


def _show_curves(results: Path, only: list[str] | None, protocol: str | None = None, fmt: str | None = "table",
                 plot: Path | None = None) -> None:
    """Score-vs-epoch tables (and a plot) for runs with several evaluated checkpoints."""
    from clrbench.leaderboard import curves as lc
    from clrbench.records import read_records

    records = [r for r in read_records(results, lenient=True) if only is None or r.checkpoint_id in only]
    curves = lc.build_curves(records, protocol)
    for c in curves:
        if fmt == "table":
            stdout.print(lc.curve_rich(c))
        elif fmt == "md":
            stdout.print("\n" + lc.curve_markdown(c), end="", markup=False, highlight=False, soft_wrap=True)
    if curves and plot is not None:
        target = lc.plot_curves(curves, plot.with_name(f"{plot.stem}-curve{plot.suffix}"))
        console.print(f"Curve plot written to {target}.")

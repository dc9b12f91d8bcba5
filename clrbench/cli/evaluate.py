"""`clrbench eval`, `probe` and `leaderboard`: the evaluation side of the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

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

    from clrbench.transfer.probe import probe_npz

    res = probe_npz(features, metric=metric, device=device)
    if json_:
        stdout.print_json(json.dumps(res.to_json()))
    else:
        stdout.print(f"{res.metric} on test: [bold]{res.test:.2f}[/]  (lambda {res.best_lambda:.3g} chosen on val, "
                  f"{res.n_train}/{res.n_val}/{res.n_test} train/val/test, {res.seconds:.1f} s)")


# ----------------------------------------------------------------------------- eval


@app.command("eval", epilog="Examples:\n\n  clrbench eval --checkpoint runs/quickstart/last.pt --checkpoint random:resnet18,width=0.25,stem=cifar --tasks quick\n\n"
             "  clrbench eval --checkpoint ckpt.pt --tasks all --protocol linear,finetune --data-root /data --executor ray")
@_guard
def eval_(
    checkpoint: Annotated[list[str], typer.Option("--checkpoint", "-c", help="A checkpoint file, a glob, random:<arch>[,width=W,stem=S,seed=N] or torchvision:<arch>. Repeatable.")],
    tasks: Annotated[str, typer.Option(help="quick, all, or a comma list of task names (clrbench tasks ls).")] = "quick",
    protocol: Annotated[str, typer.Option(help="Comma list: linear, finetune, finetune-short.")] = "linear",
    data_root: Annotated[str | None, typer.Option(help="Folder holding the datasets (default: $CLRBENCH_DATA).")] = None,
    results: Annotated[Path, typer.Option(help="Results folder; records go to RESULTS/records/.")] = Path("results"),
    cache_dir: Annotated[str, typer.Option(help="Feature and split cache (content-addressed, safe to share).")] = ".cache/clrbench",
    executor: Annotated[str, typer.Option(help="local (this process) or ray (a running cluster or a local one).")] = "local",
    workers: Annotated[int | None, typer.Option(help="CPUs of the local Ray cluster to start.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address, e.g. auto.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda for feature extraction and probes.")] = "cpu",
    force: Annotated[bool, typer.Option(help="Recompute jobs that already have a record.")] = False,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of task cards (default: shipped).")] = None,
) -> None:
    """Measure how encoders transfer: linear probe / fine-tune per task, one record each, then the board."""
    from clrbench.transfer.executor import run_jobs
    from clrbench.transfer.jobs import plan_jobs

    specs = _expand_checkpoints(checkpoint)
    root = data_root or os.environ.get("CLRBENCH_DATA")
    _check_writable(results)
    protocols = [p.strip() for p in protocol.split(",") if p.strip()]
    todo, done = plan_jobs(specs, tasks, protocols, results, data_root=root, cache_dir=cache_dir,
                           tasks_dir=str(tasks_dir) if tasks_dir else None, device=device, force=force)
    if done:
        console.print(f"{len(done)} job(s) already recorded in {results}/records (use --force to recompute).")
    if todo:
        with _job_board(len(todo)) as on_event:
            records = run_jobs(todo, results, executor=executor, on_event=on_event,
                               **({"address": address, "workers": workers} if executor == "ray" else {}))
        failed = [r for r in records if r.status != "ok"]
        for r in failed:
            console.print(f"[red]failed[/] {r.checkpoint_id} / {r.task} / {r.protocol}: {r.error}")
    _show_board(results, None, "table", None, None, [j.checkpoint_id for j in todo + done])


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
    return out_specs


def _check_writable(results: Path) -> None:
    try:
        (results / "records").mkdir(parents=True, exist_ok=True)
        probe_file = results / "records" / ".write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        fail(f"cannot write to the results folder {results} ({e.strerror}); choose another with --results.")


class _job_board:
    """A rich live progress bar of jobs: done / failed / total, with the ETA."""

    def __init__(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task("eval", total=total, info="")
        self.failed = 0

    def __enter__(self) -> Any:
        self.progress.start()

        def on_event(ev: dict[str, Any]) -> None:
            job = ev["job"]
            if ev["state"] == "running":
                self.progress.update(self.task, info=f"{job.checkpoint_id} / {job.task} / {job.protocol}")
                return
            self.failed += ev["state"] == "failed"
            rec = ev["record"]
            val = f"{rec.value:.2f}" if rec.value is not None else "failed"
            self.progress.console.print(f"  {job.checkpoint_id:<32} {job.task:<12} {job.protocol:<15} {val}")
            self.progress.advance(self.task)

        return on_event

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


# ----------------------------------------------------------------------------- leaderboard


@app.command(epilog="Examples:\n\n  clrbench leaderboard\n\n  clrbench leaderboard --format md > board.md\n\n"
             "  clrbench leaderboard --baseline random-resnet18-w0.25-cifar-s0 --plot board.png")
@_guard
def leaderboard(
    results: Annotated[Path, typer.Option(help="Results folder holding records/.")] = Path("results"),
    format_: Annotated[str, typer.Option("--format", help="table, md, csv or json.")] = "table",
    baseline: Annotated[str | None, typer.Option(help="A row (checkpoint id or published label) to show deltas and significance against.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only this protocol's table.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a grouped bar chart PNG here.")] = None,
) -> None:
    """Show the records as one table per protocol, beside the published numbers."""
    _show_board(results, protocol, format_, baseline, plot, None)


def _show_board(results: Path, protocol: str | None, fmt: str, baseline: str | None, plot: Path | None,
                only: list[str] | None) -> None:
    from clrbench import leaderboard as lb

    if fmt not in ("table", "md", "csv", "json"):
        fail(f"--format must be table, md, csv or json, not {fmt!r}.")
    boards = lb.board_for_results(results, protocol=protocol, baseline=baseline, checkpoints=only)
    if not boards:
        fail(f"no records in {results}/records yet; run clrbench eval first.", 1)
    for board in boards:
        if fmt == "table":
            stdout.print(lb.render_rich(board))
        else:
            stdout.print({"md": lb.to_markdown, "csv": lb.to_csv, "json": lb.to_json}[fmt](board), end="",
                      markup=False, highlight=False, soft_wrap=True)
        if plot is not None:
            target = plot if len(boards) == 1 else plot.with_name(f"{plot.stem}-{board.protocol}{plot.suffix}")
            lb.plot(board, target)
            console.print(f"Plot written to {target}.")

"""The ``clrbench`` command line: each command parses, builds a config, calls one library
function and renders. Heavy imports (torch, ray) happen inside the commands so that
``clrbench --help`` is instant."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="clrbench", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="SimCLR pretraining and the 12-dataset transfer benchmark (Kornblith et al. 2019).",
)
tasks_app = typer.Typer(no_args_is_help=True, help="List, show and validate task cards.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and check the twelve transfer datasets.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(data_app, name="data")
console = Console(stderr=True)
stdout = Console()

# Errors that mean "bad input": one sentence and exit 2. (module, class) so nothing is imported.
_USER_ERRORS = [
    ("clrbench.config", "ConfigError"), ("clrbench.registry", "UnknownNameError"),
    ("clrbench.simclr.data", "DataError"), ("clrbench.simclr.train", "TrainingError"),
    ("clrbench.checkpoint", "CheckpointError"), ("clrbench.transfer.datasets", "DatasetError"),
    ("clrbench.transfer.probe", "ProbeInputError"), ("clrbench.records", "RecordError"),
    ("clrbench.dist", "DistError"), ("clrbench.launch", "LaunchError"),
    ("clrbench.transfer.jobs", "EvalError"), ("clrbench.adapters", "AdapterError"),
]


def _is_user_error(e: BaseException) -> bool:
    for mod, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(mod), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn: Any) -> Any:
    """Turn known bad-input errors into one sentence and a non-zero exit."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            fail("interrupted; what was saved (checkpoints, records) is kept.", 130)
        except Exception as e:  # noqa: BLE001 - filtered just below
            if _is_user_error(e):
                fail(str(e))
            if isinstance(e, OSError) and e.errno == 28:
                fail(f"the disk is full ({e.filename or ''}); the previous checkpoint or record is intact.")
            raise

    return wrapper


# ----------------------------------------------------------------------------- pretrain


@app.command(epilog="Examples:\n\n  clrbench pretrain                      # quickstart: offline, ~3 min on 2 CPU cores\n\n"
             "  clrbench pretrain cifar10-r18 --data ~/data --device cuda\n\n"
             "  clrbench pretrain imagenet-r50-1x --launcher torchrun --nproc 8 --data /imagenet/train")
@_guard
def pretrain(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML path or shipped name (see pretrain/). Default: quickstart.")] = "quickstart",
    set_: Annotated[list[str], typer.Option("--set", help="Override any field, e.g. --set loss.temperature=0.5 (repeatable).")] = [],  # noqa: B006
    arch: Annotated[str | None, typer.Option(help="resnet18/34/50/101/152.")] = None,
    width: Annotated[float | None, typer.Option(help="Channel multiplier: 1, 2, 4 as in SimCLR; 0.25 for quick CPU runs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch (images, all processes). Larger helps SimCLR (S-v1 Fig. 9); lower it if memory runs out.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs.")] = None,
    steps: Annotated[int | None, typer.Option(help="Total steps; overrides --epochs.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of each augmented view in pixels.")] = None,
    data: Annotated[str | None, typer.Option(help="Data path: image folder, HF dataset id/folder, or torchvision root.")] = None,
    out: Annotated[str | None, typer.Option(help="Folder holding run folders (default runs/).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run's last checkpoint if there is one.")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the data order and augmentation.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the resolved config and derived values (lr, steps), then stop.")] = False,
    launcher: Annotated[str, typer.Option(help="local (this process), torchrun (N processes here) or ray (Ray Train).")] = "local",
    nproc: Annotated[int, typer.Option(help="Processes for --launcher torchrun.")] = 2,
    workers: Annotated[int, typer.Option(help="Ray Train workers for --launcher ray.")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray worker (0 on CPU).")] = 0,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (auto = a running cluster).")] = None,
) -> None:
    """Train a SimCLR encoder (Chen et al. 2020): two views, ResNet, projection head, NT-Xent, LARS."""
    from clrbench.config import load_pretrain_config

    quick = {"model.arch": arch, "model.width": width, "optim.batch_size_global": batch_size,
             "optim.epochs": epochs, "optim.steps": steps, "augment.image_size": image_size,
             "data.path": data, "run.out": out, "run.seed": seed, "run.device": device}
    overrides = [f"{k}={v}" for k, v in quick.items() if v is not None] + list(set_)
    if data is not None and not any(s.startswith("data.source=") for s in set_):
        overrides.append(f"data.source={_guess_source(recipe, data)}")
    cfg = load_pretrain_config(recipe, overrides)
    if dry_run:
        _print_dry_run(cfg, launcher, nproc, workers)
        return
    from clrbench.launch import launch

    summary = launch(cfg, launcher=launcher, resume=resume, nproc=nproc, workers=workers,
                     gpus_per_worker=gpus_per_worker, address=address, reporter_factory=_progress)
    if summary is not None:
        stdout.print(f"Trained {summary.steps} steps in {summary.seconds:.0f} s; final loss {summary.loss:.3f}.")
        stdout.print(f"Checkpoint: [bold]{summary.checkpoint}[/]  (evaluate it: clrbench eval --checkpoint {summary.checkpoint} --tasks quick)")


def _guess_source(recipe: str, data: str) -> str:
    from clrbench.config import load_pretrain_config

    src = load_pretrain_config(recipe).data.source
    if src != "embedded":
        return src
    return "folder" if Path(data).is_dir() and not (Path(data) / "dataset_info.json").exists() else "hf"


def _print_dry_run(cfg: Any, launcher: str, nproc: int, workers: int) -> None:
    import yaml

    from clrbench.config import derive, to_dict
    from clrbench.simclr.data import open_source

    world = {"local": 1, "torchrun": nproc, "ray": workers}.get(launcher, 1)
    d = derive(cfg, len(open_source(cfg.data)), world)
    stdout.print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    stdout.print("# derived (computed, never written back)")
    for k, v in vars(d).items():
        stdout.print(f"{k}: {v}")


def _progress(total_hint: int | None = None) -> Any:
    """A rich progress bar fed by the training loop's metrics."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]pretrain"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=False)
    state: dict[str, Any] = {}

    def report(m: dict[str, Any]) -> None:
        if "task" not in state:
            bar.start()
            state["task"] = bar.add_task("pretrain", total=m["total_steps"], info="")
        probe = f" probe {m['probe_acc']:.2f}" if m.get("probe_acc") is not None else ""
        info = f"loss {m['loss']:.3f} acc {m['contrastive_acc']:.2f}{probe} lr {m['lr']:.3g} {m['images_per_s']:.0f} img/s"
        bar.update(state["task"], completed=m["step"], info=info)
        if m["step"] >= m["total_steps"]:
            bar.stop()

    report.close = bar.stop  # type: ignore[attr-defined]
    return report


# ----------------------------------------------------------------------------- probe


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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
    for i, board in enumerate(boards):
        if fmt == "table":
            stdout.print(lb.render_rich(board))
        else:
            stdout.print({"md": lb.to_markdown, "csv": lb.to_csv, "json": lb.to_json}[fmt](board), end="",
                      markup=False, highlight=False, soft_wrap=True)
        if plot is not None:
            target = plot if len(boards) == 1 else plot.with_name(f"{plot.stem}-{board.protocol}{plot.suffix}")
            lb.plot(board, target)
            console.print(f"Plot written to {target}.")


# ----------------------------------------------------------------------------- tasks


@tasks_app.command("ls")
@_guard
def tasks_ls(tasks_dir: Annotated[Path | None, typer.Option(help="Folder of cards (default: shipped).")] = None) -> None:
    """List the task cards with their metric and split sizes."""
    from rich.table import Table

    from clrbench.transfer.taskcard import load_cards

    t = Table(title="clrbench tasks")
    for col in ("name", "v", "groups", "classes", "metric", "train", "val", "test", "title"):
        t.add_column(col, justify="right" if col in ("v", "classes", "train", "val", "test") else "left")
    for c in load_cards(tasks_dir).values():
        s = c.expected_sizes
        t.add_row(c.name, str(c.version), ",".join(c.groups), str(c.num_classes), c.metric,
                  f"{s['train']:,}", f"{s['val']:,}", f"{s['test']:,}", c.title)
    stdout.print(t)


@tasks_app.command("show")
@_guard
def tasks_show(name: str, tasks_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Print one card in full."""
    import yaml

    from clrbench.config import to_dict
    from clrbench.transfer.taskcard import load_cards, select_tasks

    card = select_tasks(name, load_cards(tasks_dir))[0]
    stdout.print(yaml.safe_dump(to_dict(card), sort_keys=False))


@tasks_app.command("validate")
@_guard
def tasks_validate(tasks_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Load and check every card and protocol; exit non-zero on the first problem."""
    from clrbench.transfer.taskcard import cards_dir, load_cards, load_protocol

    cards = load_cards(tasks_dir)
    pdir = (tasks_dir or cards_dir()) / "protocols"
    protos = [load_protocol(p) for p in sorted(pdir.glob("*.yaml"))]
    stdout.print(f"{len(cards)} cards and {len(protos)} protocols are valid.")


# ----------------------------------------------------------------------------- data


def _data_root(root: Path | None) -> Path:
    value = root or (Path(os.environ["CLRBENCH_DATA"]) if os.environ.get("CLRBENCH_DATA") else None)
    if value is None:
        fail("no data root: pass --root DIR or set CLRBENCH_DATA.")
    return value


class _FileBars:
    """rich progress bars, one per file, fed by the fetch module's progress(label, done, total)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), console=console)
        self.ids: dict[str, Any] = {}

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if label not in self.ids:
            self.ids[label] = self.bars.add_task(label, total=total)
        self.bars.update(self.ids[label], completed=done, total=total)


@data_app.command("download", epilog="Example: clrbench data download --tasks dtd,flowers102,pets --root ~/data")
@_guard
def data_download(
    tasks: Annotated[str, typer.Option(help="all, or a comma list of the twelve task names.")] = "all",
    root: Annotated[Path | None, typer.Option(help="Data root (default: $CLRBENCH_DATA).")] = None,
    workers: Annotated[int, typer.Option(help="Parallel downloads for Birdsnap's image list.")] = 16,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of cards (default: shipped).")] = None,
) -> None:
    """Fetch what can still be fetched (resumable, md5-checked); print the manual steps for the rest."""
    from clrbench.transfer.fetch import download_tasks
    from clrbench.transfer.taskcard import load_cards, select_tasks

    cards = [c for c in select_tasks(tasks, load_cards(tasks_dir)) if c.source.root_dir]
    bars = _FileBars()
    with bars.bars:
        reports = download_tasks(cards, _data_root(root), progress=bars, workers=workers)
    for r in reports:
        colour = "green" if r.ok else ("yellow" if r.status == "manual" else "red")
        stdout.print(f"[{colour}]{r.task:<11} {r.status:<10}[/] {r.message}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@data_app.command("verify", epilog="Example: clrbench data verify --tasks all --root ~/data")
@_guard
def data_verify(
    tasks: Annotated[str, typer.Option(help="all, or a comma list of task names.")] = "all",
    root: Annotated[Path | None, typer.Option(help="Data root (default: $CLRBENCH_DATA).")] = None,
    md5: Annotated[bool, typer.Option(help="Check archive md5 sums where known (slow for big files).")] = True,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of cards (default: shipped).")] = None,
) -> None:
    """A table per dataset: files present / missing, classes, split sizes vs the card; exit 1 if anything differs."""
    from rich.table import Table

    from clrbench.transfer.fetch import verify_tasks
    from clrbench.transfer.taskcard import load_cards, select_tasks

    cards = [c for c in select_tasks(tasks, load_cards(tasks_dir)) if c.source.root_dir]
    reports = verify_tasks(cards, _data_root(root), check_md5=md5)
    t = Table(title="clrbench data verify")
    for col in ("task", "status", "classes", "train", "val", "test", "differences"):
        t.add_column(col, overflow="fold")
    for r in reports:
        sizes = [f"{r.sizes.get(s, '-')}/{r.expected_sizes.get(s, '-')}" for s in ("train", "val", "test")]
        colour = "green" if r.status == "ok" else ("yellow" if r.ok else "red")
        t.add_row(r.task, f"[{colour}]{r.status}[/]", f"{r.num_classes}/{r.expected_classes}", *sizes,
                  " ".join(r.diff + r.notes) or "-")
    stdout.print(t)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    app()

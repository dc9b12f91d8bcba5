"""`clrbench pretrain`: parse, resolve the recipe, hand it to the launcher, show progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clrbench.cli.common import _guard, app, console, stdout


@app.command(
    epilog="Examples:\n\n  clrbench pretrain                      # quickstart: offline, ~3 min on 2 CPU cores\n\n"
    "  clrbench pretrain cifar10-r18 --data ~/data --device cuda\n\n"
    "  clrbench pretrain imagenet-r50-1x --launcher torchrun --nproc 8 --data /imagenet/train"
)
@_guard
def pretrain(
    recipe: Annotated[str, typer.Argument(help=(
        "Recipe YAML path or shipped name (see pretrain/). Default: quickstart."))] = "quickstart",
    set_: Annotated[list[str], typer.Option("--set", help=(
        "Override any field, e.g. --set loss.temperature=0.5 (repeatable)."))] = [],  # noqa: B006
    arch: Annotated[str | None, typer.Option(help="resnet18/34/50/101/152.")] = None,
    width: Annotated[float | None, typer.Option(help=(
        "Channel multiplier: 1, 2, 4 as in SimCLR; 0.25 for quick CPU runs."))] = None,
    batch_size: Annotated[int | None, typer.Option(help=(
        "Global batch (images, all processes). Larger helps SimCLR "
        "(S-v1 Fig. 9); lower it if memory runs out."))] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs.")] = None,
    steps: Annotated[int | None, typer.Option(help="Total steps; overrides --epochs.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of each augmented view in pixels.")] = None,
    data: Annotated[str | None, typer.Option(help=(
        "Data path: image folder, HF dataset id/folder, or torchvision root."))] = None,
    out: Annotated[str | None, typer.Option(help="Folder holding run folders (default runs/).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run's last checkpoint if there is one.")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the data order and augmentation.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    dry_run: Annotated[bool, typer.Option(help=(
        "Print the resolved config and derived values (lr, steps), then stop."))] = False,
    launcher: Annotated[str, typer.Option(help=(
        "local (this process), torchrun (N processes here) or ray (Ray Train)."))] = "local",
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
    if summary is not None and summary.already_finished:
        stdout.print(f"{summary.run_dir} already finished ({summary.steps} steps); nothing was changed.", markup=False)
        stdout.print(f"Checkpoint: [bold]{escape(str(summary.checkpoint))}[/]")
    elif summary is not None:
        stdout.print(f"Trained {summary.steps} steps in {summary.seconds:.0f} s; final loss {summary.loss:.3f}.")
        stdout.print(f"Checkpoint: [bold]{escape(str(summary.checkpoint))}[/]  "
                     + escape(f"(evaluate it: clrbench eval --checkpoint {summary.checkpoint} --tasks quick)"))


def _guess_source(recipe: str, data: str) -> str:
    from clrbench.config import load_pretrain_config

    src = load_pretrain_config(recipe).data.source
    if src != "embedded":
        return src
    return "folder" if Path(data).is_dir() and not (Path(data) / "dataset_info.json").exists() else "hf"


def _print_dry_run(cfg: Any, launcher: str, nproc: int, workers: int) -> None:
    """The resolved recipe and its derived values; works without the data (its size is then
    data.num_images or the named dataset's, in a note), and shows both lr scalings (S-v1 B.1)."""
    import math

    import yaml

    from clrbench.config import derive, to_dict
    from clrbench.data.pretrain_size import images_for_dry_run
    from clrbench.simclr.encoder import ENCODERS

    ENCODERS.get(cfg.model.arch)  # an unknown arch is one sentence here too, not only at training
    world = {"local": 1, "torchrun": nproc, "ray": workers}.get(launcher, 1)
    n_images, note = images_for_dry_run(cfg)
    d = derive(cfg, n_images, world)
    stdout.print(yaml.safe_dump(to_dict(cfg), sort_keys=False), markup=False, highlight=False)
    stdout.print("# derived (computed, never written back)", markup=False)
    if note:
        stdout.print(f"# {note}", markup=False, highlight=False, soft_wrap=True)
    for k, v in vars(d).items():
        stdout.print(f"{k}: {v}", markup=False, highlight=False)
    b, base = d.batch_size_global, cfg.optim.lr_base
    used = cfg.optim.lr_scaling
    for name, value, rule in (("linear", base * b / 256, f"lr_base x B/256 = {base:g} x {b}/256"),
                              ("sqrt", base * math.sqrt(b), f"lr_base x sqrt(B) = {base:g} x sqrt({b})")):
        mark = ", in use" if name == used else ""
        stdout.print(
            f"lr if {name} scaling: {value:.4g}  ({rule}{mark})", markup=False, highlight=False, soft_wrap=True
        )


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
        info = (
            f"loss {m['loss']:.3f} acc {m['contrastive_acc']:.2f}{probe} lr {m['lr']:.3g} {m['images_per_s']:.0f} img/s"
        )
        bar.update(state["task"], completed=m["step"], info=info)
        if m["step"] >= m["total_steps"]:
            bar.stop()

    report.close = bar.stop  # type: ignore[attr-defined]
    return report

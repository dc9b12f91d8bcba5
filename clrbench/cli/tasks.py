"""`clrbench tasks` (cards) and `clrbench data` (download, verify)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clrbench.cli.common import _guard, app, console, fail, stdout

tasks_app = typer.Typer(no_args_is_help=True, help="List, show and validate task cards.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and check the twelve transfer datasets.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(data_app, name="data")


@tasks_app.command("ls")
@_guard
def tasks_ls(tasks_dir: Annotated[Path | None, typer.Option(help="Folder of cards (default: shipped).")] = None,
             root: Annotated[Path | None, typer.Option(help=(
                 "Data root to look for the datasets in (default: $CLRBENCH_DATA)."))] = None) -> None:
    """List the task cards with their metric, split sizes and whether the dataset is installed."""
    from rich.table import Table

    from clrbench.data.cards import load_cards
    from clrbench.data.presence import installed

    data_root = root or os.environ.get("CLRBENCH_DATA") or None
    t = Table(title="clrbench tasks", caption=f"installed: under {escape(str(data_root))}" if data_root
              else "installed: no data root (--root or $CLRBENCH_DATA); offline = generated, nothing to install")
    for col in ("name", "v", "groups", "classes", "metric", "train", "val", "test", "installed", "title"):
        t.add_column(col, justify="right" if col in ("v", "classes", "train", "val", "test") else "left")
    for c in load_cards(tasks_dir).values():
        s = c.expected_sizes
        have = installed(c, data_root)
        state = "[dim]offline[/]" if have is None else ("[green]yes[/]" if have else "[red]no[/]")
        t.add_row(escape(c.name), str(c.version), ",".join(c.groups), str(c.num_classes), c.metric,
                  f"{s['train']:,}", f"{s['val']:,}", f"{s['test']:,}", state, escape(c.title))
    stdout.print(t)


@tasks_app.command("show")
@_guard
def tasks_show(name: str, tasks_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Print one card in full."""
    import yaml

    from clrbench.config import to_dict
    from clrbench.data.cards import load_cards, select_tasks

    card = select_tasks(name, load_cards(tasks_dir))[0]
    stdout.print(yaml.safe_dump(to_dict(card), sort_keys=False))


@tasks_app.command("validate", epilog="Example: clrbench tasks validate ./my_cards/flowers.yaml")
@_guard
def tasks_validate(
    files: Annotated[list[Path] | None, typer.Argument(help=(
        "User card files or folders to check (default: every shipped card and protocol)."))] = None,
    tasks_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Load and check every card and protocol, or the user cards given; exit non-zero on the first problem."""
    from clrbench.data.cards import cards_dir, load_cards
    from clrbench.eval.protocols import load_protocol

    if files:
        from clrbench.data.user_cards import validate_card_files

        for line in validate_card_files([str(f) for f in files], tasks_dir):
            stdout.print(line, highlight=False)
        return
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
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

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
    tasks: Annotated[str, typer.Option(help="all, or a comma list of task names, card files or card folders.")] = "all",
    root: Annotated[Path | None, typer.Option(help="Data root (default: $CLRBENCH_DATA).")] = None,
    workers: Annotated[int, typer.Option(help="Parallel downloads for Birdsnap's image list.")] = 16,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of cards (default: shipped).")] = None,
    source: Annotated[str, typer.Option(help=(
        "files (the original archives into --root) or hf "
        "(the cards' hub copies into the Hugging Face cache)."))] = "files",
) -> None:
    """Fetch what can still be fetched (resumable, md5-checked); print the manual steps for the rest."""
    from clrbench.data.fetch import download_tasks
    from clrbench.data.user_cards import select_cards

    if source == "hf":
        from clrbench.data.hub import cache_hub_copies

        hub_reports = cache_hub_copies([c for c, _ in select_cards(tasks, tasks_dir)])
        for task, ok, msg in hub_reports:
            stdout.print(
                f"[{'green' if ok else 'red'}]{task:<11} {'cached' if ok else 'failed':<10}[/] {msg}", highlight=False
            )
        if not all(ok for _, ok, _ in hub_reports):
            raise typer.Exit(1)
        return

    cards = [c for c in [c for c, _ in select_cards(tasks, tasks_dir)] if c.source.root_dir]
    bars = _FileBars()
    with bars.bars:
        reports = download_tasks(cards, _data_root(root), progress=bars, workers=workers)
    for r in reports:
        colour = "green" if r.ok else ("yellow" if r.status == "manual" else "red")
        stdout.print(f"[{colour}]{escape(f'{r.task:<11} {r.status:<10}')}[/] {escape(r.message)}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@data_app.command("verify", epilog="Example: clrbench data verify --tasks all --root ~/data")
@_guard
def data_verify(
    tasks: Annotated[str, typer.Option(help="all, or a comma list of task names, card files or card folders.")] = "all",
    root: Annotated[Path | None, typer.Option(help="Data root (default: $CLRBENCH_DATA).")] = None,
    md5: Annotated[bool, typer.Option(help="Check archive md5 sums where known (slow for big files).")] = True,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of cards (default: shipped).")] = None,
    source: Annotated[str, typer.Option(help=(
        "files (under --root) or hf (the cards' hub copies, from the Hugging Face cache)."))] = "files",
) -> None:
    """A table per dataset: files present / missing, classes, split sizes vs the card; exit 1 if anything differs."""
    from rich.table import Table

    from clrbench.data.fetch import verify_tasks
    from clrbench.data.user_cards import select_cards

    if source == "hf":
        reports = verify_tasks([c for c, _ in select_cards(tasks, tasks_dir)], None, source="hf")
    else:
        cards = [c for c in [c for c, _ in select_cards(tasks, tasks_dir)] if c.source.root_dir]
        reports = verify_tasks(cards, _data_root(root), check_md5=md5)
    t = Table(title="clrbench data verify")
    for col in ("task", "status", "classes", "train", "val", "test", "differences"):
        t.add_column(col, overflow="fold")
    for r in reports:
        sizes = [f"{r.sizes.get(s, '-')}/{r.expected_sizes.get(s, '-')}" for s in ("train", "val", "test")]
        classes = f"{'-' if r.num_classes is None else r.num_classes}/{r.expected_classes}"  # None: not read
        colour = "green" if r.status == "ok" else ("yellow" if r.ok else "red")
        t.add_row(
            escape(r.task), f"[{colour}]{r.status}[/]", classes, *sizes, escape(" ".join(r.diff + r.notes) or "-")
        )
    stdout.print(t)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)

"""`clrbench probe` and `clrbench leaderboard`: the linear probe on any features, and the boards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clrbench.cli.common import _guard, app, console, fail, stdout


@app.command(
    epilog="The npz holds train_x, train_y, val_x, val_y, test_x, test_y (y: integer labels, or 0/1 columns for map11)."
)
@_guard
def probe(
    features: Annotated[Path, typer.Argument(help="An .npz of features from anywhere.")],
    metric: Annotated[str | None, typer.Option(help=(
        "top1, mean_per_class or map11 (default: from the labels)."))] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a summary.")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Run the Kornblith linear probe (45-point lambda grid, L-BFGS) on precomputed features."""
    import json

    from clrbench.device import pick_device
    from clrbench.eval.probe_file import probe_npz

    pick_device(device)  # a device this machine lacks is one sentence, before any work
    res = probe_npz(features, metric=metric, device=device)
    if json_:
        stdout.print_json(json.dumps(res.to_json()))
    else:
        stdout.print(f"{res.metric} on test: [bold]{res.test:.2f}[/]  (lambda {res.best_lambda:.3g} chosen on val, "
                  f"{res.n_train}/{res.n_val}/{res.n_test} train/val/test, {res.seconds:.1f} s)")


# ----------------------------------------------------------------------------- leaderboard


@app.command(
    epilog="Examples:\n\n  clrbench leaderboard\n\n  clrbench leaderboard --format md > board.md\n\n"
    "  clrbench leaderboard --tasks all --format html > board.html\n\n"
    "  clrbench leaderboard --baseline random-resnet18-w0.25-cifar-s0 --plot board.png\n\n"
    "  clrbench leaderboard --tasks all --baseline 'SimCLR R50 (' --plot board.png"
)
@_guard
def leaderboard(
    results: Annotated[Path, typer.Option(help="Results folder holding records/.")] = Path("results"),
    format_: Annotated[str, typer.Option("--format", help=(
        "table, md, csv, json, or html (one self-contained page: sortable boards and their plots)."))] = "table",
    baseline: Annotated[str | None, typer.Option(help=(
        "A row (checkpoint id or published label, or "
        "a unique prefix) to show deltas and significance against."))] = None,
    protocol: Annotated[str | None, typer.Option(help=(
        "Only these protocols' tables (comma list, e.g. linear,knn,fewshot-5)."))] = None,
    tasks: Annotated[str | None, typer.Option(help=(
        "Columns: all (the 12 Kornblith tasks), quick, or a comma list; default: the tasks recorded."))] = None,
    plot: Annotated[Path | None, typer.Option(help=(
        "Also write a grouped bar chart PNG here (and PLOT-curve.png when a run has several checkpoints)."))] = None,
    include_limited: Annotated[bool, typer.Option(help=(
        "Also show the records of --limit smoke runs, in their own tables."))] = False,
) -> None:
    """Show the records as one table per protocol, beside the published numbers, and score-vs-epoch curves."""
    show_board(results, protocol, format_, baseline, plot, None, tasks, include_limited)


def _columns(tasks: str | None) -> list[str] | None:
    from clrbench.data.cards import load_cards, select_tasks, task_order

    if tasks is None:
        return None
    cards = load_cards()
    return task_order([c.name for c in select_tasks(tasks, cards)], cards)


def show_board(results: Path, protocol: str | None, fmt: str, baseline: str | None, plot: Path | None,
                only: list[str] | None, tasks: str | None = None, include_limited: bool = False) -> None:
    from clrbench.leaderboard import board as lb
    from clrbench.leaderboard import render

    if fmt not in ("table", "md", "csv", "json", "html"):
        fail(f"--format must be table, md, csv, json or html, not {fmt!r}.")
    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot writes a PNG; give it a .png name, not {plot}.")
    boards = lb.board_for_results(results, protocol=protocol, baseline=baseline, checkpoints=only,
                                  tasks=_columns(tasks), include_limited=include_limited)
    if not boards:
        from clrbench.cli.notices import records_elsewhere

        fail(*records_elsewhere(results, protocol))
    if fmt == "html":
        from clrbench.cli.sinks import html_page

        typer.echo(html_page(boards, results, only, protocol), nl=False)
        return
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
            console.print(f"Plot written to {target}.", markup=False)
    if fmt in ("table", "md") or plot is not None:
        show_curves(results, only, protocol, fmt if fmt in ("table", "md") else None, plot)


def show_curves(results: Path, only: list[str] | None, protocol: str | None = None, fmt: str | None = "table",
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
        console.print(f"Curve plot written to {target}.", markup=False)

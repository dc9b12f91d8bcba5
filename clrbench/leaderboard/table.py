"""The board in a terminal: one compact table where it fits, never more than needed.

Twelve tasks beside the published rows must read at 120 columns in one table and at 80 in at
most two blocks. So columns are headed by the field's abbreviations (Food, C10, ... Flwr),
labels are shortened with an ellipsis in the middle (the tail keeps the weights hash) or, for
published rows, with a ``[n]`` pointing at their source, and a legend under the table spells
out every abbreviation and alias. A delta against the baseline stays in its value's cell: on
the same line where the width allows, under the value where it does not. The caption and
legend are printed as one paragraph at the terminal's width, not squeezed under the table.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

    from clrbench.leaderboard.board import Board, Cell

# The field's usual short names of the twelve Kornblith et al. 2019 datasets.
ABBREV = {"food101": "Food", "cifar10": "C10", "cifar100": "C100", "birdsnap": "Birds", "sun397": "SUN",
          "cars": "Cars", "aircraft": "Aircr", "voc2007": "VOC", "dtd": "DTD", "pets": "Pets",
          "caltech101": "Calt", "flowers102": "Flwr"}
METRIC_MARK = {"mean_per_class": "mpc", "map11": "mAP"}
MARK_MEANING = {"mpc": "mean per-class accuracy", "mAP": "11-point mAP"}
ELLIPSIS = "…"
_CITED = re.compile(r"^(.*?) \(([^()]+)\)$")  # "SimCLR R50-4x (Chen et al. 2020, Table 8)"


def middle_ellipsis(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by an ellipsis in the middle (the end is kept a
    little longer: it holds the weights hash)."""
    if len(text) <= width:
        return text
    keep = max(width - 1, 2)
    tail = (keep + 1) // 2
    return text[: keep - tail] + ELLIPSIS + text[-tail:]


def header(task: str) -> str:
    """The column header of a task: its abbreviation, or its name cut to 8 characters."""
    return ABBREV.get(task) or middle_ellipsis(task, 8)


def short_labels(board: Board, width: int) -> tuple[dict[str, str], list[str]]:
    """Row label -> the label shown, and the legend lines for what was shortened.

    Published labels lose their citation to a ``[n]`` numbered in the legend; any label still
    longer than ``width`` gets a middle ellipsis and a legend line giving it in full.
    """
    sources: dict[str, int] = {}
    out: dict[str, str] = {}
    legend: list[str] = []
    for row in board.rows:
        label = row.label
        m = _CITED.match(label) if row.kind == "published" else None
        if m:
            n = sources.setdefault(m.group(2), len(sources) + 1)
            label = f"{m.group(1)} [{n}]"
        short = middle_ellipsis(label, width)
        if short in out.values():  # two labels cut alike: keep the second whole
            short = label
        out[row.label] = short
        if short != label:
            legend.append(f"{short} = {label}")
    if sources:
        legend.insert(0, "; ".join(f"[{n}] {src}" for src, n in sources.items()))
    return out, legend


def _value(cell: Cell) -> str:
    if cell.value is not None:
        return f"{cell.value:.1f}"
    return cell.status if cell.status in ("failed", "diverged") else "-"


def _cell(cell: Cell, stacked: bool) -> Any:
    from rich.text import Text

    if cell.status in ("failed", "diverged"):
        return Text(cell.status, style="bold red")
    text = Text(_value(cell), style="bold green" if cell.best else "")
    if cell.delta is not None:
        style = ("green" if cell.delta > 0 else "red") if cell.significant else "dim"
        delta = f"{cell.delta:+.1f}" + ("*" if cell.significant else "")
        text.append(("\n" if stacked else " ") + delta, style=style)
    return text


def _table(board: Board, tasks: list[str], labels: dict[str, str], totals: bool, stacked: bool,
           title: str | None) -> Any:
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else escape(title),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        header_style="bold",
        title_justify="left",
    )
    table.add_column("model", no_wrap=True)
    metric = {c.task: c.metric for c in board.columns}
    for t in tasks:
        mark = METRIC_MARK.get(metric.get(t) or "")
        table.add_column(escape(header(t)) + (f"\n{mark}" if mark else ""), justify="right", no_wrap=True)
    if totals:
        table.add_column("mean", justify="right", no_wrap=True)
        table.add_column("rank", justify="right", no_wrap=True)
    sectioned = False
    for row in board.rows:
        if row.kind == "published" and not sectioned and table.row_count:
            table.add_section()
            sectioned = True
        style = "dim italic" if row.kind == "published" else ("bold cyan" if row.label == board.baseline else "")
        cells = [Text(labels[row.label], style=style), *(_cell(row.cells[t], stacked) for t in tasks)]
        if totals:
            cells.append(
                Text("-" if row.mean is None else f"{row.mean:.1f}", style="bold green" if row.best_mean else "")
            )
            cells.append(Text("-" if row.mean_rank is None else f"{row.mean_rank:.2f}",
                              style="bold green" if row.best_rank else ""))
        table.add_row(*cells, style="dim" if row.kind == "published" else None)
    return table


def _width(table: Any) -> int:
    from rich.console import Console

    console = Console(width=10_000, color_system=None, record=True, file=io.StringIO())  # prints nothing
    console.print(table)
    return max((len(line.rstrip()) for line in console.export_text().splitlines()), default=0)



def _chunks(tasks: list[str], n: int) -> list[list[str]]:
    size = -(-len(tasks) // n)
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def board_blocks(board: Board, width: int) -> list[RenderableType]:
    """The board as the fewest tables that fit ``width`` columns, then its caption and legend.

    Tries one block with deltas beside values, one with deltas under them, then two blocks,
    and so on, each with labels cut to 32, 26, 20 or 16 characters; mean and rank go in the
    last block.
    """
    from rich.text import Text

    tasks = list(board.tasks)
    title = f"clrbench leaderboard: {board.protocol}"
    tables: list[Any] = []
    layouts = [(n, stacked, cap) for n in range(1, max(len(tasks), 1) + 1) for stacked in (False, True)
               for cap in (32, 26, 20, 16)]
    for n, stacked, cap in layouts:  # fewest blocks first, then deltas inline, then longest labels
        labels, legend = short_labels(board, cap)
        chunks = _chunks(tasks, n) if tasks else [[]]
        tables = [_table(board, c, labels, i == len(chunks) - 1, stacked, title if i == 0 else None)
                  for i, c in enumerate(chunks)]
        if all(_width(t) <= width for t in tables):
            break
    used = [t for t in board.tasks if t in ABBREV or len(t) > 8]
    heads = ", ".join(f"{header(t)} = {t}" for t in used)
    marks = sorted({METRIC_MARK[c.metric] for c in board.columns if c.metric in METRIC_MARK})
    lines = list(board.notes)
    parts = ([heads] if heads else []) + [f"{m} = {MARK_MEANING[m]}" for m in marks]
    if parts:
        lines.append("columns: " + "; ".join(parts) + ".")
    if legend:
        lines.append("rows: " + "; ".join(legend) + ".")
    lines += [
        f"{labels.get(r.label, r.label)} is also: {', '.join(r.aliases)} (same weights)."
        for r in board.rows
        if r.aliases
    ]
    return [*tables, Text("\n".join(lines), style="dim")]

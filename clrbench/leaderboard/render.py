"""Renderers of a leaderboard :class:`~clrbench.leaderboard.board.Board`: rich table, Markdown, CSV, JSON, PNG.

Every decision (best cells, ranks, deltas, significance, caption) is already in the board;
these functions only format it, so each output shows the same numbers. rich and matplotlib
are imported inside the functions that need them: building a board needs neither.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from clrbench.leaderboard.board import Board, Cell

MISSING = "-"


def value_text(cell: Cell) -> str:
    """The cell's value with one decimal (as the papers print), or its status."""
    if cell.value is not None:
        return f"{cell.value:.1f}"
    return cell.status if cell.status in ("failed", "diverged") else MISSING


def delta_text(cell: Cell) -> str:
    """``+1.2*`` style: signed delta vs the baseline, ``*`` when significant; '' without one."""
    if cell.delta is None:
        return ""
    return f"{cell.delta:+.1f}" + ("*" if cell.significant else "")


def _rank_text(rank: float | None) -> str:
    return MISSING if rank is None else f"{rank:.2f}"


def _mean_text(mean: float | None) -> str:
    return MISSING if mean is None else f"{mean:.1f}"


def render_rich(board: Board, tasks: list[str] | None = None, totals: bool = True,
                caption: bool = True, label_width: int | None = None) -> Table:
    """A rich Table: best per column in bold green, failed cells in red, deltas beside values.

    Published rows follow the checkpoints after a separator, dimmed. Labels are rich
    ``Text``, so brackets in a label are never read as markup. ``tasks`` (default: all) and
    ``totals`` (mean and rank columns) select the columns of one block of
    :func:`render_rich_blocks`.
    """
    from rich.table import Table
    from rich.text import Text

    tasks = list(board.tasks) if tasks is None else tasks
    from rich.markup import escape

    table = Table(
        title=escape(f"clrbench leaderboard: {board.protocol}"),
        caption="\n".join(board.notes) if caption else None,
        caption_justify="left",
        header_style="bold",
    )
    # Numbers never wrap; long model labels fold instead. Non-top-1 metrics are marked under
    # the task name.
    table.add_column("model", overflow="fold", min_width=14, max_width=label_width)
    short = {"mean_per_class": "mpc", "map11": "mAP"}
    for c in board.columns:
        if c.task in tasks:
            head = c.task if c.metric in (None, "top1") else f"{c.task}\n{short.get(c.metric, c.metric)}"
            table.add_column(head, justify="right", no_wrap=True, overflow="ellipsis", min_width=4)
    if totals:
        table.add_column("mean", justify="right", no_wrap=True, min_width=4)
        table.add_column("rank", justify="right", no_wrap=True, min_width=4)
    sectioned = False
    for row in board.rows:
        if row.kind == "published" and not sectioned and table.row_count:
            table.add_section()
            sectioned = True
        label_style = "dim italic" if row.kind == "published" else ("bold cyan" if row.label == board.baseline else "")
        cells = [Text(row.label, style=label_style)]
        cells.extend(_rich_cell(row.cells[t]) for t in tasks)
        if totals:
            cells.append(Text(_mean_text(row.mean), style="bold green" if row.best_mean else ""))
            cells.append(Text(_rank_text(row.mean_rank), style="bold green" if row.best_rank else ""))
        table.add_row(*cells, style="dim" if row.kind == "published" else None)
    return table


def render_rich_blocks(board: Board, width: int) -> list[Any]:
    """The board as the fewest compact tables that fit ``width`` columns, then its caption and
    legend (:func:`clrbench.leaderboard.table.board_blocks`)."""
    from clrbench.leaderboard.table import board_blocks

    return board_blocks(board, width)


def _rich_cell(cell: Cell) -> Any:
    from rich.text import Text

    if cell.status in ("failed", "diverged"):
        return Text(cell.status, style="bold red")
    text = Text(value_text(cell), style="bold green" if cell.best else "")
    if cell.delta is not None:
        style = ("green" if cell.delta > 0 else "red") if cell.significant else "dim"
        text.append(f" {delta_text(cell)}", style=style)
    return text


def _plain_cell(cell: Cell, bold_best: bool) -> str:
    text = value_text(cell)
    if bold_best and cell.best:
        text = f"**{text}**"
    return f"{text} ({delta_text(cell)})" if cell.delta is not None else text


def to_markdown(board: Board) -> str:
    """A Markdown table (best in bold, deltas in brackets), then the caption as a list."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    head = ["model", *board.tasks, "mean", "avg rank"]
    lines = [f"### clrbench leaderboard: {board.protocol}", "",
             "| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in board.rows:
        label = esc(row.label) if row.kind == "record" else f"*{esc(row.label)}*"
        cells = [_plain_cell(row.cells[t], bold_best=True) for t in board.tasks]
        mean = _mean_text(row.mean)
        rank = _rank_text(row.mean_rank)
        cells += [f"**{mean}**" if row.best_mean else mean, f"**{rank}**" if row.best_rank else rank]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    lines.append("")
    lines.extend(f"- {esc(n)}" for n in board.notes)
    return "\n".join(lines) + "\n"


def _csv_num(x: float | None) -> str:
    return "" if x is None else repr(round(x, 4))


def _csv_p(p: float | None) -> str:
    # p-values go down to 1/(n_permutations + 1): rounding to 4 decimals would print 0.0.
    return "" if p is None else f"{p:.3g}"


def to_csv(board: Board) -> str:
    """A wide CSV: one line per row; failed cells say ``failed``; with a baseline, delta and p columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["protocol", "model", "kind", *board.tasks, "mean", "avg_rank"]
    if board.baseline is not None:
        head += [f"{t}_delta" for t in board.tasks] + [f"{t}_p" for t in board.tasks]
    w.writerow(head)
    for row in board.rows:
        cells = [row.cells[t] for t in board.tasks]
        line = [board.protocol, row.label, row.kind]
        line += [_csv_num(c.value) if c.value is not None else ("" if c.status == "missing" else c.status)
                 for c in cells]
        line += [_csv_num(row.mean), _csv_num(row.mean_rank)]
        if board.baseline is not None:
            line += [_csv_num(c.delta) for c in cells] + [_csv_p(c.p_value) for c in cells]
        w.writerow(line)
    return buf.getvalue()


def to_json(board: Board) -> str:
    """The whole board (columns, rows with every cell, baseline, caption) as JSON."""
    data = asdict(board)
    data["tasks"] = board.tasks
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def plot(board: Board, path: Path | str) -> Path:
    """The board as a PNG heatmap (models x tasks, every value printed), written atomically;
    see :mod:`clrbench.leaderboard.heatmap`.

    Returns:
        The path written.
    """
    from clrbench.leaderboard.heatmap import write_heatmap

    return write_heatmap(board, path)

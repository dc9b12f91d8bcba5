"""The board as a picture that reads: a heatmap of models x tasks with every value printed.

A grouped bar chart of twelve tasks x eight rows is 96 bars nobody can read (3828 x 534
pixels); a grid of numbers coloured by value keeps each row on one line and each task in one
column, as the table does. Rows and columns use the terminal table's short labels and
abbreviations (:mod:`clrbench.leaderboard.table`), spelled out in the footnote. matplotlib is
driven through its Agg canvas (no pyplot, no global backend switch); the PNG is written
atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clrbench.atomic import write_bytes
from clrbench.leaderboard.table import ABBREV, METRIC_MARK, header, short_labels

if TYPE_CHECKING:
    from clrbench.leaderboard.board import Board, Cell


def _text(cell: Cell) -> str:
    if cell.value is None:
        return cell.status if cell.status in ("failed", "diverged") else "-"
    delta = "" if cell.delta is None else f"\n{cell.delta:+.1f}" + ("*" if cell.significant else "")
    return f"{cell.value:.1f}{delta}"


def heatmap_png(board: Board) -> bytes:
    """PNG bytes of the board: one row per model, one column per task plus the mean."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rows, tasks = list(board.rows), list(board.tasks)
    labels, legend = short_labels(board, 32)
    metric = {c.task: METRIC_MARK.get(c.metric or "") for c in board.columns}
    heads = [header(t) + (f"\n{metric[t]}" if metric.get(t) else "") for t in tasks] + ["mean"]
    grid = [[row.cells[t] for t in tasks] for row in rows]
    values = [[math.nan if c.value is None else c.value for c in line] + [math.nan if r.mean is None else r.mean]
              for line, r in zip(grid, rows, strict=True)]
    label_in = 0.075 * max([len(labels[r.label]) for r in rows] + [8])
    cell_w, cell_h = 0.62, 0.36 if board.baseline is None else 0.5
    fig_w = max(6.0, label_in + cell_w * len(heads) + 0.6)
    notes = _footnote(board, tasks, legend, int(fig_w * 19))
    fig_h = 1.0 + cell_h * max(len(rows), 1) + 0.16 * len(notes)
    fig = Figure(figsize=(fig_w, fig_h), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = _cmap()
    norm = Normalize(0, 100)
    ax.imshow(values or [[math.nan]], cmap=cmap, norm=norm, aspect="auto")
    for i, row in enumerate(rows):
        cells = [*grid[i], None]
        for j, cell in enumerate(cells):
            v = values[i][j]
            text = _text(cell) if cell is not None else ("-" if row.mean is None else f"{row.mean:.1f}")
            dark = not math.isnan(v) and sum(cmap(norm(v))[:3]) < 1.5
            bold = (cell.best if cell is not None else row.best_mean)
            red = cell is not None and cell.status in ("failed", "diverged")
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5 if cell_h > 0.4 else 8,
                    color="red" if red else ("white" if dark else "black"), fontweight="bold" if bold else "normal")
    ax.set_xticks(range(len(heads)), heads, fontsize=8.5)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), [labels[r.label] for r in rows], fontsize=8.5)
    for tick, row in zip(ax.get_yticklabels(), rows, strict=True):
        if row.kind == "published":
            tick.set_fontstyle("italic")
            tick.set_color("#444444")
    n_rec = sum(r.kind == "record" for r in rows)
    if 0 < n_rec < len(rows):  # checkpoints above, published rows below the line
        ax.axhline(n_rec - 0.5, color="white", linewidth=3)
    ax.axvline(len(tasks) - 0.5, color="white", linewidth=3)  # the mean is not a task
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"clrbench leaderboard: {board.protocol} (test metric, %)", fontsize=10, loc="left")
    if notes:
        fig.text(0.01, 0.005, "\n".join(notes), fontsize=6.5, ha="left", va="bottom", color="#333333")
        engine = fig.get_layout_engine()  # constrained layout (set above): keep the notes' strip free
        if engine is not None:
            engine.set(rect=(0, 0.16 * len(notes) / fig_h, 1, 1 - 0.16 * len(notes) / fig_h))  # type: ignore[call-arg]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    return buf.getvalue()


def _cmap() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="#dddddd")  # missing and failed cells: grey


def _footnote(board: Board, tasks: list[str], legend: list[str], chars: int) -> list[str]:
    heads = ", ".join(f"{header(t)} {t}" for t in tasks if t in ABBREV)
    lines = [f"columns: {heads}"] if heads else []
    lines += legend[:4]
    if board.baseline is not None:
        lines.append(f"second line: difference to {board.baseline}; * = significant (paired permutation test)")
    return [line if len(line) <= chars else line[:chars - 3] + "..." for line in lines]


def write_heatmap(board: Board, path: Path | str) -> Path:
    """Write :func:`heatmap_png` of ``board`` to ``path`` atomically; returns the path."""
    out = Path(path)
    write_bytes(out, heatmap_png(board))
    return out

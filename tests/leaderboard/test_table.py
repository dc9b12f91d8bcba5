"""The board at 80, 120 and 200 columns: one table (or two blocks) that never wraps a label,
abbreviated headers, middle-ellipsis labels with a legend, deltas in their cells; the heatmap."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console

from clrbench.leaderboard import board as lb
from clrbench.leaderboard import render
from clrbench.leaderboard.heatmap import heatmap_png
from clrbench.leaderboard.reference import TRANSFER_TASKS, load_references
from clrbench.leaderboard.table import middle_ellipsis
from clrbench.records import Record

LONG = "quickstart-step_0000230-a1482530"


def _rec(cid: str, task: str, value: float, n: int = 100) -> Record:
    right = int(value / 100 * n)
    return Record(cid, task, "linear", "top1", "ok", value, 0.5, 1, 1, {"path": cid}, {}, [],
                  {"y": [1] * n, "pred": [1] * right + [0] * (n - right)}, {}, {}, "s", {}, {})


def _board(baseline: str | None = None) -> lb.Board:
    rng = random.Random(0)
    recs = [
        _rec(cid, t, round(base + 30 * rng.random(), 1))
        for cid, base in ((LONG, 30), ("random-resnet18-w0.25-cifar-s0", 20))
        for t in TRANSFER_TASKS
    ]
    return lb.build_board(recs, load_references(), "linear", baseline)


def _print(board: lb.Board, width: int) -> tuple[list[object], str]:
    blocks = render.render_rich_blocks(board, width)
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    for b in blocks:
        console.print(b)
    return [b for b in blocks if hasattr(b, "columns")], console.export_text()


def test_middle_ellipsis_keeps_both_ends() -> None:
    assert middle_ellipsis(LONG, 20) == "quickstar…0-a1482530" and len(middle_ellipsis(LONG, 20)) == 20
    assert middle_ellipsis("short", 20) == "short"


@pytest.mark.parametrize(("width", "most_blocks"), [(80, 2), (120, 1)])
def test_twelve_tasks_with_published_rows_fit(width: int, most_blocks: int) -> None:
    tables, text = _print(_board(), width)
    assert len(tables) <= most_blocks
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    for head in ("Food", "C10", "C100", "Birds", "SUN", "Cars", "Aircr", "VOC", "DTD", "Pets", "Calt", "Flwr"):
        assert head in text
    # One line per row: no label wraps mid-token; the cut one is spelled out in the legend.
    assert sum("a1482530" in line and "=" not in line for line in lines) == len(tables)
    joined = " ".join(lines)
    assert "[1] Chen et al. 2020, Table 8" in joined
    if "quickstar…" in text or "…a1482530" in text:
        assert f"= {LONG}" in joined
    assert "SimCLR R50-4x [1]" in text


def test_baseline_at_200_columns_is_one_table_with_deltas_in_the_cells() -> None:
    tables, text = _print(_board("random"), 200)
    assert len(tables) == 1 and max(len(line) for line in text.splitlines()) <= 200
    row = next(line for line in text.splitlines() if line.startswith("quickstart"))
    assert "*" in row and ("+" in row or "-" in row)  # value and delta side by side


def test_baseline_at_80_columns_stacks_deltas_under_values() -> None:
    tables, text = _print(_board("random"), 80)
    assert len(tables) <= 2 and max(len(line) for line in text.splitlines()) <= 80


def test_heatmap_is_a_readable_size() -> None:
    from PIL import Image

    png = heatmap_png(_board("random"))
    img = Image.open(io.BytesIO(png))
    w, h = img.size
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert 900 <= w <= 2000 and 400 <= h <= 1400 and w / h < 3.5  # was 3828 x 534

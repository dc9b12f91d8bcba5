"""Regenerate the README's 12-task board capture and heatmap from synthetic records.

The two encoder rows are made up (fixed seed, plausible values for a small CPU model); the
published rows are the shipped reference tables. Run from the repository root:

    python docs/board/example.py            # prints the board at 80 columns, writes docs/board/board.png
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from clrbench.data.cards import load_cards
from clrbench.leaderboard import render
from clrbench.leaderboard.board import board_for_results
from clrbench.leaderboard.reference import TRANSFER_TASKS
from clrbench.records import Record, write_record


def synthetic_results(folder: Path) -> None:
    cards, rng = load_cards(), random.Random(0)
    for cid, base in (("quickstart-step_0000230-a1482530", 30), ("random-resnet18-w0.25-cifar-s0", 20)):
        for t in TRANSFER_TASKS:
            c = cards[t]
            write_record(folder, Record(cid, t, "linear", c.metric, "ok", round(base + 30 * rng.random(), 1), 0.5,
                                        c.version, 1, {"path": cid}, {}, [], {}, {}, {}, "s", {}, {}))


def main(width: int = 80, png: Path = Path("docs/board/board.png")) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_results(Path(tmp))
        board = board_for_results(tmp, protocol="linear")[0]
    console = Console(width=width, color_system=None)
    for block in render.render_rich_blocks(board, width):
        console.print(block)
    render.plot(board, png)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 80)

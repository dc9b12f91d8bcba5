"""Where results go besides the terminal: a Weights & Biases run (``eval --wandb``) and one
self-contained HTML page (``leaderboard --format html``). Thin: the library builds the boards,
:mod:`clrbench.leaderboard.wandb_sink` and :mod:`clrbench.leaderboard.html` shape them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from clrbench.cli.common import console


def check_wandb(project: str | None) -> None:
    """Before any work: --wandb without the package is one sentence (exit 2)."""
    if project:
        from clrbench.leaderboard.wandb_sink import require_wandb

        require_wandb()


def log_wandb(project: str | None, results: Path, ids: list[str], config: dict[str, Any]) -> None:
    """One wandb run with the boards and records of this evaluation's checkpoints."""
    if not project:
        return
    from clrbench.leaderboard.board import board_for_results
    from clrbench.leaderboard.merge import lookup, merge_identities
    from clrbench.leaderboard.wandb_sink import log_eval
    from clrbench.records import read_records
    from clrbench.weights.identity import read_aliases

    boards = board_for_results(results, checkpoints=ids)
    records, aliases = merge_identities(read_records(results), read_aliases(results))
    wanted = {lookup(i, aliases) for i in ids}
    where = log_eval(project, boards, [r for r in records if r.checkpoint_id in wanted], config=config)
    console.print(f"Logged to Weights & Biases: {where}", markup=False, highlight=False)


def html_page(boards: list[Any], results: Path, only: list[str] | None, protocol: str | None) -> str:
    """The boards and any score-vs-epoch curves as one HTML page."""
    from clrbench.leaderboard import curves as lc
    from clrbench.leaderboard.html import board_page
    from clrbench.records import read_records

    records = [r for r in read_records(results) if only is None or r.checkpoint_id in only]
    found = lc.build_curves(records, protocol)
    pngs: list[bytes] = []
    if found:
        with tempfile.TemporaryDirectory(prefix="clrbench-html-") as tmp:
            pngs.append(lc.plot_curves(found, Path(tmp) / "curve.png").read_bytes())
    return board_page(boards, pngs)

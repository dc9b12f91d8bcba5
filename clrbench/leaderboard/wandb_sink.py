"""Send an evaluation's results to Weights & Biases: one run per ``clrbench eval --wandb PROJECT``.

The run holds the board of each protocol as a ``wandb.Table`` (the rows and columns the
terminal shows, full labels), one table of every record (checkpoint, task, protocol, metric,
value, stderr, status, chosen hyper-parameters) and each value in the run summary under
``PROTOCOL/TASK/CHECKPOINT``. wandb is optional: without it, :func:`require_wandb` says in
one sentence how to install it, before any evaluation starts. ``WANDB_MODE=offline`` (or
``mode="offline"``) logs to ``./wandb/`` with no network; ``wandb sync`` uploads it later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clrbench.errors import UserError

if TYPE_CHECKING:
    from clrbench.leaderboard.board import Board
    from clrbench.records import Record


class WandbMissingError(UserError):
    """--wandb was asked for but the wandb package is not installed."""


def require_wandb() -> Any:
    """The wandb module, or one sentence saying how to get it."""
    try:
        import wandb
    except ImportError:
        raise WandbMissingError("--wandb needs the wandb package: pip install wandb "
                                "(or drop --wandb; the records are in RESULTS/records either way).") from None
    return wandb


def board_rows(board: Board) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of a board for a wandb.Table: values in percent, None where missing."""
    columns = ["model", "kind", *board.tasks, "mean", "avg_rank"]
    rows = [[r.label, r.kind, *(r.cells[t].value for t in board.tasks), r.mean, r.mean_rank] for r in board.rows]
    return columns, rows


def record_rows(records: Sequence[Record]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of every record for a wandb.Table."""
    columns = ["checkpoint", "task", "protocol", "metric", "value", "stderr", "status", "hparams", "error"]
    rows = [[r.checkpoint_id, r.task, r.protocol, r.metric, r.value, r.stderr, r.status,
             json.dumps(r.hparams, sort_keys=True), r.error or ""] for r in records]
    return columns, rows


def log_eval(project: str, boards: Sequence[Board], records: Sequence[Record], *, config: dict[str, Any] | None = None,
             mode: str | None = None, wandb: Any = None) -> str:
    """Log one evaluation as one wandb run; returns where it went (the run's URL or folder).

    Args:
        project: the wandb project.
        boards: the boards shown at the end of the evaluation (one per protocol).
        records: the records behind them.
        config: what was evaluated (tasks, protocols, checkpoints), stored as the run config.
        mode: ``online``, ``offline`` or ``disabled``; default: wandb's (``$WANDB_MODE``).
        wandb: the module (tests pass a stand-in); default: the installed one.
    """
    wb = wandb or require_wandb()
    # $WANDB_MODE read now: wandb's process-wide settings keep the mode of its first run.
    mode = mode or os.environ.get("WANDB_MODE") or None
    run = wb.init(project=project, job_type="eval", config=config or {}, mode=mode)
    try:
        logged: dict[str, Any] = {}
        for board in boards:
            cols, rows = board_rows(board)
            logged[f"board/{board.protocol}"] = wb.Table(columns=cols, data=rows)
        cols, rows = record_rows(records)
        logged["records"] = wb.Table(columns=cols, data=rows)
        run.log(logged)
        for r in records:
            if r.value is not None:
                run.summary[f"{r.protocol}/{r.task}/{r.checkpoint_id}"] = r.value
        where = getattr(run, "url", None) or getattr(run, "dir", None) or project
    finally:
        run.finish()
    return str(where)

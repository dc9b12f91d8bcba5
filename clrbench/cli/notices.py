"""Short answers the evaluation commands give outside the happy path: missing datasets,
``--tasks list``, and what records exist when a board is empty. Each prints plain text
(never rich markup: task names, paths and labels are user text)."""

from __future__ import annotations

import os
from pathlib import Path

from clrbench.cli.common import console, stdout


def skip_missing_data(tasks: str, data_root: str | None, tasks_dir: str | Path | None,
                      source: str = "files") -> tuple[str, list[str]]:
    """Leave out the selected tasks whose dataset is not on disk (and that ``source`` would not
    read from a hub copy instead), saying so in one block.

    Returns:
        (the task spec of the tasks that can run, or '' when none can; the names left out).
    """
    from clrbench.data.hub import resolve_source
    from clrbench.data.presence import DATA_ENV, missing_block, missing_tasks
    from clrbench.data.user_cards import select_cards

    chosen = select_cards(tasks, tasks_dir)
    root = Path(data_root) if data_root else None
    from_files = [c for c, _ in chosen if resolve_source(c, root, source) == "files"]
    missing = missing_tasks(from_files, data_root)
    if not missing:
        return tasks, []
    from_env = data_root is not None and data_root == os.environ.get(DATA_ENV)
    for line in missing_block(missing, data_root, len(chosen), from_env=from_env):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    gone = {m.task for m in missing}
    return ",".join(f or c.name for c, f in chosen if c.name not in gone), sorted(gone)


def print_task_list(tasks_dir: str | Path | None, data_root: str | None) -> None:
    """``--tasks list``: every task and group a ``--tasks`` value can name (as lm-eval's)."""
    from clrbench.data.cards import load_cards
    from clrbench.data.presence import installed

    cards = load_cards(tasks_dir)
    groups = sorted({g for c in cards.values() for g in c.groups})
    counts = {g: sum(g in c.groups for c in cards.values()) for g in groups}
    stdout.print("Groups: " + ", ".join(f"{g} ({n} task{'s' if n != 1 else ''})" for g, n in counts.items()),
                 markup=False, highlight=False)
    stdout.print("Tasks:", markup=False)
    for c in cards.values():
        have = installed(c, data_root)
        state = "generated offline" if have is None else ("installed" if have else "not installed")
        stdout.print(
            f"  {c.name:<11} {c.metric:<15} {state:<17} {' '.join(c.title.split())}", markup=False, highlight=False
        )


def records_elsewhere(results: Path, protocol: str | None) -> tuple[str, int]:
    """Why a board is empty, and the exit status: a --protocol no record has is a bad input (2),
    naming the protocols that do have records; no records at all is a missing result (1)."""
    from clrbench.records import read_records

    have = sorted({r.protocol for r in read_records(results, lenient=True)})
    if protocol is not None and have:
        return (f"no {protocol} records in {results}/records; protocols with records: {', '.join(have)} "
                f"(clrbench leaderboard --protocol {have[0]})."), 2
    return f"no records in {results}/records yet; run clrbench eval first.", 1

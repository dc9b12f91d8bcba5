"""The live job progress of `clrbench eval`: jobs queued / running / done / failed, per task, with the ETA.

It consumes the executor's events (:mod:`clrbench.eval.executor`), so it shows the same
thing for the local and the Ray executor, and for any job type whose ``key`` reads
(checkpoint_id, task, protocol, ...).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

STATES = ("queued", "running", "done", "failed")
_STYLE = {"queued": "dim", "running": "yellow", "done": "green", "failed": "bold red"}


def _parts(job: Any) -> tuple[str, str, str]:
    key = tuple(job.key)
    cid, task, protocol = ([*list(map(str, key)), "", "", ""])[:3]
    return cid, task, protocol


class JobProgress:
    """A rich Live view: an overall bar (done + failed of total, elapsed, ETA) above a table with
    one line per (task, protocol) counting its jobs in each state and the latest values.

    Use as a context manager; the object it yields is the ``on_event`` callback.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state: dict[int, tuple[tuple[str, str], str]] = {}  # id(job) -> ((task, protocol), state)
        self.values: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.progress = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=console)
        self.bar = self.progress.add_task("eval", total=0, info="")
        self.live = Live(get_renderable=self.render, console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> Any:
        self.live.start()
        return self.on_event

    def __exit__(self, *exc: Any) -> None:
        self.live.refresh()
        self.live.stop()
        if not self.console.is_terminal:
            self.console.line()  # a non-terminal Live leaves its last line open

    def on_event(self, ev: dict[str, Any]) -> None:
        """Record one executor event (called in the driver process)."""
        job, state = ev["job"], ev["state"]
        cid, task, protocol = _parts(job)
        trial = getattr(job, "options", {}).get("trial")
        if trial is not None:  # fine-tune trials share their final job's key
            protocol = f"{protocol} trials"
        if id(job) not in self.state:
            self.progress.update(self.bar, total=len(self.state) + 1)
        elif state == "queued":
            return  # queued again by a later phase: already counted
        self.state[id(job)] = ((task, protocol), state)
        if state in ("done", "failed"):
            value = getattr(ev["record"], "value", None)
            val = f"{value:.2f}" if value is not None else state if state == "failed" else "-"
            self.values[(task, protocol)].append(val)
            self.progress.advance(self.bar)
            err = ev.get("error") or getattr(ev["record"], "error", None)
            what = f"{protocol} {trial}" if trial is not None else protocol
            self.live.console.print(
                escape(f"  {cid:<32} {task:<12} {what:<15} {val}") + (f"  [red]{escape(str(err))}[/]" if err else ""),
                highlight=False,
            )
        counts = Counter(s for _, s in self.state.values())
        self.progress.update(self.bar, info=f"{counts['running']} running, {counts['failed']} failed")

    def render(self) -> RenderableType:
        """The bar and the per-task table, as they stand now."""
        per: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for where, state in self.state.values():
            per[where][state] += 1
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("task")
        table.add_column("protocol")
        for s in STATES:
            table.add_column(s, justify="right", style=_STYLE[s])
        table.add_column("latest", overflow="ellipsis", no_wrap=True, max_width=30)
        for (task, protocol), c in sorted(per.items()):
            latest = " ".join(self.values[(task, protocol)][-4:])
            table.add_row(escape(task), escape(protocol), *(str(c[s]) if c[s] else "" for s in STATES), escape(latest))
        return Group(self.progress.get_renderable(), table)

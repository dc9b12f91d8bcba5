"""What `clrbench study` prints: the plan and its cost, the trials still to run, live progress, the table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape

from clrbench.cli.common import console, stdout


def print_plan(plan: Any) -> None:

    n_trials, left = len(plan.trials), plan.trials_to_run()
    extra = len(plan.ctx.base_overrides) - len(plan.budget.overrides)
    sets = f" + {extra} --set override(s)" if extra else ""
    console.print(f"[bold]study {plan.study}[/]: {n_trials} trial{'s' * (n_trials != 1)} x {len(plan.tasks)} task(s) "
                  f"({', '.join(plan.tasks)}), budget {plan.budget.name} ({plan.budget.about}){sets}; "
                  f"{n_trials - len(left)} done, {len(left)} to run.", highlight=False)
    if not left:
        return
    costs = [plan.costs[t.key] for t in left if t.key in plan.costs]
    if costs:
        from clrbench.study.cost import ESTIMATE_SPREAD, TIMED_PASSES, format_range

        per = sum(c.total_s for c in costs) / len(costs)
        total = plan.estimate_s()
        trials = f"{len(left)} trial{'s' * (len(left) != 1)}"
        console.print(f"Estimate: {trials} x {format_range(per, per * ESTIMATE_SPREAD)} = "
                      f"{format_range(total, total * ESTIMATE_SPREAD)} (steps {min(c.steps for c in costs)}-"
                      f"{max(c.steps for c in costs)}; this machine's speed, the fastest of {TIMED_PASSES} timed "
                      "passes, so other load does not inflate it).", highlight=False, markup=False)


def print_trials(plan: Any) -> None:
    from rich.table import Table

    from clrbench.study.cost import format_range

    t = Table("trial", "overrides", "steps", "peak lr", "estimate", title=f"{plan.study}: the trials still to run")
    for trial in plan.trials_to_run():
        c = plan.costs.get(trial.key)
        t.add_row(
            escape(trial.key),
            escape(" ".join(trial.overrides)),
            str(c.steps) if c else "",
            f"{c.lr:.3g}" if c else "",
            format_range(*c.range_s) if c else "",
        )
    stdout.print(t)


def show_table(table: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    stdout.print(f"[bold]{escape(table.title)}[/]", highlight=False)
    t = Table(show_lines=False)
    for h in table.header:
        t.add_column(escape(h), justify="right" if h not in table.header[:1] else "left")
    best = max((c.value for row in table.rows for c in row if c.value is not None and c.status == "ok"), default=None)
    style = {"failed": "bold red", "diverged": "bold red", "missing": "dim"}
    for row in table.rows:
        t.add_row(*(Text(c.text, style="bold green" if best is not None and c.value == best
                         else style.get(c.status, "")) for c in row))
    stdout.print(t)
    stdout.print(table.caption, style="dim", highlight=False)


class TrialProgress:
    """A live bar of the study's jobs; one line per finished job."""

    def __init__(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn("[bold]study"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("study", total=total, info="")

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self.progress.start()

        def on_event(ev: dict[str, Any]) -> None:
            job, state = ev["job"], ev["state"]
            # Study jobs name their trial; the random-init baseline is a plain EvalJob.
            name = job.trial.key if hasattr(job, "trial") else "random init"
            layer = getattr(job, "series", "h")
            if state == "running":
                self.progress.update(self.task, info=escape(f"{name} / {job.task} / {layer}"))
            elif state in ("done", "failed"):
                rec = ev["record"]
                val = f"{rec.value:.2f}" if getattr(rec, "value", None) is not None else getattr(rec, "status", state)
                self.progress.console.print(
                    f"  {name:<24} {job.task:<10} {layer:<2} {val}", highlight=False, markup=False
                )
                self.progress.advance(self.task)

        return on_event

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

"""Score-vs-epoch curves: the records of one pretraining run's checkpoints, ordered by training step.

`clrbench eval --watch runs/NAME/` (or a glob of a run's ``step_*.pt``) stamps each record's
``checkpoint`` with the run name, step and epoch. :func:`build_curves` groups those records
into one curve per (protocol, run) with at least two steps (pure, tested on fixture
records); the renderers print it as a table (epoch x task) and plot it as lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clrbench.atomic import write_bytes
from clrbench.data.cards import task_order
from clrbench.records import Record

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class CurvePoint:
    """One checkpoint of the run: its step, epoch, id and the value per task (None: failed/missing)."""

    step: int
    epoch: float | None
    checkpoint_id: str
    values: dict[str, float | None]

    @property
    def mean(self) -> float | None:
        """Mean over the curve's tasks; None unless every task has a value."""
        vals = list(self.values.values())
        return None if not vals or any(v is None for v in vals) else sum(v for v in vals if v is not None) / len(vals)


@dataclass(frozen=True)
class Curve:
    """Test metric against training progress for one run under one protocol."""

    protocol: str
    run: str
    tasks: tuple[str, ...]
    points: tuple[CurvePoint, ...]  # by step


def build_curves(records: Sequence[Record], protocol: str | None = None, min_points: int = 2) -> list[Curve]:
    """Curves of every run whose records span at least ``min_points`` training steps.

    Records without ``checkpoint.run`` / ``checkpoint.step`` (random init, foreign weights,
    records written before the stamp existed) are not part of any curve. When two
    checkpoints of one run share a step, the one with more values wins.
    """
    groups: dict[tuple[str, str], dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        run, step = r.checkpoint.get("run"), r.checkpoint.get("step")
        if run is None or not isinstance(step, int) or (protocol is not None and r.protocol != protocol):
            continue
        groups[(r.protocol, str(run))][step].append(r)
    curves = []
    for (proto, run), by_step in sorted(groups.items()):
        tasks = tuple(task_order(sorted({r.task for recs in by_step.values() for r in recs})))
        points = [_point(step, recs, tasks) for step, recs in sorted(by_step.items())]
        if len(points) >= min_points:
            curves.append(Curve(proto, run, tasks, tuple(points)))
    return curves


def _point(step: int, recs: list[Record], tasks: tuple[str, ...]) -> CurvePoint:
    by_cid: dict[str, dict[str, Record]] = defaultdict(dict)
    for r in recs:
        by_cid[r.checkpoint_id][r.task] = r
    cid = max(sorted(by_cid), key=lambda c: sum(r.status == "ok" for r in by_cid[c].values()))
    got = by_cid[cid]
    epoch = next((r.checkpoint.get("epoch") for r in got.values() if r.checkpoint.get("epoch") is not None), None)
    values = {t: (got[t].value if t in got and got[t].status == "ok" else None) for t in tasks}
    return CurvePoint(step, None if epoch is None else float(epoch), cid, values)


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def curve_rich(curve: Curve) -> Table:
    """A rich table: one line per checkpoint (epoch, step), one column per task, and the mean."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"score vs epoch: {curve.run} ({curve.protocol})"), header_style="bold")
    for name in ("epoch", "step", *curve.tasks, "mean"):
        table.add_column(escape(name), justify="right", no_wrap=True)
    best = {t: max((v for p in curve.points if (v := p.values[t]) is not None), default=None) for t in curve.tasks}
    for p in curve.points:
        cells = [_num(p.epoch, ".2f"), str(p.step)]
        cells += [f"[bold green]{_num(v)}[/]" if v is not None and v == best[t] else _num(v)
                  for t, v in p.values.items()]
        table.add_row(*cells, _num(p.mean))
    return table


def curve_markdown(curve: Curve) -> str:
    """The same table in Markdown."""
    head = ["epoch", "step", *curve.tasks, "mean"]
    lines = [f"### score vs epoch: {curve.run} ({curve.protocol})", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---:"] * len(head)) + "|"]
    for p in curve.points:
        cells = [_num(p.epoch, ".2f"), str(p.step), *(_num(v) for v in p.values.values()), _num(p.mean)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: Sequence[Curve], path: Path | str) -> Path:
    """Lines of test metric against epoch (step when epochs are unknown), one per (run, task),
    one panel per protocol; written atomically as PNG (matplotlib Agg, no pyplot)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    protos = list(dict.fromkeys(c.protocol for c in curves))
    fig = Figure(figsize=(7.0 * max(len(protos), 1), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(protos), 1), squeeze=False)[0]
    for ax, proto in zip(axes, protos, strict=False):
        for c in (c for c in curves if c.protocol == proto):
            _lines(ax, c)
        ax.set_title(f"score vs epoch ({proto})")
        ax.set_ylabel("test metric (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    out = Path(path)
    write_bytes(out, buf.getvalue())
    return out


def _lines(ax: Any, curve: Curve) -> None:
    use_epoch = all(p.epoch is not None for p in curve.points)
    xs = [p.epoch if use_epoch else p.step for p in curve.points]
    ax.set_xlabel("epoch" if use_epoch else "step")
    for t in curve.tasks:
        ys = [float("nan") if p.values[t] is None else p.values[t] for p in curve.points]
        ax.plot(xs, ys, marker="o", label=f"{curve.run} / {t}")

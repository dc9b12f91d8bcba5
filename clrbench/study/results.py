"""A study's records -> one outcome per trial and layer -> the paper's tables (pure).

A trial's score is the mean of its probe metrics (percent) over the study's tasks. A trial
with any failed or diverged task keeps that status and no score, so the pictures show it as
failed instead of dropping it; a trial not run yet is ``missing``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clrbench.records import RecordError, read_record, record_path
from clrbench.study.grids import Trial

LAYER_NAMES = {"h": "h", "g": "g(h)"}


@dataclass(frozen=True)
class Outcome:
    """One trial on one feature layer, over all the study's tasks."""

    trial: Trial
    layer: str  # the job's series: feature layer h / g, or the protocol (label-efficiency study)
    status: str  # ok | failed | diverged | missing
    score: float | None  # mean probe metric over tasks, percent
    per_task: dict[str, float | None]
    error: str | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)  # steps, lr, loss, contrastive_acc
    stderr: float | None = None  # of the score: sqrt(sum of the tasks' squared stderr) / n


@dataclass(frozen=True)
class Baseline:
    """The random-init encoder of the same architecture on the same tasks (what pretraining adds to)."""

    label: str
    score: float
    stderr: float | None


@dataclass(frozen=True)
class Cell:
    """A table cell: a label, or a score with its status (for styling and hatching)."""

    text: str
    value: float | None = None
    status: str = "label"  # label | ok | failed | diverged | missing


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""


def _status(statuses: list[str]) -> str:
    for s in ("diverged", "failed", "missing"):
        if s in statuses:
            return s
    return "ok"


def collect(jobs: list[Any], results_dir: Path | str) -> list[Outcome]:
    """Read the record of every job and fold them into one outcome per (trial, series)."""
    groups: dict[tuple[str, str], list[tuple[Any, Any]]] = defaultdict(list)
    for job in jobs:
        groups[(job.trial.key, job.series)].append((job, _read(record_path(results_dir, *job.key))))
    return [_fold(members) for members in groups.values()]


def _read(path: Path) -> Any:
    try:
        return read_record(path) if path.is_file() else None
    except RecordError:
        return None


def _mean_stderr(records: list[Any]) -> tuple[float, float | None]:
    """Mean of the records' values and its standard error (tasks independent)."""
    errs = [r.stderr for r in records]
    se = math.sqrt(sum(e * e for e in errs)) / len(records) if None not in errs else None
    return statistics.fmean(r.value for r in records), se


def _fold(members: list[tuple[Any, Any]]) -> Outcome:
    trial, layer = members[0][0].trial, members[0][0].series
    recs = [r for _, r in members]
    per_task = {j.task: (r.value if r is not None and r.status == "ok" else None) for j, r in members}
    status = _status([r.status if r is not None else "missing" for r in recs])
    error = next((r.error for r in recs if r is not None and r.error), None)
    pretrain: dict[str, Any] = next(
        (r.tags.get("pretrain", {}) for r in recs if r is not None and r.status == "ok"), {}
    )
    if status != "ok":
        return Outcome(trial, layer, status, None, per_task, error, pretrain)
    score, se = _mean_stderr(recs)
    return Outcome(trial, layer, status, score, per_task, error, pretrain, se)


def collect_baseline(checkpoint_id: str, tasks: list[str], results_dir: Path | str) -> Baseline | None:
    """The random-init baseline's mean over the tasks, or None unless every task has an ok record."""
    recs = [_read(record_path(results_dir, checkpoint_id, t, "linear")) for t in tasks]
    if not recs or any(r is None or r.status != "ok" for r in recs):
        return None
    score, se = _mean_stderr(recs)
    return Baseline(checkpoint_id, score, se)


def score_cell(o: Outcome | None) -> Cell:
    if o is None:
        return Cell("", None, "missing")
    if o.status == "ok" and o.score is not None:
        return Cell(f"{o.score:.1f}", o.score, "ok")
    return Cell({"missing": "-", "diverged": "diverged"}.get(o.status, "failed"), None, o.status)


def _by(outcomes: list[Outcome], layer: str = "h") -> dict[str, Outcome]:
    return {o.trial.key: o for o in outcomes if o.layer == layer}


def augment_matrix(outcomes: list[Outcome], ops: list[str]) -> list[list[Outcome | None]]:
    """Rows = first op, columns = second op, diagonal = the op alone (S-v1 Fig. 5)."""
    by = {(o.trial.point["first"], o.trial.point["second"]): o for o in outcomes if o.layer == "h"}
    return [[by.get((a, b)) for b in ops] for a in ops]


def augment_table(outcomes: list[Outcome], ops: list[str]) -> Table:
    """Fig. 5 as a table, with the row mean as its last column (as the figure's)."""
    rows = []
    for a, row in zip(ops, augment_matrix(outcomes, ops), strict=True):
        vals = [o.score for o in row if o is not None and o.score is not None]
        mean = (
            Cell(f"{statistics.fmean(vals):.1f}", statistics.fmean(vals), "ok") if vals else Cell("-", None, "missing")
        )
        rows.append((Cell(a), *(score_cell(o) for o in row), mean))
    return Table("augment: probe accuracy (%), 1st op (rows) then 2nd op (columns), one branch only",
                 ("1st \\ 2nd", *ops, "mean"), tuple(rows),
                 "Diagonal: the op alone after the crop. S-v1 Fig. 5: crop + color stands out.")


def temperature_table(outcomes: list[Outcome]) -> Table:
    """S-v1 Table 5: l2 normalisation, tau, contrastive accuracy on the last step, probe accuracy."""
    rows = []
    for o in sorted(_by(outcomes).values(), key=lambda o: (not o.trial.point["l2"], o.trial.point["temperature"])):
        acc = o.pretrain.get("contrastive_acc")
        rows.append((Cell("yes" if o.trial.point["l2"] else "no"), Cell(f"{o.trial.point['temperature']:g}"),
                     Cell("" if acc is None else f"{100 * acc:.1f}"), score_cell(o)))
    return Table("temperature: NT-Xent tau with and without l2 normalisation",
                 ("l2 norm", "tau", "contrastive acc (%)", "probe (%)"), tuple(rows),
                 "S-v1 Table 5 (ImageNet, 100 epochs): 0.05 59.7, 0.1 64.4, 0.5 60.7, 1 58.0; raw 10 57.2, 100 57.0.")


def batch_size_table(outcomes: list[Outcome]) -> Table:
    """S-v1 Fig. 9 as a table: one row per batch size, one column per epoch count."""
    by = _by(outcomes)
    sizes = sorted({o.trial.point["batch_size"] for o in by.values()})
    epochs = sorted({o.trial.point["epochs"] for o in by.values()})
    rows = []
    for b in sizes:
        cells = [score_cell(by.get(f"b{b}-e{e:g}")) for e in epochs]
        rows.append((Cell(str(b)), *cells))
    return Table("batch-size: probe accuracy (%) by global batch and epochs",
                 ("batch", *(f"{e:g} ep" for e in epochs)), tuple(rows),
                 "S-v1 Fig. 9: bigger batches help, most when training is short.")


def head_table(outcomes: list[Outcome]) -> Table:
    """S-v1 Fig. 8 and sec. 4.2: probe accuracy on h and on g(h) per head and output dimension."""
    h, g = _by(outcomes, "h"), _by(outcomes, "g")
    order = sorted(h.values(), key=lambda o: (o.trial.point["head"], o.trial.point["dim"] or 0))
    rows = []
    for o in order:
        dim = o.trial.point["dim"]
        gh = score_cell(o) if o.trial.point["head"] == "none" else score_cell(g.get(o.trial.key))
        rows.append((Cell(o.trial.point["head"]), Cell("-" if dim is None else str(dim)), score_cell(o), gh))
    return Table("head: probe accuracy (%) before (h) and after (g(h)) the projection head",
                 ("head", "dim of z", "h", "g(h)"), tuple(rows),
                 "S-v1 Fig. 8: nonlinear > linear (+3%) > none (+10%); h beats g(h) by >10% (sec. 4.2).")


def label_table(outcomes: list[Outcome], points: dict[str, dict[str, Any]]) -> Table:
    """S-v2 Fig. 1 as a table: one row per method x label fraction, one column per encoder width,
    then the gain of the largest width over the smallest, beside S-v2's for its fine-tunes.

    ``points`` maps each protocol (the outcomes' series) to its {"method", "label_percent"}."""
    series = sorted({(points[o.layer]["method"], points[o.layer]["label_percent"], o.layer) for o in outcomes},
                    key=lambda c: ({"linear": 0, "finetune": 1, "distill": 2}[c[0]], c[1]))
    by = {(o.trial.key, o.layer): o for o in outcomes}
    trials = sorted({o.trial.key: o.trial for o in outcomes}.values(), key=lambda t: t.point["params"])
    rows = []
    for method, pct, proto in series:
        cells = [by.get((t.key, proto)) for t in trials]
        lo, hi = (c.score if c is not None else None for c in (cells[0], cells[-1]))
        gain = Cell(f"{hi - lo:+.1f}", hi - lo, "ok") if len(trials) > 1 and lo is not None and hi is not None \
            else Cell("")
        paper = SV2_GAIN.get(pct) if method == "finetune" else None
        rows.append((Cell(f"{_METHOD_NAMES[method]} {pct:g}%"), *(score_cell(c) for c in cells), gain,
                     Cell(f"+{paper:.1f}" if paper is not None else "")))
    header = ("labels used", *(f"w{t.point['width']:g} ({_params(t.point['params'])})" for t in trials),
              "gain", "S-v2 gain")
    return Table("label-efficiency: test metric (%) by method and label fraction (rows) and encoder width (columns)",
                 header, tuple(rows), _LABEL_CAPTION)


_METHOD_NAMES = {"linear": "linear", "finetune": "fine-tune", "distill": "distilled"}
#: S-v2 Table 1 (ImageNet, fine-tuned, top-1): R50 2x minus R50 1x (no SK), per label percent.
SV2_GAIN = {1.0: 66.3 - 57.9, 10.0: 73.9 - 68.4, 100.0: 79.1 - 76.3}
_LABEL_CAPTION = ("gain: the widest encoder minus the narrowest. S-v2 gain: R50 2x minus R50 1x fine-tuned on "
                  "ImageNet (Table 1; R152 3x+SK minus R50 1x: +17.0, +11.7, +6.8 at 1%, 10%, 100%): bigger "
                  "encoders gain more when labels are few.")


def _params(n: int) -> str:
    return f"{n / 1e6:.2g}M" if n < 1e7 else f"{n / 1e6:.0f}M"


def with_noise(table: Table, outcomes: list[Outcome]) -> Table:
    """The table with the median standard error of its scores in the caption: differences
    smaller than about twice it are noise (one seed, binomial error of the test splits)."""
    errs = [o.stderr for o in outcomes if o.stderr is not None]
    if not errs:
        return table
    return replace(table, caption=f"{table.caption} Standard error of a score: about {statistics.median(errs):.1f}.")


def with_baseline(table: Table, baseline: Baseline) -> Table:
    """The table with the random-init baseline in its caption (the floor every trial starts from)."""
    se = f" +/- {baseline.stderr:.1f}" if baseline.stderr is not None else ""
    note = f"Random-init encoder of the same shape ({baseline.label}): {baseline.score:.1f}{se}."
    return replace(table, caption=f"{table.caption} {note}".strip())


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown (for docs/studies/README.md)."""
    lines = [f"| {' | '.join(table.header)} |", "|" + "---|" * len(table.header)]
    lines += [f"| {' | '.join(c.text for c in row)} |" for row in table.rows]
    return "\n".join(lines) + "\n"

"""Records + published numbers -> one board per protocol (pure), then rendered for the terminal.

:func:`build_board` is a pure function of records and reference rows: rows are checkpoints
and published models, columns the tasks, plus the mean and the average rank. It refuses to
put two card (or protocol) versions of a task in one column (style.md §3.3), lists tasks run
on other split sizes than the card's (Birdsnap's rotted URLs), and, against a baseline row,
marks differences that a paired permutation test on the stored per-example predictions finds
significant (S-v1 B.8.1). The renderers (rich table, Markdown, CSV, JSON, PNG) live in
:mod:`clrbench.leaderboard.render`; score-vs-epoch curves of one run's checkpoints in
:mod:`clrbench.leaderboard.curves`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from clrbench.data.cards import task_order
from clrbench.data.limit import is_limited
from clrbench.leaderboard.merge import lookup, merge_identities
from clrbench.leaderboard.reference import ReferenceRow, load_references
from clrbench.leaderboard.significance import correctness, paired_permutation_test
from clrbench.records import Record, RecordError, read_records
from clrbench.weights.identity import read_aliases

__all__ = ["ALPHA", "Board", "BoardError", "Cell", "Column", "Row", "board_for_results", "build_board"]

ALPHA = 0.05  # significance level of the permutation test (S-v1 B.8.1 bolds p > 0.05 as ties)
N_PERMUTATIONS = 100_000  # as in S-v1 B.8.1


class BoardError(RecordError):
    """A board that cannot be built as asked (a RecordError, so the CLI reports it in one line)."""


@dataclass(frozen=True)
class Cell:
    """One (row, task) entry. Values, deltas and standard errors are in percent."""

    value: float | None = None
    stderr: float | None = None
    status: str = "missing"  # "ok" | "failed" | "diverged" | "missing"
    best: bool = False  # highest value of its column (ties all flagged)
    rank: float | None = None  # 1 = best among the rows with a value; ties share the mean rank
    delta: float | None = None  # value - baseline value
    p_value: float | None = None  # paired permutation test vs the baseline (records only)
    significant: bool = False  # p_value < ALPHA
    error: str | None = None


@dataclass(frozen=True)
class Row:
    """A checkpoint (``kind="record"``) or a published model (``kind="published"``)."""

    label: str  # checkpoint id, or the published label
    kind: str
    cells: dict[str, Cell]  # task -> cell, for every column
    mean: float | None  # mean over all columns; None unless every column has a value
    mean_rank: float | None  # mean of the per-task ranks the row has
    best_mean: bool = False
    best_rank: bool = False
    source: str = ""  # published: "Table 8 of <citation>"
    aliases: tuple[str, ...] = ()  # other names of the same weights (clrbench.leaderboard.merge)


@dataclass(frozen=True)
class Column:
    """One task column and the versions every value in it shares."""

    task: str
    metric: str | None  # None for a column of published numbers only
    task_version: int | None
    protocol_version: int | None


@dataclass(frozen=True)
class Board:
    """Everything a renderer needs, with no rendering decisions left to make."""

    protocol: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    baseline: str | None  # the resolved baseline label
    notes: tuple[str, ...]  # caption lines

    @property
    def tasks(self) -> list[str]:
        """The task names, in column order."""
        return [c.task for c in self.columns]


def build_board(records: Sequence[Record], references: Sequence[ReferenceRow], protocol: str,
                baseline: str | None = None, tasks: Sequence[str] | None = None,
                aliases: Mapping[str, Sequence[str]] | None = None) -> Board:
    """Assemble the board of one protocol.

    Args:
        records: any records; only this protocol's are used. Failed ones become failed cells.
        references: published rows; those of this protocol sharing a task with the board join it.
        protocol: the protocol name, e.g. "linear".
        baseline: a row label or checkpoint id (exact, else a unique case-insensitive
            prefix, e.g. "SimCLR R50-4x") to compute deltas and significance against.
        tasks: the columns, in order; default: the tasks this protocol's records cover,
            in the K19 order, then any others by name.
        aliases: checkpoint id -> other names of its weights; records of one encoder under
            several ids are merged into one row in any case (one encoder, one row).

    Raises:
        BoardError: two records for one (checkpoint, task), or an unknown/ambiguous baseline.
    """
    merged, names = merge_identities(records, aliases)
    recs = [r for r in merged if r.protocol == protocol and (tasks is None or r.task in tasks)]
    _check_unique(recs)
    notes: list[str] = []
    recs, columns = _columns(recs, tasks, notes)
    cols = [c.task for c in columns]
    refs = [r for r in references if r.protocol == protocol and any(t in r.values for t in cols)]
    by_label: dict[str, dict[str, Record]] = defaultdict(dict)
    for r in recs:
        by_label[r.checkpoint_id][r.task] = r
    raw: dict[str, dict[str, Cell]] = {
        label: {t: _record_cell(got.get(t)) for t in cols} for label, got in by_label.items()
    }
    raw.update({ref.label: {t: _published_cell(ref.values.get(t)) for t in cols} for ref in refs})
    kinds = {**{label: "record" for label in by_label}, **{ref.label: "published" for ref in refs}}
    base = _resolve_baseline(baseline, list(raw), names) if baseline is not None else None
    cells = _rank_and_compare(raw, cols, base, by_label, notes)
    rows = tuple(replace(r, aliases=names.get(r.label, ())) for r in
                 _rows(cells, cols, kinds, {ref.label: f"{ref.table} of {ref.citation}" for ref in refs}))
    notes[:0] = _caption(protocol, columns, refs, base)
    if not refs and any(r.protocol == protocol for r in references):
        notes.append(f"published {protocol} rows cover the 12 Kornblith tasks, none of these columns; "
                     "`clrbench leaderboard --tasks all` shows them.")
    notes.extend(_split_notes(recs, cols))
    return Board(protocol, tuple(columns), rows, base, tuple(notes))


def _check_unique(recs: list[Record]) -> None:
    seen: set[tuple[str, str]] = set()
    for r in recs:
        if (r.checkpoint_id, r.task) in seen:
            raise BoardError(f"two {r.protocol} records for {r.checkpoint_id} on {r.task}; keep one.")
        seen.add((r.checkpoint_id, r.task))


def _columns(recs: list[Record], tasks: Sequence[str] | None,
             notes: list[str]) -> tuple[list[Record], list[Column]]:
    """One column per task, keeping only the newest (card, protocol) version in each."""
    names = list(tasks) if tasks is not None else task_order(sorted({r.task for r in recs}))
    kept: list[Record] = []
    columns = []
    for task in names:
        here = [r for r in recs if r.task == task]
        if not here:
            columns.append(Column(task, None, None, None))
            continue
        newest = max((r.task_version, r.protocol_version) for r in here)
        stale = [r for r in here if (r.task_version, r.protocol_version) != newest]
        if stale:
            # Different versions can mean different splits, metric or grid: never one column.
            olds = ", ".join(f"{r.checkpoint_id} (card v{r.task_version}, protocol v{r.protocol_version})"
                             for r in stale)
            notes.append(f"{task}: left out {olds}; the column holds card v{newest[0]}, protocol v{newest[1]} only.")
        fresh = [r for r in here if (r.task_version, r.protocol_version) == newest]
        kept.extend(fresh)
        metric = next((r.metric for r in fresh if r.status == "ok"), fresh[0].metric or None)
        columns.append(Column(task, metric, newest[0], newest[1]))
    return kept, columns


def _record_cell(rec: Record | None) -> Cell:
    if rec is None:
        return Cell()
    if rec.status != "ok" or rec.value is None:  # Record guarantees a value when ok
        return Cell(status=rec.status, error=rec.error)
    return Cell(value=float(rec.value), stderr=rec.stderr, status="ok")


def _published_cell(value: float | None) -> Cell:
    return Cell() if value is None else Cell(value=value, status="ok")


def _resolve_baseline(baseline: str, labels: list[str], aliases: Mapping[str, Sequence[str]]) -> str:
    if baseline in labels:
        return baseline
    if lookup(baseline, aliases) in labels:
        return lookup(baseline, aliases)
    # Prefix, not substring: "b" must not silently pick "... Table 8" on another board. An
    # alias matching counts for its row: one encoder is one row, whatever it was called.
    hits = list(dict.fromkeys(label for label in labels for name in (label, *aliases.get(label, ()))
                              if name.lower().startswith(baseline.lower())))
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UnknownBaselineError(f"no row matches the baseline {baseline!r}; rows are: {', '.join(labels)}.")
    raise UnknownBaselineError(f"the baseline {baseline!r} matches several rows ({', '.join(hits)}); be more specific.")


class UnknownBaselineError(BoardError):
    """The baseline names no row of this board, or several."""


def _ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = highest; tied values share the mean of the ranks they span."""
    return {k: 1 + sum(w > v for w in values.values()) + (sum(w == v for w in values.values()) - 1) / 2
            for k, v in values.items()}


def _rank_and_compare(raw: dict[str, dict[str, Cell]], cols: list[str], base: str | None,
                      recs: dict[str, dict[str, Record]], notes: list[str]) -> dict[str, dict[str, Cell]]:
    """Per column: best flag, rank, and the delta and p-value against the baseline."""
    out: dict[str, dict[str, Cell]] = {label: {} for label in raw}
    for t in cols:
        values = {label: v for label, c in raw.items() if (v := c[t].value) is not None}
        ranks = _ranks(values)
        top = max(values.values(), default=None)
        base_value = raw[base][t].value if base is not None else None
        for label, row in raw.items():
            c = row[t]
            delta = p = None
            if base is not None and label != base and c.value is not None and base_value is not None:
                delta = c.value - base_value
                a, b = recs.get(label, {}).get(t), recs.get(base, {}).get(t)
                if a is not None and b is not None:
                    p = _paired_p(a, b, notes)
            out[label][t] = Cell(c.value, c.stderr, c.status, c.value is not None and c.value == top,
                                 ranks.get(label), delta, p, p is not None and p < ALPHA, c.error)
    return out


def _paired_p(a: Record, b: Record, notes: list[str]) -> float | None:
    """p-value of a vs b on one task, or None (with a note) when their predictions cannot be paired."""
    why = None
    pa, pb = a.predictions, b.predictions
    if not (pa.get("y") and pb.get("y") and "pred" in pa and "pred" in pb):
        why = "no stored predictions"
    elif a.split_hash != b.split_hash or pa["y"] != pb["y"]:
        why = "different test examples"
    elif a.metric != b.metric:
        why = "different metrics"
    if why is None:
        try:
            return paired_permutation_test(correctness(pa, a.metric), correctness(pb, b.metric), N_PERMUTATIONS)
        except ValueError as e:
            why = str(e)
    notes.append(f"{a.task}: no significance test of {a.checkpoint_id} vs {b.checkpoint_id} ({why}).")
    return None


def _rows(cells: dict[str, dict[str, Cell]], cols: list[str], kinds: dict[str, str],
          sources: dict[str, str]) -> tuple[Row, ...]:
    """Rows with mean and average rank: checkpoints, then published rows, each group by average rank."""
    stats: dict[str, tuple[float | None, float | None]] = {}
    for label, row in cells.items():
        vals = [v for t in cols if (v := row[t].value) is not None]
        ranks = [r for t in cols if (r := row[t].rank) is not None]
        mean = sum(vals) / len(vals) if cols and len(vals) == len(cols) else None
        stats[label] = (mean, sum(ranks) / len(ranks) if ranks else None)
    means = [m for m, _ in stats.values() if m is not None]
    mranks = [r for _, r in stats.values() if r is not None]
    rows = [Row(label, kinds[label], cells[label], m, r, m is not None and m == max(means),
                r is not None and r == min(mranks), sources.get(label, ""))
            for label, (m, r) in stats.items()]

    def order(r: Row) -> tuple[bool, float]:
        return (r.mean_rank is None, r.mean_rank or 0.0)  # stable: ties keep input order

    return tuple(sorted((r for r in rows if r.kind == "record"), key=order)
                 + sorted((r for r in rows if r.kind == "published"), key=order))


def _caption(protocol: str, columns: list[Column], refs: list[ReferenceRow], base: str | None) -> list[str]:
    versions = ", ".join(f"{c.task} v{c.task_version}" for c in columns if c.task_version is not None)
    pversions = sorted({c.protocol_version for c in columns if c.protocol_version is not None})
    head = " ".join([f"protocol {protocol}", *(f"v{v}" for v in pversions)])
    lines = [head + (f"; cards: {versions}" if versions else "")]
    if refs:
        tables = list(dict.fromkeys(f"{r.short}, {r.table}" for r in refs))
        lines.append("published rows (as printed; never significance-tested): " + "; ".join(tables) + ".")
    lines.append("mean over all columns ('-' if a row lacks one); rank 1 = best, averaged over the row's tasks.")
    if base is not None:
        lines.append(f"deltas vs {base}; * = p < {ALPHA} by a paired permutation test ({N_PERMUTATIONS:,} swaps, "
                     "SimCLR B.8.1) on stored predictions.")
    return lines


def _split_notes(recs: list[Record], cols: list[str]) -> list[str]:
    """Tasks whose records used other split sizes than their card expects (e.g. Birdsnap)."""
    notes = []
    for t in cols:
        groups: dict[tuple[tuple[str, int], ...], list[str]] = defaultdict(list)
        expected: dict[str, int] = {}
        for r in recs:
            if r.task != t or r.status != "ok" or not r.split_sizes:
                continue
            expected = r.expected_split_sizes
            if any(r.split_sizes.get(s) != n for s, n in r.expected_split_sizes.items()):
                groups[tuple(sorted(r.split_sizes.items()))].append(r.checkpoint_id)
        for sizes, ids in groups.items():
            got = ", ".join(f"{s} {n:,}" for s, n in sizes)
            want = ", ".join(f"{s} {n:,}" for s, n in sorted(expected.items()))
            notes.append(f"{t}: split sizes {got} (card expects {want}) for {', '.join(ids)}.")
    return notes


def _protocol_order(protocol: str) -> tuple[int, str]:
    """Linear probes first, then kNN, few-shot, fine-tune, the rest; by name within each."""
    families = ("linear", "knn", "fewshot", "finetune")
    base = protocol.split("@", 1)[0]
    return next((i for i, f in enumerate(families) if base == f or base.startswith(f + "-")), len(families)), protocol


def board_for_results(results_dir: Path | str, protocol: str | None = None, baseline: str | None = None,
                      *, tasks: Sequence[str] | None = None, checkpoints: Sequence[str] | None = None,
                      references: Sequence[ReferenceRow] | None = None,
                      include_limited: bool = False) -> list[Board]:
    """One board per protocol present under ``results_dir/records`` (linear, finetune, then by name).

    Args:
        results_dir: the results folder.
        protocol: only this protocol's board, or a comma list of protocols.
        baseline: as in :func:`build_board`; applied to every board that has the row.
        tasks: the columns (default: the tasks recorded).
        checkpoints: only these checkpoint ids.
        references: published rows (default: :func:`load_references`).
        include_limited: also the records of ``--limit`` smoke runs (protocol ``<name>@limitN``),
            each such protocol in its own board; by default they are left out.

    Raises:
        RecordError: an invalid record file (named).
        BoardError: the baseline is in none of the boards.
    """
    # A damaged record file: one warning, not no board.
    records, aliases = merge_identities(read_records(results_dir, lenient=True), read_aliases(results_dir))
    records = [r for r in records if include_limited or not is_limited(r.protocol)]
    if checkpoints is not None:
        wanted = {lookup(c, aliases) for c in checkpoints}
        records = [r for r in records if r.checkpoint_id in wanted]
    refs = list(references) if references is not None else load_references()
    chosen = None if protocol is None else {p.strip() for p in protocol.split(",") if p.strip()}
    protocols = sorted({r.protocol for r in records if chosen is None or r.protocol in chosen}, key=_protocol_order)
    boards, misses = [], []
    for p in protocols:
        try:
            boards.append(build_board(records, refs, p, baseline, tasks, aliases))
        except UnknownBaselineError as e:
            misses.append(e)
            boards.append(build_board(records, refs, p, None, tasks, aliases))
    if baseline is not None and boards and len(misses) == len(boards):
        raise misses[0]
    return [_with_failed_recomputes(b, results_dir, checkpoints) for b in boards]


def _with_failed_recomputes(board: Board, results_dir: Path | str,
                            checkpoints: Sequence[str] | None) -> Board:
    """Note each recompute that failed beside an ok record (records.write_record keeps both)."""
    from dataclasses import replace

    from clrbench.records import failed_recomputes

    notes = [f"{f.checkpoint_id} / {f.task}: a recompute failed ({(f.error or 'no message')[:120]}); "
             "the ok value shown is the earlier one."
             for f in failed_recomputes(results_dir)
             if f.protocol == board.protocol and (checkpoints is None or f.checkpoint_id in checkpoints)]
    return replace(board, notes=board.notes + tuple(notes)) if notes else board

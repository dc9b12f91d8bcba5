"""Leaderboard: rows, means, ranks, best, deltas, significance, version and split captions, renderers.

Every expected number below is worked out by hand from the fixture in the comments.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clrbench.leaderboard import board as lb
from clrbench.leaderboard import render
from clrbench.leaderboard.reference import (
    TRANSFER_TASKS,
    ReferenceDataError,
    ReferenceRow,
    load_references,
)
from clrbench.records import Record, write_record


def rec(cid: str, task: str, value: float | None, *, n_right: int | None = None, n: int = 0,
        status: str = "ok", protocol: str = "linear", task_version: int = 1, protocol_version: int = 1,
        sizes: dict[str, int] | None = None, expected: dict[str, int] | None = None) -> Record:
    """A hand-made record; with ``n_right``, predictions right on the first n_right of n examples."""
    preds: dict[str, Any] = {}
    if n_right is not None:
        preds = {"y": [1] * n, "pred": [1] * n_right + [0] * (n - n_right)}
    expected = expected or {"train": 100, "val": 20, "test": n or 10}
    return Record(cid, task, protocol, "top1", status, value if status == "ok" else None,
                  0.5 if status == "ok" else None, task_version, protocol_version, {"path": cid}, {}, [], preds,
                  sizes or dict(expected), expected, "split-1", {}, {}, error=None if status == "ok" else "Boom: x")


PUB = ReferenceRow("Paper model (X et al. 2020, Table 1)", "linear", {"cifar10": 90.0, "dtd": 50.0},
                   "X et al. A paper.", "X et al. 2020", "Table 1")
PUB_FT = ReferenceRow("Paper model (X et al. 2020, Table 1)", "finetune", {"cifar10": 99.0}, "c", "X", "Table 1")


def fixture() -> list[Record]:
    # cifar10: a 80 (160/200 right), b 70 (first 140/200 right), c failed, published 90.
    # dtd:     a 60 (12/20), b 65 (13/20), c 60 (same predictions as a), published 50.
    return [
        rec("a", "cifar10", 80.0, n_right=160, n=200), rec("b", "cifar10", 70.0, n_right=140, n=200),
        rec("c", "cifar10", None, status="failed"),
        rec("a", "dtd", 60.0, n_right=12, n=20), rec("b", "dtd", 65.0, n_right=13, n=20),
        rec("c", "dtd", 60.0, n_right=12, n=20),
        rec("a", "cifar10", 95.0, protocol="finetune"),
    ]


def by_label(board: lb.Board) -> dict[str, lb.Row]:
    return {r.label: r for r in board.rows}


def test_rows_columns_means_ranks_and_best() -> None:
    board = lb.build_board(fixture(), [PUB, PUB_FT], "linear")
    assert board.tasks == ["cifar10", "dtd"]  # K19 order
    assert [r.label for r in board.rows] == ["b", "a", "c", PUB.label]  # checkpoints by avg rank, then published
    rows = by_label(board)
    # cifar10 ranks: P 1, a 2, b 3.  dtd: b 1, a and c tie for 2-3 -> 2.5, P 4.
    assert rows["a"].cells["cifar10"].rank == 2 and rows["a"].cells["dtd"].rank == 2.5
    assert rows["c"].cells["dtd"].rank == 2.5 and rows["c"].cells["cifar10"].rank is None
    # mean rank: a (2 + 2.5)/2 = 2.25, b (3 + 1)/2 = 2.0, c 2.5 (its only task), P (1 + 4)/2 = 2.5
    assert [rows[k].mean_rank for k in ("a", "b", "c", PUB.label)] == [2.25, 2.0, 2.5, 2.5]
    # means: a (80 + 60)/2 = 70, b (70 + 65)/2 = 67.5, c none (failed cell), P (90 + 50)/2 = 70
    assert [rows[k].mean for k in ("a", "b", "c", PUB.label)] == [70.0, 67.5, None, 70.0]
    assert rows["a"].best_mean and rows[PUB.label].best_mean and not rows["b"].best_mean  # tie: both
    assert rows["b"].best_rank and not rows["a"].best_rank
    assert rows[PUB.label].cells["cifar10"].best and rows["b"].cells["dtd"].best
    assert rows["c"].cells["cifar10"].status == "failed" and rows["c"].cells["cifar10"].error == "Boom: x"
    assert rows[PUB.label].kind == "published" and "Table 1" in rows[PUB.label].source
    assert board.columns[0].task_version == 1 and board.columns[0].metric == "top1"


def test_deltas_and_significance_against_a_checkpoint() -> None:
    rows = by_label(lb.build_board(fixture(), [PUB], "linear", baseline="a"))
    b10, bdtd = rows["b"].cells["cifar10"], rows["b"].cells["dtd"]
    assert b10.delta == -10.0 and bdtd.delta == 5.0
    # cifar10: 20 discordant examples all favouring a -> p = 2 / 2^20, below any MC resolution.
    assert b10.significant and b10.p_value == pytest.approx(1 / 100_001)
    # dtd: one discordant example -> every swap gives |D| >= 1 -> p = 1.
    assert not bdtd.significant and bdtd.p_value == 1.0
    assert rows["c"].cells["dtd"].delta == 0.0 and rows["c"].cells["dtd"].p_value == 1.0
    pub = rows[PUB.label].cells
    assert pub["cifar10"].delta == 10.0 and pub["dtd"].delta == -10.0
    assert pub["cifar10"].p_value is None  # published rows are never tested
    assert rows["a"].cells["cifar10"].delta is None


def test_baseline_matching() -> None:
    assert lb.build_board(fixture(), [PUB], "linear", baseline="paper model").baseline == PUB.label
    with pytest.raises(lb.BoardError, match="no row matches"):
        lb.build_board(fixture(), [PUB], "linear", baseline="zzz")
    with pytest.raises(lb.BoardError, match="several rows"):
        lb.build_board([rec("ab1", "dtd", 1.0), rec("ab2", "dtd", 2.0)], [], "linear", baseline="AB")


def test_unpairable_predictions_are_not_tested_and_say_why() -> None:
    recs = [rec("a", "dtd", 60.0, n_right=12, n=20), rec("b", "dtd", 50.0)]
    board = lb.build_board(recs, [], "linear", baseline="a")
    assert by_label(board)["b"].cells["dtd"].p_value is None
    assert any("no significance test of b vs a (no stored predictions)" in n for n in board.notes)


def test_two_card_versions_never_share_a_column() -> None:
    recs = [rec("a", "dtd", 60.0), rec("b", "dtd", 70.0, task_version=2), rec("c", "dtd", 65.0, task_version=2)]
    board = lb.build_board(recs, [], "linear")
    assert [r.label for r in board.rows] == ["b", "c"]
    assert board.columns[0].task_version == 2
    assert any(n.startswith("dtd: left out a (card v1, protocol v1)") for n in board.notes)
    assert "cards: dtd v2" in board.notes[0]


def test_protocol_versions_never_share_a_column() -> None:
    board = lb.build_board([rec("a", "dtd", 60.0), rec("b", "dtd", 70.0, protocol_version=2)], [], "linear")
    assert [r.label for r in board.rows] == ["b"]
    assert board.notes[0].startswith("protocol linear v2")


def test_split_sizes_other_than_the_cards_are_listed() -> None:
    expected = {"train": 42405, "val": 4981, "test": 2443}
    got = {"train": 38000, "val": 4981, "test": 2149}
    recs = [rec("a", "birdsnap", 40.0, sizes=got, expected=expected), rec("b", "dtd", 60.0)]
    notes = lb.build_board(recs, [], "linear").notes
    hits = [n for n in notes if n.startswith("birdsnap:")]
    assert len(hits) == 1 and "test 2,149" in hits[0] and "test 2,443" in hits[0] and hits[0].endswith("for a.")
    assert not any(n.startswith("dtd:") for n in notes)


def test_duplicate_records_are_refused() -> None:
    with pytest.raises(lb.BoardError, match="two linear records for a on dtd"):
        lb.build_board([rec("a", "dtd", 1.0), rec("a", "dtd", 2.0)], [], "linear")


def test_published_rows_join_only_their_protocol_and_tasks() -> None:
    refs = load_references()
    board = lb.build_board([rec("a", "cifar10", 80.0)], refs, "linear")
    rows = by_label(board)
    assert rows["SimCLR R50-4x (Chen et al. 2020, Table 8)"].cells["cifar10"].value == 95.3
    assert not any(label.startswith("Random init") for label in rows)  # fine-tune only
    ft = by_label(lb.build_board([rec("a", "cifar10", 80.0, protocol="finetune")], refs, "finetune"))
    assert ft["Random init R50-4x (Chen et al. 2020, Table 8)"].cells["cifar10"].value == 96.0
    quick = lb.build_board([rec("a", "digits", 80.0)], refs, "linear")
    assert [r.label for r in quick.rows] == ["a"]  # the offline quick suite has no published rows
    assert (
        lb.build_board([rec("a", "cifar10", 80.0, protocol="finetune-short")], refs, "finetune-short").rows[-1].label
        == "a"
    )


def test_shipped_reference_files() -> None:
    refs = load_references()
    assert len(refs) == 13
    for r in refs:
        assert set(r.values) == set(TRANSFER_TASKS) and r.citation and r.table and r.short
    assert {r.protocol for r in refs} == {"linear", "finetune"}


def test_malformed_reference_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("source: {citation: c, short: s, table: T1}\n"
                                       "rows:\n  - {label: x, protocol: linear, values: {imagenet: 70.0}}\n")
    with pytest.raises(ReferenceDataError, match="unknown task 'imagenet'"):
        load_references(tmp_path)


def test_board_for_results(tmp_path: Path) -> None:
    for r in fixture():
        write_record(tmp_path, r)
    boards = lb.board_for_results(tmp_path, references=[PUB, PUB_FT], baseline="b")
    assert [b.protocol for b in boards] == ["linear", "finetune"]
    assert boards[0].baseline == "b" and boards[1].baseline is None  # b has no fine-tune record
    assert lb.board_for_results(tmp_path, protocol="finetune", references=[])[0].rows[0].cells["cifar10"].value == 95.0
    assert [r.label for r in lb.board_for_results(tmp_path, checkpoints=["c"], references=[])[0].rows] == ["c"]
    with pytest.raises(lb.BoardError, match="no row matches"):
        lb.board_for_results(tmp_path, references=[], baseline="nobody")
    assert lb.board_for_results(tmp_path / "empty") == []


@pytest.fixture
def board() -> lb.Board:
    return lb.build_board(fixture(), [PUB], "linear", baseline="a")


def test_markdown(board: lb.Board) -> None:
    md = render.to_markdown(board)
    assert "| model | cifar10 | dtd | mean | avg rank |" in md
    assert "| b | 70.0 (-10.0*) | **65.0** (+5.0) | 67.5 | **2.00** |" in md
    assert "| c | failed | 60.0 (+0.0) | - | 2.50 |" in md
    assert f"| *{PUB.label}* | **90.0** (+10.0) | 50.0 (-10.0) | **70.0** | 2.50 |" in md
    assert "- deltas vs a" in md


def test_csv(board: lb.Board) -> None:
    lines = list(csv.DictReader(io.StringIO(render.to_csv(board))))
    got = {r["model"]: r for r in lines}
    assert got["a"]["cifar10"] == "80.0" and got["a"]["mean"] == "70.0" and got["a"]["avg_rank"] == "2.25"
    assert got["c"]["cifar10"] == "failed" and got["c"]["mean"] == ""
    assert got["b"]["cifar10_delta"] == "-10.0" and float(got["b"]["cifar10_p"]) < 0.05
    assert got[PUB.label]["kind"] == "published" and got[PUB.label]["cifar10_p"] == ""


def test_json(board: lb.Board) -> None:
    data = json.loads(render.to_json(board))
    assert data["protocol"] == "linear" and data["tasks"] == ["cifar10", "dtd"] and data["baseline"] == "a"
    b = next(r for r in data["rows"] if r["label"] == "b")
    assert b["cells"]["dtd"]["value"] == 65.0 and b["cells"]["cifar10"]["significant"] is True


def test_rich_table(board: lb.Board) -> None:
    table = render.render_rich(board)
    console = Console(record=True, width=200, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "70.0 -10.0*" in text and "failed" in text and "cards: cifar10 v1, dtd v1" in text
    failed = [c for c in table.columns[1].cells if c.plain == "failed"]
    assert failed and "red" in str(failed[0].style)
    best = [c for c in table.columns[1].cells if c.plain.startswith("90.0")]
    assert "bold" in str(best[0].style)


def test_wide_board_splits_into_blocks_that_fit_the_terminal() -> None:
    """Twelve tasks in 80 columns: consecutive blocks, each fitting, every task once, totals last."""
    records = [rec(cid, t, 50.0 + i) for i, t in enumerate(TRANSFER_TASKS) for cid in ("a-long-checkpoint-name", "b")]
    board = lb.build_board(records, [], "linear")
    blocks = [b for b in render.render_rich_blocks(board, 80) if hasattr(b, "columns")]
    assert 1 <= len(blocks) <= 2
    heads = [[c.header for c in t.columns[1:]] for t in blocks]
    tasks = [h.split("\n")[0] for hs in heads for h in hs if h not in ("mean", "rank")]
    assert tasks == ["Food", "C10", "C100", "Birds", "SUN", "Cars", "Aircr", "VOC", "DTD", "Pets", "Calt", "Flwr"]
    assert heads[-1][-2:] == ["mean", "rank"] and all("mean" not in hs for hs in heads[:-1])
    for t in blocks:
        console = Console(record=True, width=80, color_system=None)
        console.print(t)
        assert max(len(line) for line in console.export_text().splitlines()) <= 80
    assert len([b for b in render.render_rich_blocks(board, 400) if hasattr(b, "columns")]) == 1


def test_plot_writes_a_png_atomically(board: lb.Board, tmp_path: Path) -> None:
    out = render.plot(board, tmp_path / "plots" / "board.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["board.png"]


# ----------------------------------------------------------------------------- score-vs-epoch curves


def step_rec(cid: str, task: str, value: float | None, step: int, run: str = "r18") -> Record:
    """A record of checkpoint ``cid``, stamped (as `eval --watch` does) with its run and step."""
    r = rec(cid, task, value, status="ok" if value is not None else "failed")
    return Record(**{**r.to_dict(), "checkpoint": {"path": cid, "run": run, "step": step, "epoch": step / 10}})


def test_curves_group_a_runs_checkpoints_by_step() -> None:
    from clrbench.leaderboard.curves import build_curves

    recs = [step_rec("r-s20", "dtd", 50.0, 20), step_rec("r-s10", "dtd", 40.0, 10),
            step_rec("r-s10", "cifar10", 60.0, 10), step_rec("r-s20", "cifar10", None, 20),
            step_rec("other-s5", "dtd", 30.0, 5, run="other"),  # one point: no curve
            rec("random", "dtd", 10.0)]  # no run/step: never on a curve
    (curve,) = build_curves(recs)
    assert (curve.protocol, curve.run, curve.tasks) == ("linear", "r18", ("cifar10", "dtd"))
    assert [(p.step, p.epoch, p.checkpoint_id) for p in curve.points] == [(10, 1.0, "r-s10"), (20, 2.0, "r-s20")]
    assert curve.points[0].values == {"cifar10": 60.0, "dtd": 40.0} and curve.points[0].mean == 50.0
    assert curve.points[1].values == {"cifar10": None, "dtd": 50.0} and curve.points[1].mean is None
    assert build_curves(recs, protocol="finetune") == []


def test_curve_renderers_and_plot(tmp_path: Path) -> None:
    from clrbench.leaderboard import curves as lc

    (curve,) = lc.build_curves([step_rec("a", "dtd", 40.0, 10), step_rec("b", "dtd", 55.5, 20)])
    md = lc.curve_markdown(curve)
    assert "| 2.00 | 20 | 55.5 | 55.5 |" in md and "score vs epoch: r18 (linear)" in md
    console = Console(width=100, record=True)
    console.print(lc.curve_rich(curve))
    assert "55.5" in console.export_text()
    out = lc.plot_curves([curve], tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_caption_points_to_published_rows_on_other_tasks() -> None:
    board = lb.build_board([rec("a", "digits", 50.0)], [PUB], "linear")
    assert [r.label for r in board.rows] == ["a"]
    assert any("--tasks all" in n for n in board.notes)

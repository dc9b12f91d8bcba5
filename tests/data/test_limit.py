"""--limit N: stratified thinning (against a naive count), limited records kept apart from full
ones, and a smoke run of all twelve real-format fixtures that ends in a record per task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fixtures import build_all
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.data.limit import limited_name, thin


def test_thin_is_stratified_seeded_and_a_subset() -> None:
    y = np.repeat(np.arange(5), [40, 30, 20, 8, 2])  # 100 rows, unequal classes
    keep = thin(y, 20, seed=3)
    assert len(keep) == 20 and len(set(keep)) == 20 and np.all(np.diff(keep) > 0)
    counts = np.bincount(y[keep], minlength=5)
    # Proportional shares 8, 6, 4, 1.6, 0.4 -> each class within one image of its share.
    assert np.all(np.abs(counts - 20 * np.bincount(y) / 100) <= 1), counts
    np.testing.assert_array_equal(keep, thin(y, 20, seed=3))
    assert not np.array_equal(keep, thin(y, 20, seed=4))
    np.testing.assert_array_equal(thin(y, 500), np.arange(100))
    multi = np.eye(5, dtype=np.uint8)[y]  # multi-hot: stratified by the first positive class
    np.testing.assert_array_equal(thin(multi, 20, seed=3), keep)


def test_limited_name() -> None:
    assert limited_name("linear", None) == "linear" and limited_name("linear", 50) == "linear@limit50"


def test_limit_runs_every_fixture_task_to_a_record(tmp_path: Path) -> None:
    """The twelve datasets in their real formats, --limit 4: every task ends in an ok record,
    kept apart from full records and out of the default board."""
    build_all(tmp_path / "data")
    for card in (tmp_path / "data" / "tasks").glob("*.yaml"):  # 8 px fixture images: 32 px is plenty
        card.write_text(card.read_text().replace("resize: 224", "resize: 32").replace("crop: 224", "crop: 32"))
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "-c", "random:resnet18,width=0.125,stem=cifar", "--tasks", "all",
                              "--tasks-dir", str(tmp_path / "data" / "tasks"), "--data-root", str(tmp_path / "data"),
                              "--limit", "4", "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    from clrbench.records import read_records

    recs = read_records(tmp_path / "res")
    assert len(recs) == 12 and {r.protocol for r in recs} == {"linear@limit4"}
    bad = [(r.task, r.error) for r in recs if r.status != "ok"]
    assert not bad, bad
    assert all(r.tags["limited"] == 4 and max(r.split_sizes.values()) <= 4 for r in recs)
    res = runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "res")])
    assert res.exit_code == 1 and "no records" in res.output  # limited records are not on the board
    res = runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "res"), "--include-limited"])
    assert res.exit_code == 0 and "linear@limit4" in res.output, res.output

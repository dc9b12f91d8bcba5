"""Tables and pictures from outcomes (no training): orientation, failed cells kept, PNGs written."""

from __future__ import annotations

from pathlib import Path

from clrbench.study.grids import augment_grid, batch_size_grid, head_grid, temperature_grid
from clrbench.study.plots import plot_study
from clrbench.study.results import (
    Outcome,
    augment_table,
    batch_size_table,
    head_table,
    temperature_table,
    to_markdown,
)


def _outcomes(trials: list, failed: set[str] = frozenset(), layers: tuple[str, ...] = ("h",)) -> list[Outcome]:
    out = []
    for i, t in enumerate(trials):
        for layer in layers if "g" in t.layers else ("h",):
            bad = t.key in failed
            out.append(Outcome(t, layer, "failed" if bad else "ok", None if bad else 50.0 + i - 5 * (layer == "g"),
                               {"digits": None if bad else 50.0 + i}, "boom" if bad else None,
                               {"contrastive_acc": 0.5}))
    return out


def test_augment_table_rows_are_first_ops_and_failed_cells_stay(tmp_path: Path) -> None:
    ops = ["crop", "color", "blur"]
    outcomes = _outcomes(augment_grid(ops), failed={"color+blur"})
    table = augment_table(outcomes, ops)
    assert table.header == ("1st \\ 2nd", "crop", "color", "blur", "mean")
    rows = {r[0].text: r for r in table.rows}
    assert rows["color"][3].status == "failed" and rows["blur"][2].text == "57.0"  # blur then color: index 7
    assert rows["crop"][4].text == "51.0"  # the row mean of 50, 51, 52
    assert "| color | 53.0 | 54.0 | failed |" in to_markdown(table)
    assert plot_study("augment", outcomes, tmp_path / "a.png", ops).stat().st_size > 5000


def test_temperature_batch_and_head_tables_and_pictures(tmp_path: Path) -> None:
    temp = _outcomes(temperature_grid([0.1, 0.5], [10.0]), failed={"tau10-raw"})
    assert [[c.text for c in r] for r in temperature_table(temp).rows] == [
        ["yes", "0.1", "50.0", "50.0"], ["yes", "0.5", "50.0", "51.0"], ["no", "10", "50.0", "failed"]]
    batch = _outcomes(batch_size_grid([64, 128], [1.0, 2.0]), failed={"b128-e2"})
    assert [[c.text for c in r] for r in batch_size_table(batch).rows] == [["64", "50.0", "51.0"],
                                                                           ["128", "52.0", "failed"]]
    heads = _outcomes(head_grid(["none", "linear"], [16, 32]), layers=("h", "g"))
    assert [[c.text for c in r] for r in head_table(heads).rows] == [
        ["linear", "16", "51.0", "46.0"], ["linear", "32", "52.0", "47.0"], ["none", "-", "50.0", "50.0"]]
    for study, outs in (("temperature", temp), ("batch-size", batch), ("head", heads)):
        assert plot_study(study, outs, tmp_path / f"{study}.png").stat().st_size > 5000

"""Split carving is stratified, deterministic, disjoint, and stored once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clrbench.data.cards import Source, SplitSpec, TaskCard
from clrbench.data.images import LOADERS, ArrayImages, DatasetError
from clrbench.data.splits import carve, load_task


def test_carve_per_class_fraction_and_size() -> None:
    y = np.repeat(np.arange(4), 25)
    idx = carve(y, SplitSpec(carve_from="train", per_class=5, seed=0))
    assert len(idx) == 20 and np.all(np.bincount(y[idx]) == 5)
    assert np.array_equal(idx, carve(y, SplitSpec(carve_from="train", per_class=5, seed=0)))
    assert not np.array_equal(idx, carve(y, SplitSpec(carve_from="train", per_class=5, seed=1)))
    assert len(carve(y, SplitSpec(carve_from="train", fraction=0.2))) == 20
    assert len(carve(y, SplitSpec(carve_from="train", size=33))) == 33
    with pytest.raises(DatasetError, match="cannot carve"):
        carve(y, SplitSpec(carve_from="train", per_class=25))


def _toy_loader(root: Path | None, split: str, n: int = 60) -> ArrayImages:
    rng = np.random.default_rng(0 if split == "train" else 1)
    return ArrayImages(rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 3, 3)


if "toy_splits" not in LOADERS:
    LOADERS.add("toy_splits", _toy_loader)


def _card(version: int = 1) -> TaskCard:
    return TaskCard(
        name="toy", version=version, title="toy", citation="-", source=Source("toy_splits", {"n": 60}),
        num_classes=3, metric="top1",
        splits={"train": SplitSpec(source="train"), "val": SplitSpec(carve_from="train", per_class=4),
                "test": SplitSpec(source="test")},
        expected_sizes={"train": 48, "val": 12, "test": 60},
    )


def test_load_task_writes_index_lists_once_and_reads_them_back(tmp_path: Path) -> None:
    data = load_task(_card(), None, tmp_path)
    assert data.sizes() == {"train": 48, "val": 12, "test": 60}
    assert not set(data.train.ids) & set(data.val.ids)  # disjoint
    stored = tmp_path / "toy@v1.json"
    assert stored.exists()
    before = stored.read_bytes()
    again = load_task(_card(), None, tmp_path)
    assert again.split_hash == data.split_hash and stored.read_bytes() == before
    assert np.array_equal(again.val.targets, data.val.targets)


def test_stored_split_that_no_longer_fits_the_data_fails(tmp_path: Path) -> None:
    load_task(_card(), None, tmp_path)
    card = _card()
    small = TaskCard(**{**card.__dict__, "source": Source("toy_splits", {"n": 30})})
    with pytest.raises(DatasetError, match="does not fit the data"):
        load_task(small, None, tmp_path)

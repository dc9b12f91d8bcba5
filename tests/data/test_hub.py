"""Hub copies as sources: a hub-layout folder read through ``datasets`` (offline), labels mapped
onto the card's classes, val carved as for the files, hub and files told apart by split hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hub_layout import build_hub_folder, build_image_folder, card, write_card
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.data.hub import hub_images, resolve_source
from clrbench.data.images import DatasetError
from clrbench.data.splits import load_task
from clrbench.data.user_cards import load_user_card

NAMES = ["cat", "dog", "fish"]
SIZES = {"train": 12, "test": 6}


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    # load_dataset writes its Arrow cache here, not in the user's ~/.cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture
def both(tmp_path: Path) -> Path:
    """A user card whose files are an image folder and whose hub copy is a local hub folder."""
    build_hub_folder(tmp_path / "hub", ["Cat", "Dog", "goldfish"], SIZES)
    build_image_folder(tmp_path / "files", NAMES, SIZES)
    hub = {"id": "../hub", "splits": {"train": "train", "test": "test"}, "label_map": {"goldfish": "fish"},
           "reproduces": True}
    data = card("mini", {"loader": "image_folder", "args": {"path": "../files"}, "hub": hub}, NAMES,
                {"train": 9, "val": 3, "test": 6})
    return write_card(tmp_path / "cards", data)


def test_hub_split_reads_labels_without_decoding(tmp_path: Path) -> None:
    labels = build_hub_folder(tmp_path / "hub", NAMES, SIZES)
    images = hub_images(str(tmp_path / "hub"), "train")
    assert len(images) == 12 and images.classes == tuple(NAMES)
    np.testing.assert_array_equal(images.targets, labels["train"])
    assert images.ids[0] == "hf:hub/train/0"
    assert images.load_image(5).size == (8, 8)  # decoded on access only


def test_hub_and_files_give_the_same_splits_with_different_hashes(both: Path, tmp_path: Path) -> None:
    c = load_user_card(both)
    hub = load_task(c, None, tmp_path / "splits", source="hf")
    files = load_task(c, None, tmp_path / "splits", source="files")
    assert hub.sizes() == files.sizes() == {"train": 9, "val": 3, "test": 6}
    assert hub.split_hash != files.split_hash and hub.tags == {"source": "hf"} and files.tags == {}
    assert (tmp_path / "splits" / "mini@v1+hf.json").exists() and (tmp_path / "splits" / "mini@v1.json").exists()
    # Hub names "Cat" / "goldfish" land on the card's "cat" / "fish" (case, label_map).
    assert sorted(np.bincount(hub.test.targets).tolist()) == [2, 2, 2]
    assert hub.train.base.classes == tuple(NAMES)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(np.sort(hub.val.targets), [0, 1, 2])  # val carved per class, as files
    assert hub.val.load_image(0).size == (8, 8)


def test_label_mismatch_is_one_sentence(tmp_path: Path) -> None:
    build_hub_folder(tmp_path / "hub", ["cat", "dog", "shark"], SIZES)
    data = card("bad", {"loader": "hf", "args": {"id": "../hub"}}, NAMES, {"train": 9, "val": 3, "test": 6})
    c = load_user_card(write_card(tmp_path / "cards", data))
    with pytest.raises(DatasetError, match="'shark' is not one of the card's classes"):
        load_task(c, None, tmp_path / "splits")


def test_auto_takes_files_when_present_else_the_hub_copy(both: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_user_card(both)
    assert resolve_source(c, None, "auto") == "files"  # a user image folder needs no data root
    from clrbench.data.cards import load_cards

    cifar = load_cards()["cifar10"]
    # Offline (as in tests) with nothing cached the hub copy cannot be read: the files are named.
    assert resolve_source(cifar, tmp_path, "auto") == "files"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    assert resolve_source(cifar, tmp_path, "auto") == "hf"  # no files, a hub copy it can reach
    (tmp_path / "cifar-10-batches-py").mkdir()
    for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
              "test_batch", "batches.meta"):
        (tmp_path / "cifar-10-batches-py" / f).write_text("")
    assert resolve_source(cifar, tmp_path, "auto") == "files"
    with pytest.raises(DatasetError, match="no hub copy"):
        load_task(load_cards()["caltech101"], None, tmp_path / "s", source="hf")


def test_eval_source_hf_and_loader_hf_end_to_end(both: Path, tmp_path: Path) -> None:
    """`clrbench eval --source hf` on the card above, and a `loader: hf` card on the same folder."""
    data = card("minihf", {"loader": "hf", "args": {"id": "../hub", "label_map": {"goldfish": "fish"}}}, NAMES,
                {"train": 9, "val": 3, "test": 6})
    write_card(tmp_path / "cards", data)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "-c", "random:resnet18,width=0.125,stem=cifar",
                              "--tasks", str(tmp_path / "cards"),
                              "--source", "hf", "--results", str(tmp_path / "res"),
                              "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    from clrbench.records import read_records

    recs = {r.task: r for r in read_records(tmp_path / "res")}
    assert set(recs) == {"mini", "minihf"}, res.output
    assert all(r.status == "ok" for r in recs.values()), [r.error for r in recs.values()]
    assert recs["mini"].tags["source"] == "hf" and recs["mini"].split_sizes == {"train": 9, "val": 3, "test": 6}
    # Same hub rows, same carve: the generic loader and the card's hub copy agree.
    assert recs["mini"].split_hash != "" and recs["mini"].predictions["y"] == recs["minihf"].predictions["y"]


def test_data_download_and_verify_hub_copies(both: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--tasks", str(both), "--source", "hf"]
    res = runner.invoke(app, ["data", "download", *args])
    assert res.exit_code == 0 and "is in the Hugging Face cache" in res.output, res.output
    res = runner.invoke(app, ["data", "verify", *args])
    assert res.exit_code == 0 and "ok" in res.output, res.output

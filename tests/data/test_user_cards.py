"""User task cards: files and folders in --tasks, the no-code loaders (image_folder, csv, hf),
name clashes and `clrbench tasks validate FILE`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures import jpeg_bytes
from hub_layout import build_image_folder, card, write_card
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.config import ConfigError
from clrbench.data.images import DatasetError
from clrbench.data.splits import load_task
from clrbench.data.user_cards import load_user_card, select_cards

NAMES = ["cat", "dog", "fish"]
SIZES = {"train": 9, "val": 3, "test": 6}


def _csv_dataset(root: Path) -> None:
    for split, n in (("train", 12), ("test", 6)):
        lines = ["path,label"]
        for i in range(n):
            rel = f"img/{split}_{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(jpeg_bytes(i + (100 if split == "test" else 0)))
            lines.append(f"{rel},{NAMES[::-1][i % 3]}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def test_image_folder_card_mixed_with_shipped_names(tmp_path: Path) -> None:
    build_image_folder(tmp_path / "flowers", NAMES, {"train": 12, "test": 6})
    write_card(tmp_path / "cards", card("myflowers", {"loader": "image_folder", "args": {"path": "../flowers"}},
                                        NAMES, SIZES))
    chosen = select_cards(f"digits,{tmp_path / 'cards'}/")
    assert [(c.name, f is not None) for c, f in chosen] == [("digits", False), ("myflowers", True)]
    data = load_task(chosen[1][0], None, tmp_path / "splits")
    assert data.sizes() == SIZES
    np.testing.assert_array_equal(np.bincount(data.test.targets), [2, 2, 2])
    assert data.train.ids[0].startswith("train/cat/")  # ids relative to the folder: portable hashes


def test_csv_card_maps_label_names_onto_the_card(tmp_path: Path) -> None:
    _csv_dataset(tmp_path / "data")
    path = write_card(tmp_path, card("mycsv", {"loader": "csv", "args": {"path": "data"}}, NAMES, SIZES))
    data = load_task(load_user_card(path), None, tmp_path / "splits")
    assert data.sizes() == SIZES
    # Line i of test.csv is labelled NAMES[::-1][i % 3]: fish, dog, cat, ... -> card indices 2, 1, 0.
    np.testing.assert_array_equal(data.test.targets, [2, 1, 0, 2, 1, 0])


def test_csv_label_unknown_to_the_card_is_one_sentence(tmp_path: Path) -> None:
    _csv_dataset(tmp_path / "data")
    path = write_card(tmp_path, card("mycsv", {"loader": "csv", "args": {"path": "data"}}, ["cat", "dog", "eel"],
                                     SIZES))
    with pytest.raises(DatasetError, match="'fish' is not one of the card's classes"):
        load_task(load_user_card(path), None, tmp_path / "splits")


def test_name_clash_and_bad_cards(tmp_path: Path) -> None:
    write_card(tmp_path / "a", card("digits", {"loader": "image_folder", "args": {"path": "x"}}, NAMES, SIZES))
    with pytest.raises(ConfigError, match="named 'digits', as is a shipped card"):
        select_cards(f"quick,{tmp_path / 'a'}")
    bad = write_card(tmp_path / "b", card("typo", {"loader": "image_folder", "args": {"pth": "x"}}, NAMES, SIZES))
    with pytest.raises(ConfigError, match="takes no argument 'pth'"):
        load_user_card(bad)
    with pytest.raises(ConfigError, match="no card file or folder"):
        select_cards(str(tmp_path / "nothing.yaml"))


def test_tasks_validate_file(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write_card(tmp_path, card("mine", {"loader": "csv", "args": {"path": "data"}}, NAMES, SIZES))
    res = runner.invoke(app, ["tasks", "validate", str(good)])
    assert res.exit_code == 0 and "'mine' v1, loader csv" in " ".join(res.output.split()), res.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nversion: 0\n")
    res = runner.invoke(app, ["tasks", "validate", str(broken)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output

"""The twelve transfer loaders, run on tiny copies in each dataset's real on-disk format.

Everything goes through the code path users run: the card (shipped card + fixture sizes),
``load_task`` with a temporary split folder, the registered loader. No network.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures import BUILDERS, CALTECH_COUNTS, VOC_OBJECTS, build_all, voc_flag  # tests/transfer

import clrbench.data.sources  # noqa: F401 - registers the loaders
from clrbench.data.cards import load_card, load_cards, select_tasks
from clrbench.data.images import LOADERS, DatasetError, FileImages
from clrbench.data.sources.birdsnap import obtained_counts
from clrbench.data.sources.layout import ROOT_DIRS
from clrbench.data.sources.voc import VOC_CLASSES
from clrbench.data.splits import load_task

NAMES = sorted(BUILDERS)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("data")
    return root, build_all(root)


def _load(root: Path, name: str, split: str, **override: Any) -> Any:
    card = load_card(root / "tasks" / f"{name}.yaml") if (root / "tasks").exists() else None
    args = {**(card.source.args if card else {}), **override}
    return LOADERS.get(name)(root / ROOT_DIRS[name], split, **args)


def _one(tmp_path: Path, name: str) -> dict[str, Any]:
    """A private copy of one fixture dataset, for tests that damage it."""
    return build_all(tmp_path, [name])[name]


# ----------------------------------------------------------------------------- shipped cards

PROTOCOL = {  # protocol.md §1.1 / §1.2: metric, classes, train / val / test after carving
    "food101": ("top1", 101, (68175, 7575, 25250)), "cifar10": ("top1", 10, (45000, 5000, 10000)),
    "cifar100": ("top1", 100, (44933, 5067, 10000)), "birdsnap": ("top1", 500, (42405, 4981, 2443)),
    "sun397": ("top1", 397, (15880, 3970, 19850)), "cars": ("top1", 196, (6494, 1650, 8041)),
    "aircraft": ("mean_per_class", 100, (3334, 3333, 3333)),
    "voc2007": ("map11", 20, (2501, 2510, 4952)), "dtd": ("top1", 47, (1880, 1880, 1880)),
    "pets": ("mean_per_class", 37, (2940, 740, 3669)),
    "caltech101": ("mean_per_class", 102, (2550, 510, 6084)),
    "flowers102": ("mean_per_class", 102, (1020, 1020, 6149)),
}


def test_shipped_cards_state_the_protocol() -> None:
    cards = {c.name: c for c in select_tasks("all", load_cards())}
    assert set(cards) == set(PROTOCOL) == set(BUILDERS)
    for name, (metric, classes, sizes) in PROTOCOL.items():
        c = cards[name]
        assert (c.metric, c.num_classes, c.version) == (metric, classes, 1), name
        assert tuple(c.expected_sizes[s] for s in ("train", "val", "test")) == sizes, name
        assert c.source.loader == name and c.source.root_dir == ROOT_DIRS[name]
        assert name in LOADERS
        assert (c.preprocessing.resize, c.preprocessing.crop, c.preprocessing.interpolation) == (
            224, 224, "bicubic")
    assert cards["voc2007"].multilabel and cards["caltech101"].classes == ()


# ----------------------------------------------------------------------------- every loader


@pytest.mark.parametrize("name", NAMES)
def test_loader_counts_labels_class_order_and_splits(built: Any, name: str, tmp_path: Path) -> None:
    root, infos = built
    info = infos[name]
    for split, expect in info["expect"].items():
        got = _load(root, name, split)
        assert len(got) == len(expect), (name, split)
        assert list(got.classes) == info["classes"], name
        if expect and expect[0] is not None and expect[0][1] is not None:
            assert got.targets.tolist() == [lab for _, lab in expect], (name, split)
        if isinstance(got, FileImages) and expect and expect[0] is not None:
            names = [p.name if name != "voc2007" else p.stem for p in got.paths]
            assert names == [n for n, _ in expect], (name, split)
    card = load_card(root / "tasks" / f"{name}.yaml")
    data = load_task(card, root, tmp_path)
    assert data.sizes() == info["sizes"]
    ids = [set(data.train.ids), set(data.val.ids), set(data.test.ids)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert load_task(card, root, tmp_path).split_hash == data.split_hash  # read back, same split


def test_voc_multihot_and_difficult_only_mask(built: Any) -> None:
    root, _ = built
    got = _load(root, "voc2007", "trainval")
    assert got.targets.shape == (8, 20) and got.targets.dtype == np.uint8
    for row, image_id in enumerate(got.ids):
        for k, cls in enumerate(VOC_CLASSES):
            flag = voc_flag(image_id, cls)
            assert got.targets[row, k] == (flag == 1), (image_id, cls)
            assert got.ignore[row, k] == (flag == 0), (image_id, cls)
    dog = VOC_CLASSES.index("dog")
    assert got.ignore[got.ids.index("000008"), dog] and got.targets[got.ids.index("000003"), dog]
    ssl = _load(root, "voc2007", "trainval", difficult="negative")  # ssl-transfer's convention
    assert ssl.ignore is None and np.array_equal(ssl.targets, got.targets)
    assert len(VOC_OBJECTS) == 12


def test_caltech_30_per_class_without_replacement_with_background(built: Any) -> None:
    root, _ = built
    train, test = _load(root, "caltech101", "train"), _load(root, "caltech101", "test")
    assert train.classes[0] == "BACKGROUND_Google" and len(train.classes) == len(CALTECH_COUNTS)
    assert np.bincount(train.targets).tolist() == [3] * len(CALTECH_COUNTS)
    assert np.bincount(test.targets).tolist() == [n - 3 for n in CALTECH_COUNTS.values()]
    assert len(set(train.paths)) == len(train.paths) and not set(train.paths) & set(test.paths)
    assert all(p.parent.name == train.classes[t] for p, t in zip(train.paths, train.targets, strict=True))
    again = _load(root, "caltech101", "train")
    assert again.paths == train.paths  # fixed seed
    other = [_load(root, "caltech101", "train", seed=s).paths for s in range(1, 6)]
    assert any(o != train.paths for o in other)
    with pytest.raises(DatasetError, match="fewer than the 6 drawn"):
        _load(root, "caltech101", "train", train_per_class=6)


def test_birdsnap_counts_only_the_images_obtained(built: Any, tmp_path: Path) -> None:
    root, _infos = built
    assert obtained_counts(root / "birdsnap") == {"train": (10, 12), "test": (5, 6)}
    train = _load(root, "birdsnap", "train")
    assert train.classes[1] == "Blue Jay" and np.bincount(train.targets).tolist() == [3, 3, 4]
    _one(tmp_path, "birdsnap")
    shutil.rmtree(tmp_path / "birdsnap" / "download")
    with pytest.raises(DatasetError, match="clrbench data download --tasks birdsnap"):
        _load(tmp_path, "birdsnap", "train")
    with (tmp_path / "birdsnap" / "test_images.txt").open("a") as f:
        f.write("Mallard/999.jpg\n")
    with pytest.raises(DatasetError, match=r"not in images.txt"):
        _load(tmp_path, "birdsnap", "test")


def test_sun397_keeps_the_partition_only(built: Any) -> None:
    root, _ = built
    train = _load(root, "sun397", "train")
    assert len(train) == 12 and all("sun_h" not in p.name for p in train.paths)  # 8th is unlisted
    assert train.classes[1] == "bakery/shop"
    p2 = _load(root, "sun397", "train", partition=2)
    assert not set(p2.paths) & set(train.paths)
    with pytest.raises(DatasetError, match=r"Partitions/Training_03.txt"):
        _load(root, "sun397", "train", partition=3)


# ----------------------------------------------------------------------------- bad input


def test_wrong_layout_names_the_expected_file_and_where(tmp_path: Path) -> None:
    _one(tmp_path, "food101")
    (tmp_path / "food-101" / "meta" / "train.json").unlink()
    with pytest.raises(DatasetError, match=r"expected meta/train.json in .*food-101"):
        _load(tmp_path, "food101", "train")
    with pytest.raises(DatasetError, match="does not exist"):
        LOADERS.get("dtd")(tmp_path / "dtd", "train")
    with pytest.raises(DatasetError, match="no data root"):
        LOADERS.get("pets")(None, "test")
    with pytest.raises(DatasetError, match="source splits train, test, not 'val'"):
        LOADERS.get("food101")(tmp_path / "food-101", "val")


def test_label_file_that_does_not_match_the_images(tmp_path: Path) -> None:
    for name in ("pets", "aircraft", "dtd", "voc2007", "cars", "flowers102", "food101"):
        _one(tmp_path, name)
    (tmp_path / "oxford-iiit-pet" / "images" / "Abyssinian_2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 of the 12 images listed in .*trainval.txt"):
        _load(tmp_path, "pets", "trainval")
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    (data / "images_variant_test.txt").write_text("1000200 Boeing 999\n")
    with pytest.raises(DatasetError, match="Boeing 999"):
        _load(tmp_path, "aircraft", "test")
    (tmp_path / "dtd" / "dtd" / "labels" / "val1.txt").write_text("banded/banded_0003.jpg\n")
    with pytest.raises(DatasetError, match="names 1 classes but dtd/images holds 3"):
        _load(tmp_path, "dtd", "val")
    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000010.xml").unlink()
    with pytest.raises(DatasetError, match=r"test.txt are not on disk"):
        _load(tmp_path, "voc2007", "test")
    shutil.rmtree(tmp_path / "stanford_cars" / "cars_test")
    with pytest.raises(DatasetError, match="expected cars_test"):
        _load(tmp_path, "cars", "test")
    (tmp_path / "flowers-102" / "setid.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match="torchvision could not parse"):
        _load(tmp_path, "flowers102", "train")
    (tmp_path / "food-101" / "meta" / "classes.txt").write_text("apple_pie\n")
    with pytest.raises(DatasetError, match="do not belong together"):
        _load(tmp_path, "food101", "test")


def test_a_corrupt_image_is_counted_not_fatal(tmp_path: Path) -> None:
    import torch

    from clrbench.data.cards import Preprocessing
    from clrbench.eval.features import extract_features
    from clrbench.weights.adapters import Encoder

    info = _one(tmp_path, "flowers102")
    (tmp_path / "flowers-102" / "jpg" / "image_00001.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    card = load_card(tmp_path / "tasks" / "flowers102.yaml")
    data = load_task(card, tmp_path, tmp_path / "splits")  # lazy: loading never decodes
    assert data.sizes() == info["sizes"]
    with pytest.raises(OSError):
        data.train.load_image(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten())
    enc = Encoder(module, {"feature_dim": 4, "input_range": [0.0, 1.0]}, "tiny", "0", "test", "")
    _, valid = extract_features(enc, data.train, Preprocessing(resize=8, crop=8),
                                tmp_path / "f.npy", batch_size=4, dtype="float32")
    assert valid.tolist() == [False] + [True] * (len(data.train) - 1)

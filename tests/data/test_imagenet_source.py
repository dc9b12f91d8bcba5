"""The imagenet card on a tiny ILSVRC-2012 layout: train class folders, val flat with the devkit's
labels (or in class folders), val carved from train, test = the official val, fp16 features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures import jpeg_bytes
from scipy.io import savemat

from clrbench.data.cards import cards_dir
from clrbench.data.images import DatasetError
from clrbench.data.sources.imagenet import load_imagenet

WNIDS = ["n01440764", "n01443537", "n02102040"]  # sorted: the class order
DEVKIT_IDS = {"n02102040": 1, "n01440764": 2, "n01443537": 3}  # ILSVRC2012_ID is not the sorted order


def build_imagenet(root: Path, per_class: int = 6, val_flat: bool = True) -> list[int]:
    """Write the layout; returns the val labels (class index) in file-name order."""
    for c, w in enumerate(WNIDS):
        for i in range(per_class):
            p = root / "train" / w / f"{w}_{i}.JPEG"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(jpeg_bytes(100 * c + i))
    val = [k % 3 for k in range(6)]
    (root / "val").mkdir(parents=True, exist_ok=True)
    for k, c in enumerate(val, 1):
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        p = root / "val" / (name if val_flat else f"{WNIDS[c]}/{name}")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(jpeg_bytes(1000 + k))
    if val_flat:
        dev = root / "ILSVRC2012_devkit_t12" / "data"
        dev.mkdir(parents=True)
        dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")]
        synsets = np.array([(DEVKIT_IDS[w], w, 0) for w in WNIDS] + [(1001, "n00000001", 2)], dtype=dtype)
        savemat(dev / "meta.mat", {"synsets": synsets})
        (dev / "ILSVRC2012_validation_ground_truth.txt").write_text(
            "".join(f"{DEVKIT_IDS[WNIDS[c]]}\n" for c in val))
    return val


@pytest.mark.parametrize("flat", [True, False])
def test_loader_reads_both_val_layouts(tmp_path: Path, flat: bool) -> None:
    val = build_imagenet(tmp_path, val_flat=flat)
    train = load_imagenet(tmp_path, "train")
    assert len(train) == 18 and train.classes == tuple(WNIDS)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(train.targets, np.repeat([0, 1, 2], 6))
    test = load_imagenet(tmp_path, "val")
    k = [int(i[-13:-5]) for i in test.ids]  # ILSVRC2012_val_<k>.JPEG, in either layout
    np.testing.assert_array_equal(test.targets, [val[j - 1] for j in k])
    assert sorted(k) == list(range(1, 7))


def test_flat_val_without_labels_is_one_sentence(tmp_path: Path) -> None:
    build_imagenet(tmp_path)
    (tmp_path / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt").unlink()
    with pytest.raises(DatasetError, match="gives their labels"):
        load_imagenet(tmp_path, "val")


def test_imagenet_card_end_to_end_with_fp16_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped card (sizes scaled to the fixture) through run_linear, features stored as fp16."""
    import clrbench.eval.features as features
    from clrbench.eval.jobs import EvalJob
    from clrbench.eval.linear import run_linear

    build_imagenet(tmp_path / "data" / "imagenet")
    card = yaml.safe_load((cards_dir() / "imagenet.yaml").read_text())
    assert card["groups"] == ["imagenet"] and card["preprocessing"]["resize"] == 256
    card.update(num_classes=3, expected_sizes={"train": 15, "val": 3, "test": 6})
    card["splits"]["val"]["size"] = 3
    card["preprocessing"].update(resize=36, crop=32)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "imagenet.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setattr(features, "FP16_ABOVE", 0)  # every split counts as large
    job = EvalJob("random:resnet18,width=0.125,stem=cifar", "rnd", "imagenet", "linear", str(tmp_path / "data"),
                  str(tmp_path / "cache"), str(tmp_path / "tasks"))
    rec = run_linear(job)
    assert rec.status == "ok" and rec.split_sizes == {"train": 15, "val": 3, "test": 6}
    assert np.bincount(rec.predictions["y"]).tolist() == [2, 2, 2]
    stored = [np.load(p, mmap_mode="r") for p in (tmp_path / "cache" / "features").glob("*.npy")
              if not p.name.endswith(".valid.npy")]
    assert len(stored) == 3 and all(a.dtype == np.float16 for a in stored)

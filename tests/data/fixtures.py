"""Tiny copies of the twelve transfer datasets in their real on-disk layout and file formats.

Each builder writes a few 8x8 images plus the dataset's own label files (CIFAR pickled batches,
Food-101 ``meta/*.json``, Flowers and Cars ``.mat`` files, VOC XML + ImageSets, ...) exactly
where the official archive (and torchvision) put them, and returns what a loader must yield.
:func:`build_all` also writes fixture task cards (the shipped card with the fixture's sizes) to
``ROOT/tasks``, so the CLI can run end to end on them::

    python -m tests.transfer.fixtures OUTDIR
    clrbench data verify --tasks all --root OUTDIR --tasks-dir OUTDIR/tasks --no-md5
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from scipy.io import savemat

from clrbench.data.cards import cards_dir

Info = dict[str, Any]
UNREACHABLE = "http://127.0.0.1:9/"  # discard port: nothing ever answers a fixture URL


def jpeg_bytes(seed: int, size: int = 8) -> bytes:
    """A tiny JPEG whose pixels depend on ``seed``."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _img(path: Path, seed: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(seed)
    path.write_bytes(data)
    return data


def _text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in lines))


def _mat(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, data)


def _info(sources: dict[str, list], sizes: tuple[int, int, int], classes: list[str],
          card: dict[str, Any] | None = None) -> Info:
    """``expect[split]`` is [(file name or id, label)] in the order the loader must yield."""
    return {"expect": sources, "sources": {k: len(v) for k, v in sources.items()},
            "sizes": dict(zip(("train", "val", "test"), sizes, strict=True)), "num_classes": len(classes),
            "classes": classes, "card": card or {}}


def _val(**rule: int) -> dict[str, Any]:
    return {"splits": {"val": {"carve_from": rule.pop("carve_from", "train"), **rule, "seed": 0}}}


def build_food101(root: Path) -> Info:
    base, classes = root / "food-101", ["apple_pie", "baklava", "churros"]
    meta: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    expect: dict[str, list] = {"train": [], "test": []}
    for c, name in enumerate(classes):
        for i in range(6):
            split = "train" if i < 4 else "test"
            rel = f"{name}/{1000 * c + i}"
            _img(base / "images" / f"{rel}.jpg", 100 + 10 * c + i)
            meta[split].setdefault(name, []).append(rel)
    for split in ("train", "test"):
        _text(base / "meta" / f"{split}.txt", [r for v in meta[split].values() for r in v])
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
        expect[split] = [(f"{r.split('/')[1]}.jpg", classes.index(c))
                         for c, v in meta[split].items() for r in v]
    _text(base / "meta" / "classes.txt", classes)
    _text(base / "meta" / "labels.txt", [c.replace("_", " ").capitalize() for c in classes])
    return _info(expect, (9, 3, 6), classes, {**_val(size=3), "classes": classes})


def _pickle(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def build_cifar10(root: Path) -> Info:
    base = root / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    rng = np.random.default_rng(10)
    expect: dict[str, list] = {"train": [], "test": []}
    for b, fname in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        n = 6 if b < 5 else 20
        labels = [(b * 6 + j) % 10 for j in range(n)]
        data = rng.integers(0, 255, (n, 3072), dtype=np.uint8)
        _pickle(base / fname, {"batch_label": fname, "labels": labels, "data": data,
                               "filenames": [f"{fname}_{j}.png" for j in range(n)]})
        expect["test" if b == 5 else "train"] += [(str(j), lab) for j, lab in enumerate(labels)]
    _pickle(base / "batches.meta", {"num_cases_per_batch": 6, "label_names": names, "num_vis": 3072})
    return _info(expect, (20, 10, 20), names, _val(size=10))


def build_cifar100(root: Path) -> Info:
    base, fine = root / "cifar-100-python", ["apple", "aquarium_fish", "baby", "bear", "beaver"]
    rng = np.random.default_rng(100)
    expect: dict[str, list] = {}
    for split, n in (("train", 15), ("test", 10)):
        labels = [j % 5 for j in range(n)]
        _pickle(base / split, {"batch_label": split, "fine_labels": labels,
                               "coarse_labels": [lab // 3 for lab in labels],
                               "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                               "filenames": [f"{split}_{j}.png" for j in range(n)]})
        expect[split] = [(str(j), lab) for j, lab in enumerate(labels)]
    _pickle(base / "meta", {"fine_label_names": fine, "coarse_label_names": ["a", "b"]})
    return _info(expect, (10, 5, 10), fine, {**_val(size=5), "classes": fine})


BIRDSNAP_PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left_cheek", "left_eye",
                  "left_leg", "left_wing", "nape", "right_cheek", "right_eye", "right_leg",
                  "right_wing", "tail", "throat"]


def build_birdsnap(root: Path, url_base: str = UNREACHABLE) -> Info:
    """3 species x 6 listed images, 2 of each listed as test; 3 were never obtained."""
    base = root / "birdsnap"
    species = [("Acadian Flycatcher", "Empidonax virescens", "Acadian_Flycatcher"),
               ("Blue Jay", "Cyanocitta cristata", "Blue_Jay"), ("Mallard", "Anas platyrhynchos", "Mallard")]
    _text(base / "species.txt", ["id\tcommon\tscientific\tdir"]
          + [f"{i + 1}\t{c}\t{s}\t{d}" for i, (c, s, d) in enumerate(species)])
    header = ["url", "md5", "path", "species_id", "bb_x1", "bb_y1", "bb_x2", "bb_y2"]
    header += [f"{p}_{a}" for p in BIRDSNAP_PARTS for a in "xy"]
    rows, test = ["\t".join(header)], []
    never = {(0, 2), (1, 2), (2, 0)}  # (species, image) pairs whose download "failed"
    expect: dict[str, list] = {"train": [], "test": []}
    for s, (_, _, d) in enumerate(species):
        for i in range(6):
            path = f"{d}/{100 * s + i}.jpg"
            data = jpeg_bytes(300 + 10 * s + i)
            if (s, i) not in never:
                _img(base / "download" / "images" / path, 300 + 10 * s + i)
                expect["test" if i < 2 else "train"].append((path.split("/")[1], s))
            if i < 2:
                test.append(path)
            md5 = hashlib.md5(data).hexdigest()
            rows.append("\t".join([url_base + path, md5, path, str(s + 1), "1", "1", "7", "7"]
                                  + ["-1"] * (2 * len(BIRDSNAP_PARTS))))
    _text(base / "images.txt", rows)
    _text(base / "test_images.txt", ["path", *test])
    info = _info(expect, (7, 3, 5), [c for c, _, _ in species], _val(size=3))
    info["listed"] = {"train": 12, "test": 6}
    return info


def build_sun397(root: Path) -> Info:
    base, classes = root / "SUN397", ["/a/abbey", "/b/bakery/shop", "/c/cathedral/outdoor"]
    _text(base / "ClassName.txt", classes)
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for c, cls in enumerate(classes):
        for i in range(8):  # 4 train, 3 test, 1 in no partition-1 list
            rel = f"{cls}/sun_{'abcdefgh'[i]}{c}fixture.jpg"
            _img(base / rel.lstrip("/"), 500 + 10 * c + i)
            if i < 7:
                lists["train" if i < 4 else "test"].append(rel)
    _text(base / "Partitions" / "Training_01.txt", lists["train"])
    _text(base / "Partitions" / "Testing_01.txt", lists["test"])
    _text(base / "Partitions" / "Training_02.txt", lists["test"])  # a different partition
    expect = {k: [(r.rsplit("/", 1)[1], next(c for c, n in enumerate(classes) if r.startswith(n + "/")))
                  for r in v] for k, v in lists.items()}
    return _info(expect, (9, 3, 9), [c[3:] for c in classes], _val(per_class=1))


def _struct(records: list[dict[str, Any]]) -> np.ndarray:
    """A MATLAB 1 x n struct array, as the Cars devkit stores its annotations."""
    arr = np.zeros((1, len(records)), dtype=[(k, "O") for k in records[0]])
    for i, r in enumerate(records):
        for k, v in r.items():
            arr[0, i][k] = v
    return arr


def build_cars(root: Path) -> Info:
    base = root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    _mat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([names], dtype=object)})
    expect: dict[str, list] = {}
    for split, n in (("train", 4), ("test", 2)):
        recs = []
        for j in range(3 * n):
            fname = f"{j + 1:05d}.jpg"
            _img(base / f"cars_{split}" / fname, 700 + 20 * (split == "test") + j)
            box = {f"bbox_{k}": np.array([[v]], np.uint16) for k, v in
                   (("x1", 1), ("y1", 1), ("x2", 7), ("y2", 7))}
            recs.append({**box, "class": np.array([[j % 3 + 1]], np.uint8), "fname": fname})
        expect[split] = [(r["fname"], int(r["class"][0, 0]) - 1) for r in recs]
        if split == "train":
            _mat(base / "devkit" / "cars_train_annos.mat", {"annotations": _struct(recs)})
        else:
            _mat(base / "cars_test_annos_withlabels.mat", {"annotations": _struct(recs)})
            unlabeled = [{k: v for k, v in r.items() if k != "class"} for r in recs]
            _mat(base / "devkit" / "cars_test_annos.mat", {"annotations": _struct(unlabeled)})
    return _info(expect, (9, 3, 6), names, {**_val(size=3), "classes": names})


def build_aircraft(root: Path) -> Info:
    data, variants = root / "fgvc-aircraft-2013b" / "data", ["707-320", "A300B4", "Cessna 172"]
    _text(data / "variants.txt", variants)
    expect: dict[str, list] = {}
    for s, split in enumerate(("train", "val", "test")):
        ids = [(f"{1000000 + 100 * s + j:07d}", j % 3) for j in range(6)]
        for k, (i, _) in enumerate(ids):
            _img(data / "images" / f"{i}.jpg", 900 + 10 * s + k)
        _text(data / f"images_variant_{split}.txt", [f"{i} {variants[c]}" for i, c in ids])
        expect[split] = [(f"{i}.jpg", c) for i, c in ids]
    expect["trainval"] = expect["train"] + expect["val"]
    _text(data / "images_variant_trainval.txt",
          [f"{n[:-4]} {variants[c]}" for n, c in expect["trainval"]])
    return _info(expect, (6, 6, 6), variants, {"classes": variants})


VOC_OBJECTS: dict[str, list[tuple[str, int]]] = {  # image id -> (class, difficult) per object
    "000001": [("dog", 0), ("person", 0)], "000002": [("cat", 1), ("bird", 0)],
    "000003": [("dog", 1), ("dog", 0)], "000004": [("car", 0)],
    "000005": [("aeroplane", 0), ("person", 0)], "000006": [("horse", 0)],
    "000007": [("cat", 0)], "000008": [("dog", 1), ("sofa", 0)],
    "000009": [("person", 0)], "000010": [("bicycle", 0), ("person", 1)],
    "000011": [("tvmonitor", 0)], "000012": [("sheep", 0), ("sheep", 1)],
}
VOC_SETS = {"train": ["000001", "000002", "000003", "000004"],
            "val": ["000005", "000006", "000007", "000008"],
            "test": ["000009", "000010", "000011", "000012"]}


def voc_flag(image_id: str, cls: str) -> int:
    """The devkit's value for (image, class): 1 present, 0 difficult-only, -1 absent."""
    objs = VOC_OBJECTS[image_id]
    if any(n == cls and not d for n, d in objs):
        return 1
    return 0 if any(n == cls for n, _ in objs) else -1


def _voc_xml(i: str, objects: list[tuple[str, int]]) -> str:
    objs = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
                   f"<difficult>{d}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>7</xmax>"
                   f"<ymax>7</ymax></bndbox></object>" for n, d in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{i}.jpg</filename><size><width>8"
            f"</width><height>8</height><depth>3</depth></size><segmented>0</segmented>{objs}"
            "</annotation>")


def build_voc2007(root: Path) -> Info:
    from clrbench.data.sources.voc import VOC_CLASSES

    base = root / "VOCdevkit" / "VOC2007"
    for k, (i, objs) in enumerate(VOC_OBJECTS.items()):
        _img(base / "JPEGImages" / f"{i}.jpg", 1100 + k)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{i}.xml").write_text(_voc_xml(i, objs))
    sets = {**VOC_SETS, "trainval": VOC_SETS["train"] + VOC_SETS["val"]}
    main = base / "ImageSets" / "Main"
    for split, ids in sets.items():
        _text(main / f"{split}.txt", ids)
        for c in VOC_CLASSES:  # the devkit's per-class lists: 1 present, -1 absent, 0 difficult-only
            _text(main / f"{c}_{split}.txt", [f"{i} {voc_flag(i, c):2d}" for i in ids])
    return _info({k: [(i, None) for i in v] for k, v in sets.items()}, (4, 4, 4), list(VOC_CLASSES))


def build_dtd(root: Path) -> Info:
    base, classes = root / "dtd" / "dtd", ["banded", "blotchy", "braided"]
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, name in enumerate(classes):
        for i in range(6):
            rel = f"{name}/{name}_{i + 1:04d}.jpg"
            _img(base / "images" / rel, 1300 + 10 * c + i)
            lists[("train", "val", "test")[i // 2]].append(rel)
    for split, rels in lists.items():
        _text(base / "labels" / f"{split}1.txt", rels)
        _text(base / "labels" / f"{split}2.txt", rels[::-1])
    expect = {k: [(r.split("/")[1], classes.index(r.split("/")[0])) for r in v] for k, v in lists.items()}
    return _info(expect, (6, 6, 6), classes, {"classes": classes})


def build_pets(root: Path) -> Info:
    base = root / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 1), ("american_pit_bull_terrier", 2, 2)]
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for c, (breed, species, breed_id) in enumerate(breeds):
        for i in range(6):
            _img(base / "images" / f"{breed}_{i + 1}.jpg", 1500 + 10 * c + i)
            lines["trainval" if i < 4 else "test"].append(f"{breed}_{i + 1} {c + 1} {species} {breed_id}")
    for split, ls in lines.items():
        _text(base / "annotations" / f"{split}.txt", ls)
    _text(base / "annotations" / "list.txt", ["#Image CLASS-ID SPECIES BREED ID", *lines["trainval"],
                                              *lines["test"]])
    expect = {k: [(f"{s.split()[0]}.jpg", int(s.split()[1]) - 1) for s in v] for k, v in lines.items()}
    classes = ["Abyssinian", "American Bulldog", "American Pit Bull Terrier"]
    return _info(expect, (9, 3, 6), classes, {**_val(carve_from="train", per_class=1), "classes": classes})


CALTECH_COUNTS = {"BACKGROUND_Google": 6, "Faces_easy": 5, "accordion": 7, "airplanes": 5}


def build_caltech101(root: Path) -> Info:
    base = root / "caltech101" / "101_ObjectCategories"
    for c, (name, n) in enumerate(CALTECH_COUNTS.items()):
        for i in range(n):
            _img(base / name / f"image_{i + 1:04d}.jpg", 1700 + 10 * c + i)
    classes = list(CALTECH_COUNTS)
    # The 3/class draw is the loader's to make; the test checks it, so no per-file expectation.
    info = _info({"train": [None] * 12, "test": [None] * 11}, (8, 4, 11), classes,
                 {**_val(per_class=1), "source": {"args": {"train_per_class": 3, "seed": 0}},
                  "classes": classes})
    info["per_class"] = 3
    return info


def build_flowers102(root: Path) -> Info:
    base = root / "flowers-102"
    labels = np.repeat(np.arange(1, 4), 7)  # image ids 1..21, 7 per class
    ids = {"trnid": [], "valid": [], "tstid": []}
    for k in range(len(labels)):
        _img(base / "jpg" / f"image_{k + 1:05d}.jpg", 1900 + k)
        ids[("trnid", "trnid", "valid", "valid", "tstid", "tstid", "tstid")[k % 7]].append(k + 1)
    _mat(base / "imagelabels.mat", {"labels": labels[None].astype(np.uint8)})
    _mat(base / "setid.mat", {k: np.array([v], np.uint16) for k, v in ids.items()})
    expect = {split: [(f"image_{i:05d}.jpg", int(labels[i - 1]) - 1) for i in ids[key]]
              for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}
    names = yaml.safe_load((cards_dir() / "flowers102.yaml").read_text())["classes"]
    return _info(expect, (6, 6, 9), names)  # the 102 names are torchvision's, as in the card


BUILDERS: dict[str, Callable[[Path], Info]] = {
    "food101": build_food101, "cifar10": build_cifar10, "cifar100": build_cifar100,
    "birdsnap": build_birdsnap, "sun397": build_sun397, "cars": build_cars,
    "aircraft": build_aircraft, "voc2007": build_voc2007, "dtd": build_dtd, "pets": build_pets,
    "caltech101": build_caltech101, "flowers102": build_flowers102,
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def fixture_card(name: str, info: Info) -> dict[str, Any]:
    """The shipped card of ``name`` with the fixture's classes, split rules and sizes."""
    card = yaml.safe_load((cards_dir() / f"{name}.yaml").read_text())
    card = _merge(card, info["card"])
    card["num_classes"], card["expected_sizes"] = info["num_classes"], info["sizes"]
    if len(card.get("classes", [])) != info["num_classes"]:
        card.pop("classes", None)
    return card


def build_all(root: Path, names: list[str] | None = None) -> dict[str, Info]:
    """Write every fixture dataset under ``root`` and its card under ``root/tasks``."""
    root.mkdir(parents=True, exist_ok=True)
    infos = {n: BUILDERS[n](root) for n in (names or BUILDERS)}
    for n, info in infos.items():
        path = root / "tasks" / f"{n}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(fixture_card(n, info), sort_keys=False))
    return infos


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fixtures-data")
    built = build_all(out)
    for n, i in built.items():
        print(f"{n:12s} {i['sizes']}")
    print(f"data root: {out}   cards: {out / 'tasks'}")

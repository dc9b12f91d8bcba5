"""Tiny datasets in the Hugging Face hub layout, and user cards over them, for offline tests.

``build_hub_folder`` writes what a hub dataset repository holds: ``data/<split>-00000-of-00001.parquet``
(an ``image`` struct column of encoded JPEG bytes, an integer ``label`` column) and the dataset
card ``README.md`` whose YAML declares the features (a ClassLabel with the class names) and the
``configs`` mapping files to splits; ``datasets.load_dataset(folder)`` reads it as the hub copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from fixtures import jpeg_bytes


def build_hub_folder(root: Path, names: list[str], sizes: dict[str, int], seed: int = 0) -> dict[str, list[int]]:
    """Write the hub layout under ``root``; returns the labels per split (row order)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    labels: dict[str, list[int]] = {}
    for k, (split, n) in enumerate(sizes.items()):
        labels[split] = [i % len(names) for i in range(n)]
        images = [{"bytes": jpeg_bytes(seed + 1000 * k + i), "path": None} for i in range(n)]
        table = pa.table({"image": images, "label": pa.array(labels[split], pa.int64())})
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    meta = {
        "dataset_info": {"features": [
            {"name": "image", "dtype": "image"},
            {"name": "label", "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}},
        ]},
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in sizes]}],
    }
    (root / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n# tiny test set\n")
    return labels


def build_image_folder(root: Path, names: list[str], sizes: dict[str, int], seed: int = 0) -> None:
    """The same kind of images as ImageFolder: ``root/<split>/<class>/<i>.jpg``."""
    for k, (split, n) in enumerate(sizes.items()):
        for i in range(n):
            path = root / split / names[i % len(names)] / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(seed + 1000 * k + i))


def card(name: str, source: dict[str, Any], classes: list[str] | None, sizes: dict[str, int],
         val: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A complete user card (as a dict) with train / val (carved) / test."""
    out: dict[str, Any] = {
        "name": name, "version": 1, "title": name, "citation": "test fixture", "source": source,
        "num_classes": len(classes) if classes else extra.pop("num_classes"), "metric": "top1",
        "splits": {"train": {"source": "train"},
                   "val": val or {"carve_from": "train", "per_class": 1, "seed": 0},
                   "test": {"source": "test"}},
        "expected_sizes": sizes,
        "preprocessing": {"resize": 32, "crop": 32, "interpolation": "bilinear"},
        **extra,
    }
    if classes:
        out["classes"] = classes
    return out


def write_card(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path

"""Deterministic train / val / test splits, written to disk once and read back.

Where a dataset has no official validation split, val is carved from train by a stratified
random draw with a fixed seed, sized as in BYOL Table 10 (protocol.md §0, §1.2). The index
lists are written the first time and read back afterwards, so a split never silently changes;
their hash goes into every record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.atomic import write_text
from clrbench.data.cards import SPLITS, SplitSpec, TaskCard
from clrbench.data.images import LOADERS, DatasetError, LabeledImages


@dataclass
class TaskData:
    """The three splits of one task, with the hash of their index lists."""

    train: LabeledImages
    val: LabeledImages
    test: LabeledImages
    split_hash: str
    source: str = "files"  # "files" or "hf" (the hub copy)
    tags: dict[str, Any] = field(default_factory=dict)  # for the record: source, limit

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def carve(targets: np.ndarray, spec: SplitSpec) -> np.ndarray:
    """Indices (sorted) of a stratified draw from ``targets`` following ``spec``.

    Multi-label targets (n, C) are stratified by their first positive class.
    """
    y = targets.argmax(1) if targets.ndim == 2 else targets
    rng = np.random.default_rng(spec.seed)
    classes = np.unique(y)
    if spec.size is not None:
        if spec.size >= len(y):
            raise DatasetError(f"cannot carve {spec.size} images from a split of {len(y)}.")
        frac = spec.size / len(y)
    picked = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        if spec.per_class is not None:
            k = spec.per_class
        elif spec.fraction is not None:
            k = round(len(idx) * spec.fraction)
        else:
            k = round(len(idx) * frac)
        if k >= len(idx):
            raise DatasetError(
                f"class {c} has {len(idx)} images; cannot carve {k} and keep any for training."
            )
        picked.append(rng.choice(idx, k, replace=False))
    out = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
    if spec.size is not None and len(out) != spec.size:
        # Rounding per class can miss the total by a few; fix it deterministically.
        rest = np.setdiff1d(np.arange(len(y)), out)
        if len(out) < spec.size:
            out = np.sort(np.concatenate([out, rng.choice(rest, spec.size - len(out), replace=False)]))
        else:
            out = np.sort(rng.choice(out, spec.size, replace=False))
    return out


def _resolve_indices(card: TaskCard, sources: dict[str, LabeledImages]) -> dict[str, tuple[str, np.ndarray]]:
    """Map each of train/val/test to (source split name, indices into it)."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name in SPLITS:
        spec = card.splits[name]
        if spec.source is not None:
            out[name] = (spec.source, np.arange(len(sources[spec.source])))
    for name in SPLITS:
        spec = card.splits[name]
        if spec.carve_from is None:
            continue
        src_name, parent = out[spec.carve_from]
        picked = parent[carve(sources[src_name].targets[parent], spec)]
        out[name] = (src_name, picked)
        out[spec.carve_from] = (src_name, np.setdiff1d(parent, picked))
    return out


def _ids_hash(images: LabeledImages, indices: np.ndarray) -> str:
    h = hashlib.sha256()
    for i in indices:
        h.update(images.ids[int(i)].encode() + b"\n")
    return h.hexdigest()


def _sources(card: TaskCard, data_root: Path | None, source: str) -> dict[str, LabeledImages]:
    """The source splits the card names, from its files or its hub copy, classes on the card's."""
    import clrbench.data.generic  # registers image_folder, csv
    import clrbench.data.sources  # noqa: F401 - registers the twelve transfer loaders
    from clrbench.data.classes import align_to_card
    from clrbench.data.generic import GENERIC_LOADERS
    from clrbench.data.hub import hub_loader

    names = sorted({s.source for s in card.splits.values() if s.source is not None})
    if source == "hf":
        load, label_map = hub_loader(card)
        out = {n: load(None, n) for n in names}
    else:
        loader = LOADERS.get(card.source.loader)
        root = data_root / card.source.root_dir if (data_root and card.source.root_dir) else data_root
        out = {n: loader(root, n, **card.source.args) for n in names}
        label_map = dict(card.source.args.get("label_map") or {})
        if card.source.loader not in GENERIC_LOADERS:
            return out
    for n, images in out.items():
        align_to_card(images, card.classes, card.num_classes, label_map, f"{card.name} ({n})")
    return out


def split_file(card: TaskCard, split_dir: Path, source: str = "files") -> Path:
    """Where the index lists of ``card`` are kept; a hub copy's apart from the files'."""
    return split_dir / f"{card.name}@v{card.version}{'+hf' if source == 'hf' else ''}.json"


def stored_split_hash(card: TaskCard, split_dir: Path, source: str = "files",
                      limit: int | None = None) -> str | None:
    """The hash :func:`load_task` gives these splits, from the stored index lists alone, or None
    before they are written: what a cached job needs of its task without loading an image.
    ``source`` is a resolved one (files or hf)."""
    try:
        digest = hashlib.sha256(split_file(card, split_dir, source).read_bytes())
    except OSError:
        return None
    if limit:
        digest.update(f"limit={int(limit)}".encode())
    return digest.hexdigest()[:16]


def task_tags(source: str, limit: int | None) -> dict[str, Any]:
    """What a record says of where its images came from: the hub copy, a --limit smoke run."""
    from clrbench.data.limit import LIMIT_TAG

    tags: dict[str, Any] = {"source": source} if source != "files" else {}
    if limit:
        tags[LIMIT_TAG] = int(limit)
    return tags


def load_task(card: TaskCard, data_root: Path | None, split_dir: Path, source: str = "files",
              limit: int | None = None) -> TaskData:
    """Build the three splits of ``card``, reading or writing their index lists in ``split_dir``.

    Args:
        source: ``files`` (the data root), ``hf`` (the card's hub copy) or ``auto``
            (:func:`clrbench.data.hub.resolve_source`).
        limit: at most this many images per split (:mod:`clrbench.data.limit`).

    Raises:
        DatasetError: the data is missing or the stored index lists no longer fit it.
    """
    from clrbench.data.hub import resolve_source
    from clrbench.data.limit import check_limit, limit_indices

    source = resolve_source(card, data_root, source)
    sources = _sources(card, data_root, source)
    path = split_file(card, split_dir, source)
    if path.exists():
        stored = json.loads(path.read_text())
        idx = {k: (v["source"], np.asarray(v["indices"], np.int64)) for k, v in stored.items()}
        for k, (src, ind) in idx.items():
            # Indices alone could silently point at other images when a source grows (Birdsnap's
            # obtained images): the hash of the image ids must match too.
            fits = src in sources and (not len(ind) or ind.max() < len(sources[src]))
            if not fits or _ids_hash(sources[src], ind) != stored[k].get("ids_sha256"):
                raise DatasetError(
                    f"the stored {k} split of {card.name} ({path}) does not fit the data found; "
                    "the dataset changed since the split was written. Delete the file to re-carve."
                )
    else:
        idx = _resolve_indices(card, sources)
        text = json.dumps({k: {"source": s, "indices": i.tolist(), "ids_sha256": _ids_hash(sources[s], i)}
                           for k, (s, i) in idx.items()})
        write_text(path, text)
    if limit is not None and check_limit(limit):
        idx = limit_indices(idx, {n: s.targets for n, s in sources.items()}, limit)
    split_hash = stored_split_hash(card, split_dir, source, limit)
    assert split_hash is not None  # the file was just read or written
    parts = {k: sources[s].subset(i) for k, (s, i) in idx.items()}
    for part in parts.values():
        part.num_classes = card.num_classes
    return TaskData(parts["train"], parts["val"], parts["test"], split_hash, source, task_tags(source, limit))

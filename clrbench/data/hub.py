"""Hugging Face hub copies as sources: ``clrbench eval --source hf|files|auto`` and the ``hf`` loader.

Everything goes through ``datasets.load_dataset``, so the Hugging Face cache and offline
variables (``HF_HOME``, ``HF_DATASETS_CACHE``, ``HF_DATASETS_OFFLINE``, ``HF_HUB_OFFLINE``)
behave as everywhere else. The Arrow table is memory-mapped; labels are read from their
column without touching an image, and each image is decoded only when asked for
(:class:`~clrbench.data.images.HFImages`). A hub split maps onto a card's *source* split (the
card's ``source.hub.splits``), so val is carved exactly as for the files; the split index
lists of a hub copy are stored apart from those of the files (``<card>@v<N>+hf.json``) and
their ids name the hub copy, so records of the two never share a split hash.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clrbench.data.cards import HubSource, TaskCard
from clrbench.data.images import LOADERS, DatasetError, HFImages, LabeledImages

SOURCES = ("auto", "files", "hf")
SHOW_PROGRESS = False  # datasets' download bars: on for `clrbench data download --source hf`


def _is_local(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or Path(ref).expanduser().is_dir()


def id_label(ref: str) -> str:
    """How a hub copy is named in image ids: the hub id, or a local folder's name (so ids do
    not depend on where the folder sits)."""
    return Path(ref).expanduser().name if _is_local(ref) else ref


@functools.lru_cache(maxsize=32)
def _dataset(ref: str, config: str | None, split: str, revision: str | None) -> Any:
    import datasets

    path = str(Path(ref).expanduser()) if _is_local(ref) else ref
    was_on = datasets.utils.logging.is_progress_bar_enabled()
    # datasets' own bars would tear through the eval board; `data download` keeps them.
    if not SHOW_PROGRESS:
        datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(path, name=config, split=split, revision=revision)
    finally:
        if was_on:
            datasets.enable_progress_bars()


def open_split(ref: str, split: str, config: str | None = None, revision: str | None = None,
               where: str = "hf") -> Any:
    """The ``datasets.Dataset`` of one hub split (from the cache, or fetched when allowed).

    Raises:
        DatasetError: the copy or split cannot be had (offline and not cached, unknown id or split).
    """
    try:
        return _dataset(ref, config, split, revision)
    except Exception as e:  # datasets raises many types (hub, fsspec, arrow, ValueError)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DatasetError(
            f"{where}: cannot load split {split!r} of the hub copy {ref!r} ({type(e).__name__}: {first}); "
            f"offline it must already be in the Hugging Face cache, which `clrbench data download "
            f"--source hf` fills.") from None


def _targets(ds: Any, column: str, where: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Targets read from the label column alone, and the class names in their index order.

    Returns:
        targets: (n,) int64, or (n, C) uint8 multi-hot when the column holds lists of labels.
        names: the ClassLabel names, or the sorted label strings, or None for bare integers.
    """
    import datasets

    if column not in ds.column_names:
        raise DatasetError(f"{where}: the hub copy has no label column {column!r} "
                           f"(columns: {', '.join(ds.column_names)}).")
    feat = ds.features[column]
    values = ds.data.column(column).to_pylist() if ds._indices is None else ds[column]
    inner = getattr(feat, "feature", None)  # Sequence / List of labels: multi-label
    if inner is not None:
        names = tuple(inner.names) if isinstance(inner, datasets.ClassLabel) else None
        width = len(names) if names else 1 + max((max(v) for v in values if v), default=-1)
        hot = np.zeros((len(values), width), np.uint8)
        for row, labels in enumerate(values):
            hot[row, list(labels)] = 1
        return hot, names
    if isinstance(feat, datasets.ClassLabel):
        return np.asarray(values, np.int64), tuple(feat.names)
    if values and isinstance(values[0], str):
        names = tuple(sorted(set(values)))
        pos = {n: i for i, n in enumerate(names)}
        return np.asarray([pos[v] for v in values], np.int64), names
    return np.asarray(values, np.int64), None


def hub_images(ref: str, split: str, *, image: str = "image", label: str = "label",
               config: str | None = None, revision: str | None = None, where: str = "hf") -> LabeledImages:
    """One hub split as a lazily decoded collection; ``classes`` holds the hub's label names
    (mapped onto a card's classes by :func:`clrbench.data.classes.align_to_card`)."""
    import datasets

    ds = open_split(ref, split, config, revision, where)
    targets, names = _targets(ds, label, where)
    if image not in ds.column_names:
        raise DatasetError(f"{where}: the hub copy has no image column {image!r} "
                           f"(columns: {', '.join(ds.column_names)}).")
    pixels = ds.select_columns([image])
    if not isinstance(pixels.features[image], datasets.Image):  # bytes or paths: decode as images
        pixels = pixels.cast_column(image, datasets.Image())
    stem = f"hf:{id_label(ref)}{'/' + config if config else ''}/{split}"
    out = HFImages(pixels, image, targets, len(names) if names else 0, ids=[f"{stem}/{i}" for i in range(len(ds))])
    out.classes = tuple(names) if names is not None else None
    return out


@LOADERS.register("hf")
def load_hf(root: Path | None, split: str, id: str, splits: Mapping[str, str] | None = None,
            image: str = "image", label: str = "label", config: str | None = None,
            revision: str | None = None, label_map: Mapping[str, str] | None = None) -> LabeledImages:
    """Generic loader of a user card: any hub id or local folder in the hub layout.

    ``splits`` maps the card's source split names to hub splits (default: the same name).
    ``label_map`` is applied by :func:`clrbench.data.splits.load_task` with the card's classes.
    """
    hub_split = (splits or {}).get(split, split)
    return hub_images(id, hub_split, image=image, label=label, config=config, revision=revision,
                      where=f"hf {id_label(id)}")


def hub_loader(card: TaskCard) -> tuple[Any, dict[str, str]]:
    """(loader(root, split), label_map) reading the card's hub copy instead of its files.

    Raises:
        DatasetError: the card names no hub copy, or none for a split it needs.
    """
    hub: HubSource | None = card.source.hub
    if hub is None:
        raise DatasetError(f"{card.name}: the card names no hub copy (source.hub); use --source files.")

    def load(root: Path | None, split: str) -> LabeledImages:
        if split not in hub.splits:
            raise DatasetError(f"{card.name}: the hub copy {hub.id} maps no hub split onto the source "
                               f"split {split!r} (source.hub.splits).")
        return hub_images(hub.id, hub.splits[split], image=hub.image, label=hub.label, config=hub.config,
                          revision=hub.revision, where=f"{card.name} (hub {hub.id})")

    return load, dict(hub.label_map)


def files_present(card: TaskCard, data_root: Path | None) -> bool:
    """Whether the card's files are on disk (always, for sources that need no data root)."""
    from clrbench.data.presence import installed

    return installed(card, data_root) is not False


def resolve_source(card: TaskCard, data_root: Path | None, source: str = "files") -> str:
    """``files`` or ``hf`` for ``--source``: ``auto`` takes the files when they are on disk,
    else the hub copy when the card names one (loaded from the cache, or fetched when online).
    A card without a hub copy whose loader is ``hf`` itself, or that needs no download (the
    quick suite, user folders without root_dir), always reads through its own loader."""
    if source not in SOURCES:
        raise DatasetError(f"--source must be one of {', '.join(SOURCES)}, not {source!r}.")
    if card.source.hub is None and (card.source.loader == "hf" or card.source.root_dir is None):
        return "files"  # its own loader reads the hub (loader: hf) or needs no download (quick tasks)
    if source == "auto":
        hub = card.source.hub
        use_hub = hub is not None and not files_present(card, data_root) and hub_reachable(hub.id)
        return "hf" if use_hub else "files"  # files: a missing dataset is then named as such
    return source


def hub_reachable(ref: str) -> bool:
    """Whether a hub copy can be read now: a local folder, or the hub when online, or (offline,
    ``$HF_HUB_OFFLINE`` / ``$HF_DATASETS_OFFLINE``) a copy already in the Hugging Face caches."""
    if _is_local(ref):
        return True
    if not any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    import datasets.config
    import huggingface_hub.constants

    return (Path(datasets.config.HF_DATASETS_CACHE) / ref.replace("/", "___")).is_dir() or (
        Path(huggingface_hub.constants.HF_HUB_CACHE) / f"datasets--{ref.replace('/', '--')}").is_dir()


def cache_hub_copy(card: TaskCard) -> list[str]:
    """Load every mapped split once, which puts it in the Hugging Face cache; returns the splits."""
    load, _ = hub_loader(card)
    names = sorted({s.source for s in card.splits.values() if s.source is not None})
    for n in names:
        load(None, n)
    return names


def cache_hub_copies(cards: list[TaskCard]) -> list[tuple[str, bool, str]]:
    """``clrbench data download --source hf``: (task, ok, message) per card (datasets' own
    download bars shown)."""
    global SHOW_PROGRESS
    SHOW_PROGRESS = True
    out = []
    for card in cards:
        hub = card.source.hub
        if hub is None:
            out.append((card.name, False, f"{card.name}: no hub copy is known (see tasks/README.md); use the files."))
            continue
        try:
            names = cache_hub_copy(card)
        except DatasetError as e:
            out.append((card.name, False, str(e)))
            continue
        note = "" if hub.reproduces else f" Differs from the protocol: {hub.differences}"
        out.append((card.name, True, f"{card.name}: {hub.id} ({', '.join(hub.splits[n] for n in names)}) is in the "
                    f"Hugging Face cache.{note}"))
    return out

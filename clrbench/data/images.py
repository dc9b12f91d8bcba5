"""Image collections (the one abstraction of pretraining and evaluation), and the loaders' registry.

A :class:`LabeledImages` is images addressable by index plus their targets, known without
decoding a pixel so that splits can be carved and counted cheaply; pretraining sources
without labels are the same collections with ``num_classes == 0``. A loader takes the data
root and one *source* split name (as the dataset's creators name it) and returns a
:class:`LabeledImages`. The loaders of the
twelve transfer datasets live in :mod:`clrbench.data.sources`; the offline quick suite
is here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clrbench.errors import UserError
from clrbench.registry import Registry


class DatasetError(UserError, RuntimeError):
    """A dataset that is missing, laid out wrongly, or inconsistent; one clear sentence."""


class LabeledImages:
    """One split of a dataset.

    Attributes:
        targets: (n,) int64 class ids, or (n, C) uint8 multi-hot for multi-label tasks; an
            unlabelled collection (a pretraining source) has (n,) -1 and ``num_classes`` 0.
        ignore: (n, C) bool mask of "difficult-only" entries (VOC), or None.
        num_classes: C.
        classes: class names in the source's index order, or None where the source gives none
            (then :func:`clrbench.data.classes.align_to_card` trusts the indices).
    """

    classes: tuple[str, ...] | None = None

    def __init__(
        self,
        targets: np.ndarray | None,
        num_classes: int,
        ignore: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
        n: int | None = None,
    ) -> None:
        if targets is None:  # unlabelled: n images, no classes
            targets, num_classes = np.full(int(n or 0), -1, dtype=np.int64), 0
        self.targets = np.asarray(targets)
        self.num_classes = num_classes
        self.ignore = ignore
        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(self.targets))]
        if len(self.ids) != len(self.targets):
            raise DatasetError(f"{len(self.ids)} image ids but {len(self.targets)} targets.")

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def labeled(self) -> bool:
        """False for an unlabelled pretraining source."""
        return self.num_classes > 0

    def load_image(self, i: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def subset(self, indices: np.ndarray) -> LabeledImages:
        return Subset(self, indices)


class ArrayImages(LabeledImages):
    """Images held in memory as a uint8 (n, H, W, 3) array."""

    def __init__(self, images: np.ndarray, targets: np.ndarray | None, num_classes: int, **kw: Any):
        super().__init__(targets, num_classes, n=len(images), **kw)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DatasetError(f"expected uint8 (n, H, W, 3) images, got {images.dtype} {images.shape}.")
        self.images = images

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])

    def subset(self, indices: np.ndarray) -> LabeledImages:
        """Still an in-memory array (pretraining augments those in batch on the device)."""
        if self.ignore is not None:
            return Subset(self, indices)
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImages(self.images[idx], self.targets[idx] if self.labeled else None, self.num_classes,
                           ids=[self.ids[i] for i in idx])


class FileImages(LabeledImages):
    """Images stored as files (JPEG, PNG, ...), decoded on access."""

    def __init__(self, paths: Sequence[Path], targets: np.ndarray | None, num_classes: int, **kw: Any):
        kw.setdefault("ids", [str(p) for p in paths])
        super().__init__(targets, num_classes, n=len(paths), **kw)
        self.paths = [Path(p) for p in paths]

    def load_image(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as im:
            return im.convert("RGB")


class HFImages(LabeledImages):
    """Rows of a Hugging Face ``datasets.Dataset``, each image decoded only when asked for."""

    def __init__(self, ds: Any, image_key: str, targets: np.ndarray | None, num_classes: int, **kw: Any):
        super().__init__(targets, num_classes, n=len(ds), **kw)
        self.ds, self.image_key = ds, image_key

    def load_image(self, i: int) -> Image.Image:
        return self.ds[int(i)][self.image_key].convert("RGB")


class Subset(LabeledImages):
    """A view of some rows of another collection."""

    def __init__(self, base: LabeledImages, indices: np.ndarray) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        ignore = base.ignore[idx] if base.ignore is not None else None
        super().__init__(base.targets[idx], base.num_classes, ignore, [base.ids[i] for i in idx])
        self.base, self.indices = base, idx

    def load_image(self, i: int) -> Image.Image:
        return self.base.load_image(int(self.indices[i]))


def concat(a: LabeledImages, b: LabeledImages) -> LabeledImages:
    """train + val for the final fit (protocol.md §2.1)."""
    return _Concat(a, b)


class _Concat(LabeledImages):
    def __init__(self, a: LabeledImages, b: LabeledImages) -> None:
        ignore = None
        if a.ignore is not None and b.ignore is not None:
            ignore = np.concatenate([a.ignore, b.ignore])
        super().__init__(np.concatenate([a.targets, b.targets]), a.num_classes, ignore, a.ids + b.ids)
        self.a, self.b = a, b

    def load_image(self, i: int) -> Image.Image:
        return self.a.load_image(i) if i < len(self.a) else self.b.load_image(i - len(self.a))


Loader = Callable[..., LabeledImages]
LOADERS: Registry[Loader] = Registry("dataset loader")


# ----------------------------------------------------------------------------- quick suite
# Offline tasks built from procedural images and scikit-learn's digits. Their seeds
# (1000+) differ from the embedded pretraining pool (seed 0..), so no evaluation image is
# seen in pretraining.

_SPLIT_SEEDS = {"train": 1001, "test": 1002}


@lru_cache(maxsize=8)
def _procedural(kind: str, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from clrbench.data import procedural

    make = {"shapes": procedural.make_shapes, "textures": procedural.make_textures,
            "scenes": procedural.make_scenes}[kind]
    return make(n, seed=_SPLIT_SEEDS[split])


def _quick_procedural(kind: str) -> Loader:
    def load(root: Path | None, split: str, train_size: int = 1000, test_size: int = 500) -> LabeledImages:
        if split not in _SPLIT_SEEDS:
            raise DatasetError(f"{kind} has splits train and test, not {split!r}.")
        n = train_size if split == "train" else test_size
        images, targets = _procedural(kind, split, n)
        return ArrayImages(images, targets, num_classes_of(targets))

    return load


LOADERS.add("quick_shapes", _quick_procedural("shapes"))
LOADERS.add("quick_textures", _quick_procedural("textures"))
LOADERS.add("quick_scenes", _quick_procedural("scenes"))


@LOADERS.register("quick_digits")
def _quick_digits(root: Path | None, split: str, test_fraction: float = 0.3, seed: int = 0) -> LabeledImages:
    """scikit-learn's 1,797 digits, split once into train / test by a fixed stratified draw.

    The draw is :func:`clrbench.data.procedural.digits_test_mask`, the same rule the embedded
    pretraining pool uses to leave every test digit out.
    """
    from clrbench.data import procedural

    if split not in ("train", "test"):
        raise DatasetError(f"digits has splits train and test, not {split!r}.")
    images, labels = procedural.digits_rgb()
    test = procedural.digits_test_mask(labels, test_fraction, seed)
    keep = test if split == "test" else ~test
    return ArrayImages(images[keep], labels[keep], 10)


def num_classes_of(targets: np.ndarray) -> int:
    return int(targets.shape[1]) if targets.ndim == 2 else int(targets.max()) + 1

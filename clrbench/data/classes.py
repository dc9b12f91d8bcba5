"""Class names of a source (a hub copy, a user's folders or CSV) mapped onto a card's classes.

The generic sources know their classes by name only (hub ``ClassLabel`` names, folder names,
CSV label strings), in their own order. A card that lists ``classes`` fixes the index of each;
the source's targets are renumbered to it, and a name the card does not know is one sentence
(naming the first such name and the ``label_map`` that would fix it). A card without a class
list takes the source's order, checked only against ``num_classes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from clrbench.data.images import DatasetError, LabeledImages


def normalise(name: str) -> str:
    """Case, spaces, hyphens and underscores do not tell classes apart (``Apple Pie`` = ``apple_pie``)."""
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower())


def class_index(names: Sequence[str], card_classes: Sequence[str], label_map: Mapping[str, str],
                where: str) -> np.ndarray:
    """(len(names),) int64: the card's index of each source class name.

    Raises:
        DatasetError: a source name (after ``label_map``) that is not one of the card's classes.
    """
    lookup = {normalise(c): i for i, c in enumerate(card_classes)}
    out = np.empty(len(names), np.int64)
    unknown = []
    for k, name in enumerate(names):
        mapped = label_map.get(str(name), str(name))
        i = lookup.get(normalise(mapped))
        if i is None:
            unknown.append(str(name))
        else:
            out[k] = i
    if unknown:
        raise DatasetError(
            f"{where}: the source's class {unknown[0]!r} is not one of the card's classes "
            f"({len(unknown)} such names); rename it with label_map in the card.")
    return out


def align_to_card(images: LabeledImages, card_classes: Sequence[str], num_classes: int,
                  label_map: Mapping[str, str], where: str) -> None:
    """Renumber ``images.targets`` in place onto the card's classes (see the module docstring).

    ``images.classes`` (names in the source's index order) may be None: the targets are then
    indices already and only their range is checked.
    """
    names = getattr(images, "classes", None)
    t = images.targets
    if names is None:
        top = int(t.max()) if t.size and t.ndim == 1 else (t.shape[1] - 1 if t.ndim == 2 else -1)
        if top >= num_classes:
            raise DatasetError(f"{where}: label {top} found, but the card has {num_classes} classes.")
    elif not card_classes:
        if len(names) != num_classes:
            raise DatasetError(f"{where}: the source has {len(names)} classes, the card says {num_classes}.")
    else:
        index = class_index(names, card_classes, label_map, where)
        if t.ndim == 2:  # multi-hot columns move to the card's positions
            out = np.zeros((len(t), num_classes), t.dtype)
            np.maximum.at(out.T, index, t.T)
            images.targets = out
        else:
            images.targets = index[t] if t.size else t
        images.classes = tuple(card_classes)
    images.num_classes = num_classes

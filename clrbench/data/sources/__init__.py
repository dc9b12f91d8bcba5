"""Loaders of the twelve transfer datasets of Kornblith et al. 2019 (protocol.md §1).

Importing this package registers them in :data:`clrbench.data.images.LOADERS` under the
card names: food101, cifar10, cifar100, birdsnap, sun397, cars, aircraft, voc2007, dtd, pets,
caltech101, flowers102 (and imagenet, the ILSVRC-2012 card). torchvision is imported only when a loader runs.
"""

from __future__ import annotations

from clrbench.data.sources import birdsnap, caltech, imagenet, sun397, torchvision_sets, voc
from clrbench.data.sources.layout import REQUIRED_FILES, ROOT_DIRS

__all__ = [
    "REQUIRED_FILES", "ROOT_DIRS", "birdsnap", "caltech", "imagenet", "sun397", "torchvision_sets", "voc",
]

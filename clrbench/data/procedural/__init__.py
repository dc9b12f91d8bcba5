"""Offline image generators: the quick suite's procedural tasks and the embedded pretraining pool.

Everything is generated, deterministic given a seed, and vectorised numpy (no downloads):
shapes and multi-shape scenes (:mod:`.shapes`), DTD-like textures (:mod:`.textures`),
scikit-learn's handwritten digits and seven-segment glyphs (:mod:`.digits`), and the
pretraining mixture of all of them (:mod:`.pool`).
"""

from __future__ import annotations

from clrbench.data.procedural.digits import digits_rgb, digits_test_mask, make_glyphs
from clrbench.data.procedural.pool import (
    FAMILIES,
    LABEL_OFFSETS,
    NUM_POOL_LABELS,
    embedded_dataset,
    embedded_images,
)
from clrbench.data.procedural.shapes import SHAPE_NAMES, make_scenes, make_shapes
from clrbench.data.procedural.textures import TEXTURE_NAMES, make_textures

__all__ = [
    "FAMILIES",
    "LABEL_OFFSETS",
    "NUM_POOL_LABELS",
    "SHAPE_NAMES",
    "TEXTURE_NAMES",
    "digits_rgb",
    "digits_test_mask",
    "embedded_dataset",
    "embedded_images",
    "make_glyphs",
    "make_scenes",
    "make_shapes",
    "make_textures",
]

"""The embedded pretraining pool: an offline, unlabeled mixture of every procedural family and the digits' train split.

Evaluation honesty: the quick suite draws its shapes, textures and scenes from seeds 1000+
through :func:`~clrbench.data.procedural.render.rng_for` streams that the pool never uses (the pool
derives one stream per family from ``(seed, family)`` with its own salt), and the pool's
sklearn digits come only from the quick suite's digits *train* split
(:func:`~clrbench.data.procedural.digits.digits_test_mask`), the usual "pretrain on the train
images" setting. No quick-suite test image is ever in the pool.
"""

from __future__ import annotations

import numpy as np

from clrbench.data.procedural import render
from clrbench.data.procedural.digits import digits_rgb, digits_test_mask, make_glyphs
from clrbench.data.procedural.render import Array
from clrbench.data.procedural.shapes import NUM_SHAPES, make_scenes, make_shapes
from clrbench.data.procedural.textures import NUM_TEXTURES, make_textures

# (family, share of the pool, number of label ids). Shapes and textures carry most of the
# pool because three of the four quick-suite tasks are about form and texture; the digits
# families are small but keep the encoder's first layers used to thin grey strokes.
FAMILIES: tuple[tuple[str, float, int], ...] = (
    ("shapes", 0.30, NUM_SHAPES),
    ("textures", 0.30, NUM_TEXTURES),
    ("scenes", 0.20, 1),
    ("glyphs", 0.10, 10),
    ("digits", 0.10, 10),
)
# Label ids per family, in FAMILIES order: shapes 0-7, textures 8-15, scenes 16, glyphs
# 17-26, sklearn digits 27-36.
LABEL_OFFSETS: dict[str, int] = {}
_offset = 0
for _name, _, _k in FAMILIES:
    LABEL_OFFSETS[_name] = _offset
    _offset += _k
NUM_POOL_LABELS = _offset

# Mixed into every family's seed so that embedded_dataset(seed=s) never reproduces
# make_shapes(s') (or any other public generator) for any s'.
_POOL_SALT = 0xE3BED


def family_counts(n: int) -> dict[str, int]:
    """Images per family for a pool of ``n``: shares rounded down, remainder to shapes."""
    counts = {name: int(share * n) for name, share, _ in FAMILIES}
    counts["shapes"] += n - sum(counts.values())
    return counts


def _pool_digits(n: int, seed: int, size: int) -> tuple[Array, Array]:
    """``n`` sklearn digits from the quick suite's train split (repeats only if n > 1258)."""
    images, labels = digits_rgb(size)
    train = np.flatnonzero(~digits_test_mask(labels))
    rng = render.rng_for(seed, _POOL_SALT + 4)
    reps = -(-n // len(train)) if n else 0
    pick = np.concatenate([rng.permutation(train) for _ in range(reps)])[:n]
    return images[pick], labels[pick]


def _family(name: str, n: int, seed: int, size: int) -> tuple[Array, Array]:
    """(images, pool labels) of one family, from the pool's own seed stream."""
    s = seed * 1_000_003 + _POOL_SALT + [f[0] for f in FAMILIES].index(name)
    if name == "scenes":
        images, _ = make_scenes(n, s, size)
        labels = np.zeros(n, np.int64)
    elif name == "digits":
        images, labels = _pool_digits(n, seed, size)
    else:
        make = {"shapes": make_shapes, "textures": make_textures, "glyphs": make_glyphs}[name]
        images, labels = make(n, s, size)
    return images, labels + LABEL_OFFSETS[name]


def embedded_dataset(n: int = 20000, seed: int = 0, size: int = 32) -> tuple[Array, Array]:
    """The pretraining pool with a coarse label per image, for an online-probe health signal.

    Args:
        n: pool size.
        seed: pool seed; the quick suite's seeds (1000+) never collide with it.
        size: image side in pixels.

    Returns:
        images: (n, size, size, 3) uint8, families shuffled together.
        labels: (n,) int64 in [0, 37): generator family and class, see :data:`LABEL_OFFSETS`.
    """
    parts = [_family(name, k, seed, size) for name, k in family_counts(n).items() if k]
    images = (
        np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, size, size, 3), np.uint8)
    )
    labels = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    order = render.rng_for(seed, _POOL_SALT).permutation(n)
    return images[order], labels[order]


def embedded_images(n: int = 20000, seed: int = 0, size: int = 32) -> Array:
    """The unlabeled pretraining pool; see :func:`embedded_dataset`.

    Returns:
        (n, size, size, 3) uint8.
    """
    return embedded_dataset(n, seed, size)[0]

"""Digit images: scikit-learn's bundled handwritten digits, and procedural seven-segment glyphs in their style.

Both are 8x8 grids of ink counts 0-16 (the UCI preprocessing: 32x32 bitmaps summed over 4x4
blocks), upscaled bicubically to ``size`` and shown as light ink on black, grey RGB.
Reference: Alpaydin & Kaynak 1998, Optical Recognition of Handwritten Digits, UCI ML
Repository (shipped offline as ``sklearn.datasets.load_digits``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from clrbench.data.procedural import render
from clrbench.data.procedural.render import Array

_STREAM_GLYPHS = 0x619

# Seven-segment layout: six nodes (x, y) in a 1 x 2 box, segments as node pairs, and the
# segments lit for each digit (a top, b upper right, c lower right, d bottom, e lower left,
# f upper left, g middle).
_NODES = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 2], [1, 2]], np.float32)
_SEGMENTS = {
    "a": (0, 1),
    "b": (1, 3),
    "c": (3, 5),
    "d": (4, 5),
    "e": (2, 4),
    "f": (0, 2),
    "g": (2, 3),
}
_LIT = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


@lru_cache(maxsize=8)
def bicubic_matrix(src: int, dst: int) -> Array:
    """PIL's bicubic resampling from ``src`` to ``dst`` samples as a (dst, src) matrix.

    Built by resizing unit impulses with PIL in float mode, so ``A @ x @ A.T`` reproduces
    ``Image.resize(..., BICUBIC)`` of an (src, src) float image for a whole batch at once.
    """
    from PIL import Image

    a = np.zeros((dst, src), np.float32)
    for i in range(src):
        row = np.zeros((1, src), np.float32)
        row[0, i] = 1.0
        a[:, i] = np.asarray(Image.fromarray(row).resize((dst, 1), Image.Resampling.BICUBIC))[0]
    return a


def counts_to_rgb(counts: Array, size: int) -> Array:
    """(n, 8, 8) ink counts 0-16 -> (n, size, size, 3) uint8 grey, bicubic-upscaled."""
    a = bicubic_matrix(counts.shape[1], size)
    grey = np.einsum("ij,njk,lk->nil", a, counts.astype(np.float32) * (255.0 / 16.0), a)
    return np.repeat(render.to_uint8(grey[..., None] / 255.0), 3, axis=-1)


@lru_cache(maxsize=1)
def _load_digits() -> tuple[Array, Array]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def digits_rgb(size: int = 32) -> tuple[Array, Array]:
    """The 1,797 handwritten digits bundled with scikit-learn (offline), as RGB.

    Args:
        size: output side in pixels.

    Returns:
        images: (1797, size, size, 3) uint8, light grey ink on black.
        labels: (1797,) int64 in [0, 10).
    """
    counts, labels = _load_digits()
    return counts_to_rgb(counts, size), labels.copy()


def digits_test_mask(labels: Array, test_fraction: float = 0.3, seed: int = 0) -> Array:
    """The quick suite's stratified test draw over the sklearn digits.

    The loader ``quick_digits`` (``clrbench.data.images``) calls this for its test split
    and the embedded pretraining pool keeps only the complement, so no digits test image is
    ever seen in pretraining.

    Args:
        labels: (1797,) digit labels, in the order :func:`digits_rgb` returns them.

    Returns:
        (1797,) bool, True for test images.
    """
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test[rng.choice(idx, round(len(idx) * test_fraction), replace=False)] = True
    return test


def _glyph_nodes(rng: np.random.Generator, m: int) -> Array:
    """Per-image jittered, slanted, scaled node positions in 32x32 bitmap pixels: (m, 6, 2)."""
    w = rng.uniform(9, 17, (m, 1))
    h = rng.uniform(10, 13, (m, 1))  # half-height: a node row is h pixels below the last
    slant = rng.uniform(-0.25, 0.25, (m, 1))
    jitter = rng.uniform(-0.12, 0.12, (m, 6, 2)) * w[:, :, None]
    x = (_NODES[None, :, 0] - 0.5) * w + slant * (1 - _NODES[None, :, 1]) * h
    y = (_NODES[None, :, 1] - 1) * h
    centre = rng.uniform(-2, 2, (m, 1, 2)) + 15.5
    return (np.stack([x, y], -1) + jitter + centre).astype(np.float32)


def _glyph_ink(digits: Array, nodes: Array, half_width: Array) -> Array:
    """Soft ink coverage of each digit's lit segments on a 32x32 bitmap: (m, 32, 32)."""
    c = np.arange(32, dtype=np.float32)
    py, px = np.meshgrid(c, c, indexing="ij")
    dist = np.full((len(digits), 32, 32), np.inf, np.float32)
    for name, (i, j) in _SEGMENTS.items():
        lit = np.array([name in _LIT[d] for d in digits])
        a, b = nodes[lit, i, :, None, None], nodes[lit, j, :, None, None]
        ab = b - a
        # Closest point on segment a-b to each pixel, then its distance.
        t = ((px - a[:, 0]) * ab[:, 0] + (py - a[:, 1]) * ab[:, 1]) / (ab**2).sum(1).clip(1e-6)
        t = t.clip(0, 1)
        d = np.hypot(px - a[:, 0] - t * ab[:, 0], py - a[:, 1] - t * ab[:, 1])
        dist[lit] = np.minimum(dist[lit], d)
    return render.coverage(dist - half_width[:, None, None])


def make_glyphs(n: int, seed: int, size: int = 32) -> tuple[Array, Array]:
    """Seven-segment digits drawn with jitter, slant and stroke width, in the sklearn digits' style.

    Args:
        n: number of images; seed: a non-negative int; size: output side in pixels.

    Returns:
        images: (n, size, size, 3) uint8 grey; labels: (n,) int64 digit in [0, 10), balanced.
    """
    rng = render.rng_for(seed, _STREAM_GLYPHS)
    labels = render.balanced_labels(rng, n, 10)
    images = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, render.CHUNK):
        rows = slice(start, min(n, start + render.CHUNK))
        m = rows.stop - rows.start
        ink = _glyph_ink(labels[rows], _glyph_nodes(rng, m), rng.uniform(1.2, 2.6, m))
        # UCI preprocessing: count inked pixels per 4x4 block -> 0..16.
        counts = np.round(ink.reshape(m, 8, 4, 8, 4).sum((2, 4)))
        images[rows] = counts_to_rgb(counts, size)
    return images, labels

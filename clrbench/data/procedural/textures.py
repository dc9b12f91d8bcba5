"""Procedural texture families (DTD-like): ``make_textures``.

Each family is a pattern function of rotated coordinates; its angle, frequency, phase,
duty cycle, edge sharpness, two colours, lighting ramp and grain are drawn per image, so the
class is the family's structure only. Pixels are useless as features (random phase), and
families come in near-miss pairs (stripes / waves / zigzag, checker / grid / dots), as in DTD.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clrbench.data.procedural import render
from clrbench.data.procedural.render import Array

TEXTURE_NAMES: tuple[str, ...] = (
    "stripes",
    "checker",
    "dots",
    "grid",
    "waves",
    "zigzag",
    "blobs",
    "rings",
)
NUM_TEXTURES = len(TEXTURE_NAMES)

_STREAM_TEXTURES = 0x7E7

# A pattern maps (rng, s, t) -> (m, S, S) values in [0, 1]; s, t are rotated coordinates in
# half-image units ([-1, 1] across the image before rotation).
Pattern = Callable[[np.random.Generator, Array, Array], Array]


def _u(rng: np.random.Generator, lo: float, hi: float, m: int) -> Array:
    """(m, 1, 1) float32 uniform draws, shaped to broadcast over an image."""
    return rng.uniform(lo, hi, (m, 1, 1)).astype(np.float32)


def _edge(rng: np.random.Generator, wave: Array) -> Array:
    """Thresholds a [-1, 1] wave at a random level with a random softness (sine to square)."""
    m = len(wave)
    return render.soft_step(wave - _u(rng, -0.4, 0.4, m), _u(rng, 0.1, 0.8, m))


def _stripes(rng: np.random.Generator, s: Array, t: Array) -> Array:
    m = len(s)
    return _edge(rng, np.sin(np.pi * _u(rng, 2, 6, m) * s + _u(rng, 0, 2 * np.pi, m)))


def _checker(rng: np.random.Generator, s: Array, t: Array) -> Array:
    m = len(s)
    f, w = _u(rng, 1.5, 4, m), _u(rng, 0.05, 0.6, m)
    wave = np.sin(np.pi * f * s + _u(rng, 0, 6.3, m)) * np.sin(np.pi * f * t + _u(rng, 0, 6.3, m))
    return render.soft_step(wave, w)


def _cells(
    rng: np.random.Generator, s: Array, t: Array, lo: float, hi: float
) -> tuple[Array, Array]:
    """Position inside a square lattice cell, each coordinate in [-0.5, 0.5) cell units."""
    m = len(s)
    f = _u(rng, lo, hi, m) / 2
    a = np.mod(f * s + _u(rng, 0, 1, m), 1.0) - 0.5
    b = np.mod(f * t + _u(rng, 0, 1, m), 1.0) - 0.5
    return a, b


def _dots(rng: np.random.Generator, s: Array, t: Array) -> Array:
    a, b = _cells(rng, s, t, 2.5, 5)
    m = len(s)
    return render.soft_step(_u(rng, 0.15, 0.33, m) - np.hypot(a, b), _u(rng, 0.04, 0.15, m))


def _grid(rng: np.random.Generator, s: Array, t: Array) -> Array:
    a, b = _cells(rng, s, t, 2, 4.5)
    m = len(s)
    line = np.minimum(np.abs(a), np.abs(b))
    return render.soft_step(_u(rng, 0.06, 0.14, m) - line, _u(rng, 0.03, 0.1, m))


def _waves(rng: np.random.Generator, s: Array, t: Array) -> Array:
    m = len(s)
    bend = _u(rng, 2.5, 4, m) * np.sin(np.pi * _u(rng, 1, 2, m) * t + _u(rng, 0, 6.3, m))
    return _edge(rng, np.sin(np.pi * _u(rng, 2, 5, m) * s + bend + _u(rng, 0, 6.3, m)))


def _zigzag(rng: np.random.Generator, s: Array, t: Array) -> Array:
    m = len(s)
    # Triangle wave in [-1, 1]: the bend of ``_waves`` with sharp corners.
    tri = 2 * np.abs(2 * np.mod(_u(rng, 0.7, 1.6, m) * t + _u(rng, 0, 1, m), 1.0) - 1) - 1
    bend = _u(rng, 2, 4, m) * tri
    return _edge(rng, np.sin(np.pi * _u(rng, 2, 5, m) * s + bend + _u(rng, 0, 6.3, m)))


def _blobs(rng: np.random.Generator, s: Array, t: Array) -> Array:
    m, size = len(s), s.shape[1]
    noise = render.smooth_noise(rng, m, size, rng.integers(3, 7, m))
    # Threshold near each image's own median, so no blob image comes out a flat colour.
    level = np.median(noise, axis=(1, 2), keepdims=True) + _u(rng, -0.08, 0.08, m)
    return render.soft_step(noise - level, _u(rng, 0.02, 0.2, m))


def _rings(rng: np.random.Generator, s: Array, t: Array) -> Array:
    m = len(s)
    # Centre inside the image, so the curvature that tells rings from stripes is visible.
    rho = np.hypot(s - _u(rng, -0.6, 0.6, m), t - _u(rng, -0.6, 0.6, m))
    return _edge(rng, np.sin(np.pi * _u(rng, 2, 5, m) * rho + _u(rng, 0, 6.3, m)))


PATTERNS: tuple[Pattern, ...] = (_stripes, _checker, _dots, _grid, _waves, _zigzag, _blobs, _rings)


def texture_maps(rng: np.random.Generator, classes: Array, size: int) -> Array:
    """Pattern intensities for one texture family per image.

    Args:
        classes: (m,) family ids in [0, 8).

    Returns:
        (m, size, size) float32 in [0, 1].
    """
    m = len(classes)
    xx, yy = render.pixel_grid(size)
    angle = rng.uniform(0, 2 * np.pi, m)
    s, t = render.rotate(xx / (size / 2), yy / (size / 2), np.zeros(m), np.zeros(m), angle)
    out = np.zeros((m, size, size), np.float32)
    for k, pattern in enumerate(PATTERNS):
        idx = np.flatnonzero(classes == k)
        if idx.size:
            out[idx] = pattern(rng, s[idx], t[idx])
    return out


def _draw_textures(rng: np.random.Generator, classes: Array, size: int) -> Array:
    m = len(classes)
    p = texture_maps(rng, classes, size)[..., None]
    c1 = render.random_colours(rng, m)
    c2 = render.contrasting(rng, c1, 0.5)
    images = c1[:, None, None, :] * (1 - p) + c2[:, None, None, :] * p
    # A lighting ramp, so absolute brightness varies across the image as in photographs.
    xx, yy = render.pixel_grid(size)
    g = rng.uniform(-0.5, 0.5, (2, m, 1, 1)).astype(np.float32) / size
    images = images * (1 + g[0] * xx + g[1] * yy)[..., None]
    return render.add_grain(rng, images, 0.03)


def make_textures(n: int, seed: int, size: int = 32) -> tuple[Array, Array]:
    """Two-colour texture images from eight DTD-like families.

    Args:
        n: number of images.
        seed: a non-negative int; equal seeds give equal outputs.
        size: image side in pixels.

    Returns:
        images: (n, size, size, 3) uint8.
        labels: (n,) int64 in [0, 8), balanced; names in :data:`TEXTURE_NAMES`.
    """
    rng = render.rng_for(seed, _STREAM_TEXTURES)
    labels = render.balanced_labels(rng, n, NUM_TEXTURES)
    images = render.render_chunked(
        n, size, rng, lambda r, rows: _draw_textures(r, labels[rows], size)
    )
    return images, labels

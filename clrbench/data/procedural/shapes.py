"""Procedural shape images: one shape per image (``make_shapes``) and multi-shape scenes (``make_scenes``).

A shape's class is its outline only: colour, size, position, tilt, fill mottling and the
cluttered background are all drawn at random, so a probe on colour or layout statistics
stays near chance and a feature has to encode form (the invariances SimCLR's crops and colour
jitter teach).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clrbench.data.procedural import render
from clrbench.data.procedural.render import Array

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "plus",
    "ring",
    "star",
    "crescent",
    "ell",
)
NUM_SHAPES = len(SHAPE_NAMES)

# Shapes stand roughly upright (+-29 degrees), as objects do in photographs: SimCLR's crops
# and colour jitter teach no rotation invariance, and with free rotation even good local
# features confuse plus / square / ell (measured: random-conv probe 34% -> 56% upright).
MAX_TILT = 0.5

_STREAM_SHAPES = 0x5A1
_STREAM_SCENES = 0x5CE


def _box(u: Array, v: Array, cu: float, cv: float, hu: float, hv: float) -> Array:
    """Approximate signed distance to an axis-aligned box centred (cu, cv), half-sizes (hu, hv)."""
    return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _triangle(u: Array, v: Array) -> Array:
    # Equilateral, circumradius 1: inside all three half-planes at inradius 0.5.
    d = v * -1.0
    for a in (np.pi / 6, 5 * np.pi / 6):
        d = np.maximum(d, u * np.cos(a) + v * np.sin(a))
    return d - 0.5


def _star(u: Array, v: Array) -> Array:
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    # Radius oscillating five times per turn; scaled by 0.6 because this is not a true
    # distance near the points, and a too-sharp edge would alias.
    return (rho - (0.6 + 0.38 * np.cos(5 * phi))) * 0.6


# Signed distance of each shape in its own frame, unit ~ the shape's radius (negative inside).
SDFS: tuple[Callable[[Array, Array], Array], ...] = (
    lambda u, v: np.hypot(u, v) - 0.9,
    lambda u, v: _box(u, v, 0.0, 0.0, 0.72, 0.72),
    _triangle,
    lambda u, v: np.minimum(_box(u, v, 0, 0, 0.95, 0.28), _box(u, v, 0, 0, 0.28, 0.95)),
    lambda u, v: np.abs(np.hypot(u, v) - 0.66) - 0.26,
    _star,
    lambda u, v: np.maximum(np.hypot(u, v) - 0.95, 0.72 - np.hypot(u - 0.5, v + 0.1)),
    lambda u, v: np.minimum(_box(u, v, -0.5, 0, 0.3, 0.9), _box(u, v, 0.05, 0.6, 0.85, 0.3)),
)


def shape_alpha(
    xx: Array, yy: Array, classes: Array, cx: Array, cy: Array, radius: Array, angle: Array
) -> Array:
    """Anti-aliased masks of one shape per image.

    Args:
        xx, yy: (S, S) pixel grid; classes: (m,) shape ids; cx, cy, radius: (m,) in pixels;
            angle: (m,) radians.

    Returns:
        (m, S, S) float32 coverage in [0, 1].
    """
    alpha = np.zeros((len(classes), *xx.shape), np.float32)
    for k, sdf in enumerate(SDFS):
        idx = np.flatnonzero(classes == k)
        if idx.size == 0:
            continue
        u, v = render.rotate(xx, yy, cx[idx], cy[idx], angle[idx])
        r = radius[idx, None, None].astype(np.float32)
        alpha[idx] = render.coverage(sdf(u / r, v / r) * r)
    return alpha


def _paint(rng: np.random.Generator, images: Array, bg_colour: Array, alpha: Array) -> Array:
    """Fills the masked shapes with a colour that contrasts with the background, mottled."""
    m, size = len(images), images.shape[1]
    fg = render.contrasting(rng, bg_colour)
    # Mottled fill (+-15% brightness) so that a flat-colour template does not suffice.
    mottle = render.smooth_noise(rng, m, size, rng.integers(2, 6, m))
    fill = fg[:, None, None, :] * (0.85 + 0.3 * mottle[..., None])
    return render.composite(images, alpha, fill)


def _draw_shapes(rng: np.random.Generator, classes: Array, size: int) -> Array:
    m = len(classes)
    images, bg = render.background(rng, m, size)
    radius = rng.uniform(0.25, 0.42, m) * size
    # Keep the whole shape inside the frame, so the label is always visible, and roughly
    # centred (as in object-centric photographs), so pooled features see the whole outline.
    slack = np.minimum(size / 2 - radius - 1, 0.15 * size)
    cx, cy = (rng.uniform(-1, 1, (2, m)) * slack).astype(np.float32)
    angle = rng.uniform(-MAX_TILT, MAX_TILT, m)
    xx, yy = render.pixel_grid(size)
    alpha = shape_alpha(xx, yy, classes, cx, cy, radius, angle)
    return render.add_grain(rng, _paint(rng, images, bg, alpha), 0.05)


def make_shapes(n: int, seed: int, size: int = 32) -> tuple[Array, Array]:
    """One random shape per image on a cluttered background.

    Args:
        n: number of images.
        seed: a non-negative int; equal seeds give equal outputs.
        size: image side in pixels.

    Returns:
        images: (n, size, size, 3) uint8.
        labels: (n,) int64 in [0, 8), balanced; names in :data:`SHAPE_NAMES`.
    """
    rng = render.rng_for(seed, _STREAM_SHAPES)
    labels = render.balanced_labels(rng, n, NUM_SHAPES)
    images = render.render_chunked(
        n, size, rng, lambda r, rows: _draw_shapes(r, labels[rows], size)
    )
    return images, labels


def _scene_layout(rng: np.random.Generator, m: int, size: int) -> tuple[Array, Array, Array, Array]:
    """1-3 distinct shape classes per image, each in its own quadrant (little occlusion).

    Returns:
        count: (m,) objects per image; classes, cx, cy: (m, 3), only the first ``count`` used.
    """
    count = rng.integers(1, 4, m)
    classes = np.argsort(rng.random((m, NUM_SHAPES)), axis=1)[:, :3]
    quadrant = np.argsort(rng.random((m, 4)), axis=1)[:, :3]
    q = size / 4  # quadrant centres sit at +-size/4
    cx = np.where(quadrant % 2 == 0, -q, q) + rng.uniform(-0.1, 0.1, (m, 3)) * size
    cy = np.where(quadrant // 2 == 0, -q, q) + rng.uniform(-0.1, 0.1, (m, 3)) * size
    return count, classes, cx.astype(np.float32), cy.astype(np.float32)


def _draw_scenes(rng: np.random.Generator, m: int, size: int) -> tuple[Array, Array]:
    images, bg = render.background(rng, m, size)
    count, classes, cx, cy = _scene_layout(rng, m, size)
    xx, yy = render.pixel_grid(size)
    multi_hot = np.zeros((m, NUM_SHAPES), np.uint8)
    for j in range(3):
        on = np.flatnonzero(count > j)
        radius = rng.uniform(0.14, 0.22, on.size) * size
        angle = rng.uniform(-MAX_TILT, MAX_TILT, on.size)
        alpha = shape_alpha(xx, yy, classes[on, j], cx[on, j], cy[on, j], radius, angle)
        images[on] = _paint(rng, images[on], bg[on], alpha)
        multi_hot[on, classes[on, j]] = 1
    return render.add_grain(rng, images, 0.08), multi_hot


def make_scenes(n: int, seed: int, size: int = 32) -> tuple[Array, Array]:
    """VOC-like multi-label scenes: 1-3 small shapes of distinct classes per image.

    Args:
        n: number of images.
        seed: a non-negative int; equal seeds give equal outputs.
        size: image side in pixels.

    Returns:
        images: (n, size, size, 3) uint8.
        multi_hot: (n, 8) uint8, 1 where that shape class is present (1 to 3 ones per row).
    """
    rng = render.rng_for(seed, _STREAM_SCENES)
    images = np.empty((n, size, size, 3), np.uint8)
    multi_hot = np.empty((n, NUM_SHAPES), np.uint8)
    for start in range(0, n, render.CHUNK):
        m = min(render.CHUNK, n - start)
        chunk, multi_hot[start : start + m] = _draw_scenes(rng, m, size)
        images[start : start + m] = render.to_uint8(chunk)
    return images, multi_hot

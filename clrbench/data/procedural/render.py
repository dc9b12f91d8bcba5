"""Vectorised drawing primitives shared by the procedural generators: grids, colours, soft masks, backgrounds.

Every function works on whole batches (n images at once) in float32 with values in [0, 1], so
that ten thousand 32x32 images render in well under a second; the generators convert to uint8
once at the end with :func:`to_uint8`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Rendering in chunks bounds the float32 temporaries (a few MB each) whatever n is, and keeps
# them in cache; the chunk size is fixed so the output never depends on it.
CHUNK = 1024

Array = np.ndarray


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A generator for one (seed, stream) pair.

    Args:
        seed: the caller's seed.
        stream: a fixed per-generator constant, so ``make_shapes(s)`` and ``make_textures(s)``
            draw independent numbers, and no generator reproduces another's images.
    """
    return np.random.default_rng([int(seed), int(stream)])


def balanced_labels(rng: np.random.Generator, n: int, k: int) -> Array:
    """(n,) int64 labels with every class count within one of n / k, in random order."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def render_chunked(
    n: int, size: int, rng: np.random.Generator, draw: Callable[[np.random.Generator, slice], Array]
) -> Array:
    """Calls ``draw(rng, rows)`` on consecutive row slices and stacks the float results.

    ``draw`` returns (rows.stop - rows.start, size, size, 3) floats in [0, 1].

    Returns:
        (n, size, size, 3) uint8.
    """
    out = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        out[start : start + m] = to_uint8(draw(rng, slice(start, start + m)))
    return out


def to_uint8(images: Array) -> Array:
    """(..., 3) float in [0, 1] -> uint8, rounding to nearest."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def pixel_grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates in pixels, origin at the image centre, y pointing down.

    Returns:
        xx, yy: (size, size) float32 each.
    """
    c = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return xx, yy


def rotate(xx: Array, yy: Array, cx: Array, cy: Array, angle: Array) -> tuple[Array, Array]:
    """Per-image frame centred at (cx, cy) and turned by ``angle``.

    Args:
        xx, yy: (S, S) grid from :func:`pixel_grid` (or scaled).
        cx, cy, angle: (m,) centre and rotation in radians.

    Returns:
        u, v: (m, S, S) float32 coordinates in the rotated frame, same units as the grid.
    """
    dx = xx[None] - cx[:, None, None].astype(np.float32)
    dy = yy[None] - cy[:, None, None].astype(np.float32)
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    return dx * cos + dy * sin, dy * cos - dx * sin


def soft_step(x: Array, width: Array | float) -> Array:
    """0 below -width/2, 1 above +width/2, linear between: an anti-aliased threshold at 0."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


def coverage(sdf_px: Array) -> Array:
    """Anti-aliased fill fraction of a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf_px, 0.0, 1.0)


def random_colours(rng: np.random.Generator, m: int) -> Array:
    """(m, 3) float32 uniform RGB colours."""
    return rng.random((m, 3), dtype=np.float32)


def contrasting(rng: np.random.Generator, base: Array, min_dist: float = 0.45) -> Array:
    """Colours at least ``min_dist`` (RGB Euclidean) from ``base``, otherwise uniform.

    A colour too close to its background would make the object invisible and its label noise;
    those draws are replaced by a point pushed away from ``base`` along a random direction.

    Args:
        base: (m, 3) colours to contrast with.

    Returns:
        (m, 3) float32.
    """
    c = random_colours(rng, len(base))
    d = np.linalg.norm(c - base, axis=1)
    close = d < min_dist
    if close.any():
        # Push towards whichever side of mid-grey has room, so the result stays in [0, 1].
        away = np.where(base[close] > 0.5, -1.0, 1.0) * rng.uniform(0.3, 1.0, (close.sum(), 3))
        away = away / np.linalg.norm(away, axis=1, keepdims=True)
        c[close] = np.clip(base[close] + away * rng.uniform(0.6, 0.9, (close.sum(), 1)), 0, 1)
    return c.astype(np.float32)


def smooth_noise(rng: np.random.Generator, m: int, size: int, cells: Array) -> Array:
    """Value noise: a random lattice of ``cells`` per side, smoothly interpolated.

    Args:
        cells: (m,) int lattice cells per image side (2 = large blobs, 8 = fine mottling).

    Returns:
        (m, size, size) float32 in [0, 1].
    """
    if m == 0:
        return np.zeros((0, size, size), np.float32)
    top = int(cells.max()) + 1
    lattice = rng.random((m, top + 1, top + 1), dtype=np.float32)
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size  # (S,) in (0, 1)
    p = pos[None, :] * cells[:, None].astype(np.float32)  # (m, S) lattice coordinate
    i0 = np.floor(p).astype(np.int64)
    f = p - i0
    f = f * f * (3.0 - 2.0 * f)  # smoothstep hides the lattice's grid lines
    rows = np.arange(m)[:, None, None]
    iy, ix = i0[:, :, None], i0[:, None, :]
    fy, fx = f[:, :, None], f[:, None, :]
    a = lattice[rows, iy, ix] * (1 - fx) + lattice[rows, iy, ix + 1] * fx
    b = lattice[rows, iy + 1, ix] * (1 - fx) + lattice[rows, iy + 1, ix + 1] * fx
    return a * (1 - fy) + b * fy


def background(rng: np.random.Generator, m: int, size: int) -> tuple[Array, Array]:
    """Cluttered backgrounds: flat, linear gradient, blotchy noise or faint stripes.

    The variety is the point: an object's class must not be readable from its surroundings,
    so a useful feature has to look at the object's outline. Callers add grain last, once.

    Returns:
        images: (m, size, size, 3) float32 in [0, 1].
        mean_colour: (m, 3) the colour an object must stand out from.
    """
    c1, c2 = random_colours(rng, m), random_colours(rng, m)
    c2 = c1 + (c2 - c1) * rng.uniform(0.1, 0.4, (m, 1)).astype(np.float32)  # keep it mild
    kind = rng.integers(0, 4, m)
    xx, yy = pixel_grid(size)
    angle = rng.uniform(0, 2 * np.pi, m)
    mix = np.zeros((m, size, size), np.float32)
    ramp, blotch, stripes = (np.flatnonzero(kind == k) for k in (1, 2, 3))
    u, _ = rotate(xx / size, yy / size, np.zeros(ramp.size), np.zeros(ramp.size), angle[ramp])
    mix[ramp] = u / 1.4 + 0.5  # u spans about [-0.7, 0.7]
    mix[blotch] = smooth_noise(rng, blotch.size, size, rng.integers(2, 7, blotch.size))
    z = np.zeros(stripes.size)
    u, _ = rotate(xx / size, yy / size, z, z, angle[stripes])
    freq = rng.uniform(3, 8, (stripes.size, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (stripes.size, 1, 1)).astype(np.float32)
    mix[stripes] = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + phase)
    images = c1[:, None, None, :] + (c2 - c1)[:, None, None, :] * mix[..., None]
    return images, (c1 + c2) / 2


def add_grain(rng: np.random.Generator, images: Array, max_sigma: float = 0.08) -> Array:
    """Adds per-pixel Gaussian noise of a random strength in [0, max_sigma] per image."""
    m = len(images)
    sigma = rng.uniform(0, max_sigma, (m, 1, 1, 1)).astype(np.float32)
    return images + sigma * rng.standard_normal(images.shape, dtype=np.float32)


def composite(images: Array, alpha: Array, colour: Array) -> Array:
    """Paints ``colour`` over ``images`` with per-pixel opacity ``alpha``.

    Args:
        images: (m, S, S, 3); alpha: (m, S, S) in [0, 1]; colour: (m, 3) or (m, S, S, 3).
    """
    if colour.ndim == 2:
        colour = colour[:, None, None, :]
    a = alpha[..., None]
    return images * (1 - a) + colour * a

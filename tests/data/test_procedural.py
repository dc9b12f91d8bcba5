"""Tests for the offline image generators (clrbench.data.procedural): contracts, determinism, honesty of the pool."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from clrbench.data import procedural
from clrbench.data.procedural.digits import bicubic_matrix

Generator = Callable[..., tuple[np.ndarray, np.ndarray]]
SINGLE_LABEL = [
    (procedural.make_shapes, 8),
    (procedural.make_textures, 8),
    (procedural.make_glyphs, 10),
]
ALL = [*(g for g, _ in SINGLE_LABEL), procedural.make_scenes]


@pytest.mark.parametrize("make", ALL)
def test_images_are_uint8_nhwc_and_use_the_range(make: Generator) -> None:
    images, targets = make(40, seed=3)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert len(targets) == 40
    # Not blank or saturated: real content in every image.
    assert images.reshape(40, -1).std(axis=1).min() > 5


@pytest.mark.parametrize("make", ALL)
def test_other_sizes(make: Generator) -> None:
    images, _ = make(5, seed=0, size=24)
    assert images.shape == (5, 24, 24, 3)


@pytest.mark.parametrize("make", ALL)
def test_deterministic_under_a_seed_and_different_across_seeds(make: Generator) -> None:
    a, ta = make(20, seed=1001)
    b, tb = make(20, seed=1001)
    c, _ = make(20, seed=1002)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a, c)


def test_generators_do_not_share_random_streams() -> None:
    shapes, _ = procedural.make_shapes(10, seed=7)
    scenes, _ = procedural.make_scenes(10, seed=7)
    assert not np.array_equal(shapes, scenes)


@pytest.mark.parametrize(("make", "k"), SINGLE_LABEL)
def test_labels_are_balanced_int64(make: Generator, k: int) -> None:
    _, labels = make(10 * k + 3, seed=0)
    assert labels.dtype == np.int64
    counts = np.bincount(labels, minlength=k)
    assert len(counts) == k and counts.max() - counts.min() <= 1


def test_scenes_have_one_to_three_distinct_labels() -> None:
    _, multi_hot = procedural.make_scenes(300, seed=0)
    assert multi_hot.shape == (300, 8) and multi_hot.dtype == np.uint8
    per_image = multi_hot.sum(axis=1)
    assert per_image.min() == 1 and per_image.max() == 3
    assert set(np.unique(multi_hot)) == {0, 1}
    assert (multi_hot.sum(axis=0) > 0).all()  # every class occurs


def test_digits_are_the_1797_sklearn_digits_upscaled_like_pil() -> None:
    images, labels = procedural.digits_rgb()
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey
    from sklearn.datasets import load_digits

    raw = load_digits().images[5].astype(np.float32) * (255 / 16)
    pil = np.asarray(Image.fromarray(raw).resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(images[5, ..., 0], np.clip(pil, 0, 255), atol=1.0)


def test_bicubic_matrix_preserves_constants() -> None:
    np.testing.assert_allclose(bicubic_matrix(8, 32).sum(axis=1), 1.0, atol=1e-5)


def test_digits_test_mask_is_the_quick_suite_split() -> None:
    from clrbench.data.images import LOADERS

    images, labels = procedural.digits_rgb()
    test = procedural.digits_test_mask(labels)
    loaded = LOADERS.get("quick_digits")(None, "test")
    np.testing.assert_array_equal(loaded.targets, labels[test])
    assert loaded.load_image(0).tobytes() == images[test][0].tobytes()


def test_embedded_pool_shape_dtype_and_labels() -> None:
    images = procedural.embedded_images(200, seed=0)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
    same, labels = procedural.embedded_dataset(200, seed=0)
    np.testing.assert_array_equal(images, same)
    assert labels.dtype == np.int64 and labels.min() >= 0
    assert labels.max() < procedural.NUM_POOL_LABELS
    other = procedural.embedded_images(200, seed=1)
    assert not np.array_equal(images, other)


def test_embedded_pool_mixes_every_family() -> None:
    _, labels = procedural.embedded_dataset(1000, seed=0)
    offsets = procedural.LABEL_OFFSETS
    for name, share, k in procedural.FAMILIES:
        inside = (labels >= offsets[name]) & (labels < offsets[name] + k)
        assert inside.sum() >= int(share * 1000), name


def _hashes(images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in images}


def test_embedded_pool_holds_no_quick_suite_test_image() -> None:
    pool, _labels = procedural.embedded_dataset(2000, seed=0)
    digits, digit_labels = procedural.digits_rgb()
    test = procedural.digits_test_mask(digit_labels)
    in_pool = _hashes(pool)
    # Only train-split digits enter the pool (a few test digits are pixel-identical to a
    # train digit, so compare against the test images that have no train twin).
    train_hashes = _hashes(digits[~test])
    test_only = _hashes(digits[test]) - train_hashes
    assert not in_pool & test_only
    assert len(in_pool & train_hashes) > 0
    for make in (procedural.make_shapes, procedural.make_textures, procedural.make_scenes):
        assert not in_pool & _hashes(make(200, seed=1002)[0])


def test_small_pools() -> None:
    assert procedural.embedded_images(0).shape == (0, 32, 32, 3)
    assert procedural.embedded_images(3).shape == (3, 32, 32, 3)

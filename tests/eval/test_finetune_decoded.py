"""Decode once (clrbench.eval.finetune.decoded): the cache holds what PIL's resize gives,
never enlarges, is reused by key, and a corrupt file stays a black training image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clrbench.data.images import FileImages
from clrbench.eval.finetune import decoded as dec
from clrbench.eval.finetune.images import TrainStream


def _files(tmp_path: Path) -> FileImages:
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(60, 40), (20, 30), (48, 48)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    return FileImages([*paths, bad], np.array([0, 1, 0, 1]), 2)


def test_cache_matches_a_pil_resize_and_is_reused(tmp_path: Path) -> None:
    images = _files(tmp_path)
    key = dec.cache_key("toy", 1, "train", "h", 24)
    assert key != dec.cache_key("toy", 1, "train", "h", 32) != dec.cache_key("toy", 2, "train", "h", 24)
    got = dec.decoded(images, key, tmp_path / "cache", 24)
    ref = Image.open(tmp_path / "0.png").convert("RGB").resize((36, 24), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(np.asarray(got.load_image(0)), np.asarray(ref))
    assert got.load_image(1).size == (20, 30)  # shorter side 20 <= 24: kept, never enlarged
    assert got.load_image(2).size == (24, 24)
    assert list(got.targets) == [0, 1, 0, 1] and len(got) == 4
    path = tmp_path / "cache" / "decoded" / f"{key}.npy"
    stamp = path.stat().st_mtime_ns
    again = dec.decoded(images, key, tmp_path / "cache", 24)
    assert path.stat().st_mtime_ns == stamp and np.asarray(again.load_image(2)).shape == (24, 24, 3)


def test_a_corrupt_image_trains_as_black(tmp_path: Path) -> None:
    got = dec.decoded(_files(tmp_path), "k", tmp_path / "cache", 24)
    x, y = TrainStream(got, 16, (0.5, 1.0), seed=0)[(0, 0, 3)]
    assert x.shape == (3, 16, 16) and int(x.max()) == 0 and int(y) == 1
    x, _ = TrainStream(got, 16, (0.5, 1.0), seed=0)[(0, 0, 0)]
    assert int(x.max()) > 0

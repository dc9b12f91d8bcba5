"""Feature extraction leaves the encoder untouched; the cache hits and misses as it must."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clrbench.data.cards import Preprocessing
from clrbench.data.images import ArrayImages, FileImages
from clrbench.eval.features import cache_key, extract_features, features_for
from clrbench.weights.adapters import load_encoder

PRE = Preprocessing(resize=16, crop=16)
SPEC = "random:resnet18,width=0.125,stem=cifar,seed=0"


def _images(n: int = 20) -> ArrayImages:
    rng = np.random.default_rng(0)
    return ArrayImages(rng.integers(0, 255, (n, 20, 20, 3), dtype=np.uint8), np.arange(n) % 2, 2)


def test_extraction_changes_no_tensor_of_the_encoder(tmp_path: Path) -> None:
    enc = load_encoder(SPEC)
    enc.module.train()  # even if handed over in train mode, BN statistics must not move
    before = {k: v.clone() for k, v in enc.module.state_dict().items()}
    feats, valid = extract_features(enc, _images(), PRE, tmp_path / "f.npy", batch_size=8, dtype="float32")
    after = enc.module.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert feats.shape == (20, enc.meta["feature_dim"]) and feats.dtype == np.float32 and valid.all()


def test_features_match_a_plain_forward(tmp_path: Path) -> None:
    enc = load_encoder(SPEC)
    imgs = _images(6)
    feats, _ = extract_features(enc, imgs, Preprocessing(resize=20, crop=20), tmp_path / "f.npy",
                                batch_size=4, dtype="float32")
    x = torch.from_numpy(imgs.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = enc.module.eval()(x).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-4)


def test_cache_hits_and_misses(tmp_path: Path) -> None:
    enc = load_encoder(SPEC)
    key = cache_key(enc.sha256, "toy", 1, "train", "h", PRE, enc.meta, "pooled", "float32")
    first = features_for(enc, _images(), key, tmp_path, PRE, 8, "float32")
    second = features_for(enc, _images(), key, tmp_path, PRE, 8, "float32")
    assert not first.cached and second.cached
    np.testing.assert_array_equal(first.features, second.features)
    other = load_encoder(SPEC.replace("seed=0", "seed=1"))
    assert other.sha256 != enc.sha256
    variants = [
        cache_key(other.sha256, "toy", 1, "train", "h", PRE, enc.meta, "pooled", "float32"),  # weights
        cache_key(enc.sha256, "toy", 2, "train", "h", PRE, enc.meta, "pooled", "float32"),  # card version
        cache_key(enc.sha256, "toy", 1, "train", "h", Preprocessing(resize=18, crop=16), enc.meta,
                  "pooled", "float32"),  # preprocessing
        cache_key(enc.sha256, "toy", 1, "train", "h", PRE, {**enc.meta, "mean": [0.5] * 3}, "pooled",
                  "float32"),  # normalisation
        cache_key(enc.sha256, "toy", 1, "val", "h", PRE, enc.meta, "pooled", "float32"),  # split
        cache_key(enc.sha256, "toy", 1, "train", "h", PRE, enc.meta, "pooled", "bfloat16"),  # dtype
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path) -> None:
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    imgs = FileImages([good, bad, good], np.array([0, 1, 0]), 2)
    feats, valid = extract_features(load_encoder(SPEC), imgs, PRE, tmp_path / "f.npy", batch_size=2,
                                    dtype="float32")
    assert valid.tolist() == [True, False, True] and feats.shape[0] == 3

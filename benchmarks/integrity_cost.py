"""What the integrity checks of issue 13 cost: checkpoint checksum at save/load, feature-cache
verification at read, and the export's read-back, against the work they guard.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/integrity_cost.py --arch resnet50 --rows 50000

Prints one table: operation, seconds, MB hashed, MB/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--rows", type=int, default=50000, help="feature rows of the cache entry")
    ap.add_argument("--dim", type=int, default=2048)
    a = ap.parse_args()

    from clrbench.eval.cache_check import read_verified, seal
    from clrbench.simclr.encoder import build_encoder
    from clrbench.weights.checkpoint import atomic_torch_save, tensors_sha256

    model, _ = build_encoder(a.arch, 1.0, "imagenet")
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    ckpt = {"model": weights, "optimizer": {"state": {i: {"momentum_buffer": v.clone()}
                                                      for i, v in enumerate(weights.values())}}}
    mb_ckpt = sum(v.numel() * v.element_size() for v in weights.values()) * 2 / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        atomic_torch_save(ckpt, Path(d) / "c.pt")
        rows.append(("torch.save checkpoint (the work)", time.perf_counter() - t, mb_ckpt))
        t = time.perf_counter()
        tensors_sha256(ckpt)
        rows.append(("checkpoint checksum (save or load)", time.perf_counter() - t, mb_ckpt))
        feats = Path(d) / "k.npy"
        np.save(feats, np.random.default_rng(0).standard_normal((a.rows, a.dim), dtype=np.float32))
        np.save(feats.with_suffix(".valid.npy"), np.ones(a.rows, bool))
        mb_feat = feats.stat().st_size / 1e6
        t = time.perf_counter()
        seal(feats, feats.with_suffix(".valid.npy"))
        rows.append(("cache entry seal (after extraction)", time.perf_counter() - t, mb_feat))
        t = time.perf_counter()
        assert read_verified(feats, feats.with_suffix(".valid.npy"), a.rows) is not None
        rows.append(("cache entry verified read", time.perf_counter() - t, mb_feat))
    print(f"{'operation':40} {'s':>8} {'MB':>8} {'MB/s':>8}")
    for name, s, mb in rows:
        print(f"{name:40} {s:8.3f} {mb:8.0f} {mb / s:8.0f}")
    print(f"({a.arch} with momentum state; cache entry {a.rows} x {a.dim} float32; torch {torch.__version__})")


if __name__ == "__main__":
    main()

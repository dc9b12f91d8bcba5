"""Images/s of feature extraction from a hub-layout parquet copy, from the same images as JPEG
files, from in-memory arrays, and of the bare forward of the same encoder.

Extraction is what ``clrbench eval`` runs per split (:func:`clrbench.eval.features.extract_features`):
decode, bicubic resize of the shorter side + centre crop, scale, forward under bf16 autocast,
write to a memory-mapped .npy. The bare forward feeds pre-made batches already on the device.
Loader workers (``--workers``; default: :func:`extraction_workers` from ``$CLRBENCH_CPUS``)
decode and resize in other processes, overlapping the forward; with 0 they run in series.

    python benchmarks/extract_sources.py [--n 512] [--width 0.25] [--size 256] [--crop 224]
        [--threads 1] [--workers 0 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clrbench.data.cards import Preprocessing
from clrbench.data.images import ArrayImages, FileImages, LabeledImages
from clrbench.device import autocast_for
from clrbench.eval.features import extract_features
from clrbench.weights.adapters import load_encoder


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images (JPEG-compressible like photos): 8x8 noise upsampled bicubically."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((size, size), Image.BICUBIC)) for s in small])


def _sources(images: np.ndarray, folder: Path) -> dict[str, LabeledImages]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from clrbench.data.hub import hub_images

    targets = np.arange(len(images)) % 10
    paths, blobs = [], []
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
        paths.append(folder / "files" / f"{i}.jpg")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        paths[-1].write_bytes(blobs[-1])
    hub = folder / "hub"
    (hub / "data").mkdir(parents=True)
    pq.write_table(pa.table({"image": [{"bytes": b, "path": None} for b in blobs], "label": targets.tolist()}),
                   hub / "data" / "train-00000-of-00001.parquet")
    meta = {"dataset_info": {"features": [{"name": "image", "dtype": "image"}, {"name": "label", "dtype": "int64"}]},
            "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]}
    (hub / "README.md").write_text("---\n" + yaml.safe_dump(meta) + "---\n")
    return {"memory": ArrayImages(images, targets, 10), "files (JPEG)": FileImages(paths, targets, 10),
            "hub parquet": hub_images(str(hub), "train")}


@torch.no_grad()
def bare_forward(module: torch.nn.Module, n: int, batch: int, crop: int, device: torch.device) -> float:
    x = torch.rand(batch, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    with autocast_for(device, "auto"):
        module(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(-(-n // batch)):
            module(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    enc = load_encoder(f"random:resnet18,width={a.width},stem=imagenet")
    module = enc.module.to(dev).eval()
    pre = Preprocessing(resize=a.crop, crop=a.crop, interpolation="bicubic")
    with tempfile.TemporaryDirectory() as tmp:
        import datasets

        datasets.config.HF_DATASETS_CACHE = Path(tmp) / "hf"
        sources = _sources(_images(a.n, a.size), Path(tmp))
        bare = max(bare_forward(module, a.n, a.batch, a.crop, dev) for _ in range(a.repeats))
        print(f"cores {os.cpu_count()}, torch threads {a.threads}, ResNet-18 width {a.width}, {a.size} px -> "
              f"{a.crop} px, batch {a.batch}, {a.n} images, bf16")
        print("| source | loader workers | extraction (img/s) | bare forward (img/s) | extraction / bare |")
        print("|---|---:|---:|---:|---:|")
        for name, images in sources.items():
            for w in a.workers:
                best = 0.0
                for r in range(a.repeats):
                    t0 = time.perf_counter()
                    extract_features(enc, images, pre, Path(tmp) / f"f{r}.npy", a.batch, "bfloat16", dev, w)
                    best = max(best, a.n / (time.perf_counter() - t0))
                print(f"| {name} | {w} | {best:.0f} | {bare:.0f} | {best / bare:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Images/s of a fine-tune step vs the bare forward+backward of the same encoder.

The fine-tune step is what a trial of ``--protocol finetune*`` runs (S-v1 B.8.1): images
decoded and augmented by the loader (random resized crop, bicubic, + flip), scaled to the
encoder's input range, forward of encoder + linear head under bf16 autocast and
channels_last, cross-entropy, backward, Nesterov SGD step. The bare step feeds one
pre-made float batch already on the device to the same network, loss and optimizer, so the
ratio shows what data handling costs (target: fine-tune >= 0.8x bare).

    python benchmarks/finetune_throughput.py [--width 0.125] [--batch 256] [--size 32] [--steps 3]
        [--repeats 3] [--workers 0 1]

``--size 32`` fine-tunes on the quick suite's digits (32 px, in memory); any other size uses
random uint8 images of (size * 8/7) px, cropped to ``size`` (the 256 -> 224 geometry).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from clrbench.data.images import ArrayImages, LabeledImages
from clrbench.eval.finetune import trainer as ft
from clrbench.eval.finetune.images import (
    ImageSizes,
    StepBatches,
    TrainStream,
    loader_workers,
    train_loader,
)
from clrbench.weights.adapters import load_encoder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _images(size: int, n: int) -> LabeledImages:
    if size == 32:
        import tempfile

        from clrbench.eval.jobs import EvalJob, load_job_task

        cache = f"{tempfile.gettempdir()}/clrbench-bench"  # the digits split lists only
        return load_job_task(EvalJob("random:resnet18", "bench", "digits", "linear", cache_dir=cache))[1].train
    side = round(size * 8 / 7)
    rng = np.random.default_rng(0)
    return ArrayImages(rng.integers(0, 255, (n, side, side, 3), dtype=np.uint8), np.arange(n) % 10, 10)


def rates(width: float, stem: str, batch: int, size: int, steps: int, device: str, precision: str,
          workers: int | None, repeats: int = 3) -> tuple[float, float]:
    """(fine-tune step images/s, bare forward+backward images/s): medians over ``repeats``
    alternating rounds of ``steps`` steps each (a shared machine's load drifts), after a
    warm-up step of each."""
    dev = torch.device(device)
    enc = load_encoder(f"random:resnet18,width={width},stem={stem}")
    images = _images(size, max(2 * batch, 512))
    total = repeats * steps + 1
    spec = ft.TrialSpec(lr=0.01, wd=0.0, weight_decay=0.0, seed=0, steps=total, batch_size=batch, momentum=0.9,
                        schedule="cosine", bn_momentum=0.1, sizes=ImageSizes(size, size, size), crop_scale=(0.08, 1.0),
                        precision=precision, checkpoint_every=10**9, num_classes=10, multilabel=False)  # type: ignore[arg-type]
    net = ft.build_net(enc, spec, dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scale = ft.input_scaler(enc.meta, dev)
    stream = TrainStream(images, size, spec.crop_scale, 0)
    it: Any = iter(train_loader(stream, StepBatches(len(images), batch, total, 0), dev, workers))

    def full() -> None:
        x, y = next(it)
        ft.fine_tune_step(net, opt, scale(x), y.to(dev, non_blocking=True), 0.01, spec, dev)

    x0 = scale(torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8))
    y0 = torch.randint(0, 10, (batch,), device=dev)

    def bare() -> None:
        ft.fine_tune_step(net, opt, x0, y0, 0.01, spec, dev)

    full()
    bare()
    out: dict[str, list[float]] = {"full": [], "bare": []}
    for _ in range(repeats):
        for name, fn in (("full", full), ("bare", bare)):
            _sync(dev)
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(dev)
            out[name].append(batch * steps / (time.perf_counter() - t))
    return float(np.median(out["full"])), float(np.median(out["bare"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--stem", default=None, help="cifar (default at 32 px) or imagenet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--workers", type=int, nargs="*", default=[None],
                    help="loader workers per row (default: what a trial uses)")
    args = ap.parse_args()
    stem = args.stem or ("cifar" if args.size <= 32 else "imagenet")
    load = os.getloadavg()[0]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"{platform.processor() or 'CPU'} ({torch.get_num_threads()} threads)"
    rows = []
    for workers in args.workers:
        full, bare = rates(args.width, stem, args.batch, args.size, args.steps, args.device, args.precision, workers,
                           args.repeats)
        n = loader_workers(torch.device(args.device)) if workers is None else workers
        rows.append(f"| {dev} | {n} | {full:.0f} | {bare:.0f} | {full / bare:.2f} |")
    print(f"\n### Fine-tune step, ResNet-18 width {args.width} ({stem} stem), {args.size} px, batch {args.batch}, "
          f"{args.precision}; load average {load:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| device | loader workers | fine-tune step (img/s) | bare fwd+bwd (img/s) | fine-tune / bare |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))

if __name__ == "__main__":
    main()

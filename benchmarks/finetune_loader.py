"""Fine-tune data path under concurrent trials: decode every step vs decode once.

Each trial is one process with one torch thread (and CLRBENCH_CPUS=1, so its loader runs in
the process, as a trial per core does on a CPU Ray node). A trial runs ``--steps`` SGD steps of
a ResNet-18 (width ``--width``) fine-tune at ``--crop`` px, batch ``--batch``, fed by:

- ``bare``: one pre-made uint8 batch, no loading at all (the ceiling);
- ``decode``: TrainStream over JPEG files (decode + random resized crop + flip at every step);
- ``cached``: TrainStream over the decode-once cache (clrbench.eval.finetune.decoded), shorter
  side ``--pre-crop`` px.

Prints aggregate images/s of 1, 2 and 4 concurrent trials and each loader's ratio to bare.
Usage: python benchmarks/finetune_loader.py [--steps 12] [--trials 1,2,4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path


def make_jpegs(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` smooth random RGB JPEGs (quality 90) of ``size`` (w, h), like a photo's file size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        p = folder / f"{i:04d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def trial(mode: str, args: argparse.Namespace, folder: str, out: mp.Queue) -> None:
    os.environ["CLRBENCH_CPUS"] = "1"
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from clrbench.data.images import FileImages
    from clrbench.eval.finetune.decoded import decoded
    from clrbench.eval.finetune.images import ImageSizes, StepBatches, TrainStream, train_loader
    from clrbench.eval.finetune.trainer import TrialSpec, build_net, fine_tune_step, input_scaler
    from clrbench.weights.adapters import load_encoder

    paths = sorted(Path(folder).glob("*.jpg"))
    images = FileImages(paths, np.arange(len(paths)) % 10, 10)
    if mode == "cached":
        images = decoded(images, f"bench-{args.pre_crop}", Path(folder) / "cache", args.pre_crop)
    enc = load_encoder(f"random:resnet18,width={args.width},stem=imagenet")
    spec = TrialSpec(lr=0.01, wd=0.0, weight_decay=0.0, seed=0, steps=args.steps + 2, batch_size=args.batch,
                     momentum=0.9, schedule="constant", bn_momentum=0.1,
                     sizes=ImageSizes(args.crop, args.crop, args.crop), crop_scale=(0.08, 1.0), precision="fp32",
                     checkpoint_every=10**9, num_classes=10, multilabel=False)
    dev = torch.device("cpu")
    net = build_net(enc, spec, dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scale = input_scaler(enc.meta, dev)
    if mode == "bare":
        x = torch.randint(0, 255, (args.batch, 3, args.crop, args.crop), dtype=torch.uint8)
        y = torch.arange(args.batch) % 10
        batches = ((x, y) for _ in range(args.steps + 2))
    else:
        stream = TrainStream(images, args.crop, (0.08, 1.0), 0)
        batches = iter(train_loader(stream, StepBatches(len(images), args.batch, args.steps + 2, 0), dev))
    t0 = 0.0
    for step, (x, y) in enumerate(batches):
        if step == 2:  # two warm-up steps
            t0 = time.perf_counter()
        fine_tune_step(net, opt, scale(x), y, 0.01, spec, dev)
    out.put(args.steps * args.batch / (time.perf_counter() - t0))


def loader_only(folder: str, args: argparse.Namespace) -> tuple[float, float]:
    """Images/s of the training stream alone (decode + crop + flip), one thread: files vs cache."""
    import numpy as np

    from clrbench.data.images import FileImages
    from clrbench.eval.finetune.decoded import decoded
    from clrbench.eval.finetune.images import TrainStream

    paths = sorted(Path(folder).glob("*.jpg"))
    files = FileImages(paths, np.arange(len(paths)) % 10, 10)
    cached = decoded(files, f"bench-{args.pre_crop}", Path(folder) / "cache", args.pre_crop)
    best = {}
    for name, src in (("decode", files), ("cached", cached)) * 2:  # best of two: a shared machine
        stream = TrainStream(src, args.crop, (0.08, 1.0), 0)
        t0 = time.perf_counter()
        for i in range(len(paths)):
            stream[(0, i, i)]
        best[name] = max(best.get(name, 0.0), len(paths) / (time.perf_counter() - t0))
    return best["decode"], best["cached"]


def run(mode: str, k: int, args: argparse.Namespace, folder: str) -> float:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=trial, args=(mode, args, folder, q)) for _ in range(k)]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--pre-crop", type=int, default=128)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--trials", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        make_jpegs(Path(folder), args.images, (500, 375))
        t0 = time.perf_counter()
        import numpy as np

        from clrbench.data.images import FileImages
        from clrbench.eval.finetune.decoded import decoded

        paths = sorted(Path(folder).glob("*.jpg"))
        decoded(FileImages(paths, np.arange(len(paths)) % 10, 10), f"bench-{args.pre_crop}", Path(folder) / "cache",
                args.pre_crop)  # built once, before any trial
        print(f"cache of {args.images} images (500x375 JPEG -> shorter side {args.pre_crop}) built "
              f"in {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        dec1, cached1 = loader_only(folder, args)
        print(f"loader alone, 1 thread: decode {dec1:.0f} img/s, cached {cached1:.0f} img/s ({cached1 / dec1:.1f}x)")
        print(f"ResNet-18 w{args.width} fine-tune step, batch {args.batch}, crop {args.crop} px, 1 thread per trial")
        print("| trials | bare img/s | decode img/s (x bare) | cached img/s (x bare) |")
        print("|---:|---:|---:|---:|")
        for k in (int(v) for v in args.trials.split(",")):
            rates: dict[str, float] = {}
            for m in ("bare", "decode", "cached") * args.repeats:  # interleaved, best of --repeats
                rates[m] = max(rates.get(m, 0.0), run(m, k, args, folder))
            bare, dec, cached = rates["bare"], rates["decode"], rates["cached"]
            print(f"| {k} | {bare:.0f} | {dec:.0f} ({dec / bare:.2f}) | {cached:.0f} ({cached / bare:.2f}) |",
                  flush=True)


if __name__ == "__main__":
    main()

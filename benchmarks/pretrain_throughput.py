"""Images/s of a full SimCLR training step vs the bare forward+backward of the same encoder.

The full step is what ``clrbench pretrain`` runs: batched two-view augmentation of the
in-memory source, one forward of the 2N views through encoder + head, NT-Xent, LARS step.
The bare step feeds pre-made random views to the same network and loss, so the ratio shows
what augmentation and data handling cost (target: full >= 0.8x bare). Also measures the two
augmentation backends (kornia batched vs torchvision per image) at 32 and 96 px.

    python benchmarks/pretrain_throughput.py [--width 1.0] [--batch 256] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from clrbench.config import derive, load_pretrain_config
from clrbench.data.pretrain_source import open_source
from clrbench.pretraining.train import _Batches, _step, build_optimizer
from clrbench.simclr.augment import TorchvisionTwoView, TwoViewAugment
from clrbench.simclr.model import SimCLR


def _time(fn, steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def step_rates(width: float, batch: int, steps: int, device: str, precision: str) -> tuple[float, float]:
    cfg = load_pretrain_config("quickstart", [
        f"model.width={width}", "model.head_dim=128", f"optim.batch_size_global={batch}",
        f"data.num_images={max(4 * batch, 2048)}", f"run.device={device}", f"run.precision={precision}",
        "run.online_probe=false",
    ])
    dev = torch.device(device)
    src = open_source(cfg.data)
    d = derive(cfg, len(src))
    model = SimCLR(cfg.model).to(dev).to(memory_format=torch.channels_last)
    opt = build_optimizer(cfg, model, d.lr)
    it = iter(_Batches(cfg, src, d, dev)(0))

    def full() -> None:
        a, b, _, _ = next(it)
        _step(cfg, model, None, opt, None, a, b, None, dev)

    a0 = torch.rand(batch, 3, 32, 32, device=dev)
    b0 = torch.rand(batch, 3, 32, 32, device=dev)

    def bare() -> None:
        _step(cfg, model, None, opt, None, a0, b0, None, dev)

    t_full, t_bare = _time(full, steps), _time(bare, steps)
    return batch / t_full, batch / t_bare


def augment_rates(size: int, n: int = 256) -> tuple[float, float]:
    cfg = load_pretrain_config("quickstart", [f"augment.image_size={size}"]).augment
    x = torch.randint(0, 255, (n, 3, size, size), dtype=torch.uint8)
    batched = TwoViewAugment(cfg)
    t_batched = _time(lambda: batched(x), 3)
    per_image = TorchvisionTwoView(cfg)
    torch.set_num_threads(1)
    t_single = _time(lambda: [per_image(x[i]) for i in range(n)], 2)
    torch.set_num_threads(torch.get_num_threads())
    return n / t_batched, n / t_single


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--skip-augment", action="store_true")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    full, bare = step_rates(args.width, args.batch, args.steps, args.device, args.precision)
    name = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or 'CPU'} ({threads} threads)"
    )
    print(
        f"\n### Training step, ResNet-18 (width {args.width}, CIFAR stem) at 32 px, "
        f"batch {args.batch}, {args.precision}\n"
    )
    print("| device | full step (img/s) | bare fwd+bwd (img/s) | full / bare |")
    print("|---|---:|---:|---:|")
    print(f"| {name} | {full:.0f} | {bare:.0f} | {full / bare:.2f} |")
    if not args.skip_augment:
        torch.set_num_threads(threads)
        print("\n### Augmentation backends (view pairs/s, CPU)\n")
        print("| size | kornia batched | torchvision per image, 1 thread |")
        print("|---:|---:|---:|")
        for size in (32, 96):
            kb, tv = augment_rates(size)
            print(f"| {size} | {kb:.0f} | {tv:.0f} |")


if __name__ == "__main__":
    main()

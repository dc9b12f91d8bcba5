"""Images/s of one SimCLR training step with 1 and N gloo processes on CPU (SimCLR v1 section 2.2).

Each configuration runs the step of ``clrbench.simclr.train`` (one forward of the 2n views, NT-Xent
over the gathered global batch, LARS) on random inputs at a fixed global batch, and records with
``clrbench.dist.comm_timer`` the wall time spent in the projection all-gather (forward and
backward) and in the GlobalBatchNorm all-reduces (protocol.md 4.7). Prints a markdown table.

    .venv/bin/python benchmarks/scaling.py --batch-size-global 32 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

from clrbench import dist


class _Net(nn.Module):
    def __init__(self, width: float) -> None:
        super().__init__()
        from clrbench.simclr.encoder import build_encoder
        from clrbench.simclr.head import build_head

        self.encoder, dim = build_encoder("resnet18", width=width, stem="cifar")
        self.head = build_head("v1", dim, out_dim=128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _worker(rank: int, cfg: dict, port: int, out: str) -> None:
    from clrbench.simclr.lars import LARS, param_groups
    from clrbench.simclr.loss import nt_xent

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(cfg["world"]),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(cfg["threads"])
    dist.init_from_env("gloo")
    torch.manual_seed(0)
    model = _Net(cfg["width"])
    if cfg["global_bn"]:
        dist.convert_global_bn(model)
    net = dist.wrap_ddp(model, torch.device("cpu"))
    opt = LARS(param_groups(model, 1e-6), lr=0.3, weight_decay=1e-6)
    n = cfg["batch"] // cfg["world"]
    x = torch.rand(2 * n, 3, cfg["size"], cfg["size"])  # two views of n images
    times, comm = [], {}
    for step in range(cfg["warmup"] + cfg["steps"]):
        dist.barrier()
        with dist.comm_timer() as seconds:
            start = time.perf_counter()
            z = net(x)
            loss = nt_xent(z[:n], z[n:], 0.5, gather=cfg["world"] > 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dist.barrier()  # the step ends when the slowest rank is done
            elapsed = time.perf_counter() - start
        if step >= cfg["warmup"]:
            times.append(elapsed)
            for k, v in seconds.items():
                comm[k] = comm.get(k, 0.0) + v / cfg["steps"]
    if dist.is_main():
        Path(out).write_text(json.dumps({"step_s": sorted(times)[len(times) // 2], "comm": comm}))
    dist.destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(cfg: dict) -> dict:
    """Run ``cfg["world"]`` processes; rank 0's median step time and mean collective times."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        mp.start_processes(
            _worker, args=(cfg, _free_port(), out), nprocs=cfg["world"], start_method="spawn"
        )
        return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--batch-size-global", type=int, default=32, help="images per step (x2 views)"
    )
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="threads shared out among processes")
    args = parser.parse_args()
    base = dict(
        batch=args.batch_size_global, size=args.image_size, width=args.width,
        steps=args.steps, warmup=args.warmup,
    )  # fmt: skip
    runs = [
        ("1 process", dict(world=1, threads=1, global_bn=True)),
        (f"1 process, {args.cores} threads", dict(world=1, threads=args.cores, global_bn=True)),
        ("2 processes, global BN", dict(world=2, threads=max(1, args.cores // 2), global_bn=True)),
        ("2 processes, local BN", dict(world=2, threads=max(1, args.cores // 2), global_bn=False)),
    ]
    print(
        f"ResNet-18 width {args.width}, CIFAR stem, v1 head, {args.image_size} px, global batch "
        f"{args.batch_size_global} images (x2 views), gloo on CPU, torch {torch.__version__}\n"
    )
    print(
        "| configuration | threads/process | step (ms) | images/s | gather (ms) | BN all-reduce (ms, fwd/bwd) | comm share |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, extra in runs:
        r = measure({**base, **extra})
        step_ms = 1e3 * r["step_s"]
        gather = 1e3 * (r["comm"].get("gather.forward", 0) + r["comm"].get("gather.backward", 0))
        bn = 1e3 * (r["comm"].get("bn.forward", 0) + r["comm"].get("bn.backward", 0))
        bn_split = "/".join(
            f"{1e3 * r['comm'].get(k, 0):.0f}" for k in ("bn.forward", "bn.backward")
        )
        print(
            f"| {name} | {extra['threads']} | {step_ms:.0f} | {args.batch_size_global / r['step_s']:.1f} "
            f"| {gather:.1f} | {bn:.1f} ({bn_split}) | {(gather + bn) / step_ms:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

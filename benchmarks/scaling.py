"""Images/s of one SimCLR training step with 1 and 2 gloo processes on CPU (SimCLR v1 section 2.2).

Each configuration runs the training step (one forward of the 2n views through ResNet-18 + v1
head, NT-Xent over the gathered global batch, LARS) on random inputs at a fixed global batch,
under DDP when there are two processes. ``clrbench.dist.comm_timer`` records the wall time spent
in the projection all-gather (forward + backward) and in the GlobalBatchNorm all-reduces
(protocol.md 4.7); both include waiting for the slower rank. It also measures the latency of one
small gloo all-reduce, since global BN costs 2 collectives per BN layer per step whatever the
batch size. Prints markdown tables.

    .venv/bin/python benchmarks/scaling.py --batch-size-global 32 128 --steps 6
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

from clrbench import dist
from clrbench.simclr.global_bn import convert_global_bn


class _Net(nn.Module):
    def __init__(self, width: float) -> None:
        super().__init__()
        from clrbench.simclr.encoder import build_encoder
        from clrbench.simclr.head import build_head

        self.encoder, dim = build_encoder("resnet18", width=width, stem="cifar")
        self.head = build_head("v1", dim, out_dim=128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _all_reduce_latency_ms(channels: int = 128, repeats: int = 100) -> float:
    """Mean time of one all-reduce of a GlobalBatchNorm-sized payload (2C+1 float64)."""
    x = torch.zeros(2 * channels + 1, dtype=torch.float64)
    for _ in range(10):
        dist.all_reduce_sum(x)
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce_sum(x)
    return 1e3 * (time.perf_counter() - start) / repeats


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
        convert_global_bn(model)
    net = dist.wrap_ddp(model, torch.device("cpu"))
    opt = LARS(param_groups(model, 1e-6), lr=0.3, weight_decay=1e-6)
    n = cfg["batch"] // cfg["world"]
    x = torch.rand(2 * n, 3, cfg["size"], cfg["size"])  # two views of this rank's n images
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
            dist.barrier()  # the step ends when the slower rank is done
            elapsed = time.perf_counter() - start
        if step >= cfg["warmup"]:
            times.append(elapsed)
            for k, v in seconds.items():
                comm[k] = comm.get(k, 0.0) + v / cfg["steps"]
    latency = _all_reduce_latency_ms() if cfg["world"] > 1 else 0.0
    if dist.is_main():
        result = {"step_s": sorted(times)[len(times) // 2], "comm": comm, "latency_ms": latency}
        Path(out).write_text(json.dumps(result))
    dist.barrier()  # no rank tears down gloo while the other may still talk to it
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


def _row(name: str, batch: int, threads: int, r: dict) -> str:
    ms = {k: 1e3 * v for k, v in r["comm"].items()}
    step_ms = 1e3 * r["step_s"]
    gather = ms.get("gather.forward", 0.0) + ms.get("gather.backward", 0.0)
    bn_fwd, bn_bwd = ms.get("bn.forward", 0.0), ms.get("bn.backward", 0.0)
    share = (gather + bn_fwd + bn_bwd) / step_ms
    return (
        f"| {batch} | {name} | {threads} | {step_ms:.0f} | {batch / r['step_s']:.0f} "
        f"| {gather:.1f} | {bn_fwd + bn_bwd:.1f} ({bn_fwd:.0f}/{bn_bwd:.0f}) | {share:.0%} |"
    )


def _bn_step(norm: Callable[..., torch.Tensor], x: torch.Tensor, dy: torch.Tensor) -> None:
    channels = x.shape[1]
    w, b = torch.ones(channels, requires_grad=True), torch.zeros(channels, requires_grad=True)
    norm(x, torch.zeros(channels), torch.ones(channels), w, b, 0.1, 1e-5).backward(dy)


def bn_compute_table(shapes: list[tuple[int, ...]], repeats: int = 20) -> list[str]:
    """Forward + backward ms of nn.BatchNorm's kernel vs GlobalBatchNorm's path, one process.

    ``global_batch_norm`` runs its collective code path in one process too (the all-reduces are
    then identities), so this isolates the element-wise cost of the custom autograd Function.
    """
    import torch.nn.functional as F

    from clrbench.simclr.global_bn import global_batch_norm

    def native(x, rm, rv, w, b, momentum, eps):  # type: ignore[no-untyped-def]
        return F.batch_norm(x, rm, rv, w, b, True, momentum, eps)

    torch.set_num_threads(1)
    rows = ["| activation shape | nn.BatchNorm (ms) | GlobalBatchNorm path (ms) |", "|---|---|---|"]
    for shape in shapes:
        x, dy = torch.randn(*shape).requires_grad_(), torch.randn(*shape)
        ms = {}
        for name, norm in (("native", native), ("global", global_batch_norm)):
            step = functools.partial(_bn_step, norm, x, dy)
            for _ in range(3):
                step()
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            ms[name] = 1e3 * (time.perf_counter() - start) / repeats
        rows.append(f"| {tuple(shape)} | {ms['native']:.2f} | {ms['global']:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size-global", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="threads shared out among processes")
    args = parser.parse_args()
    half = max(1, args.cores // 2)
    runs = [
        ("1 process", dict(world=1, threads=1, global_bn=True)),
        (f"1 process, {args.cores} threads", dict(world=1, threads=args.cores, global_bn=True)),
        ("2 processes, global BN", dict(world=2, threads=half, global_bn=True)),
        ("2 processes, local BN", dict(world=2, threads=half, global_bn=False)),
    ]
    print(
        f"ResNet-18 width {args.width}, CIFAR stem, v1 head (22 BN layers), {args.image_size} px, "
        f"fp32, gloo on CPU, torch {torch.__version__}; images/s counts images (2 views each)\n"
    )
    print(
        "| global batch | configuration | threads/process | step (ms) | images/s | gather (ms) "
        "| BN all-reduce (ms, fwd/bwd) | comm share |"
    )
    print("|---|---|---|---|---|---|---|---|")
    latencies = []
    for batch in args.batch_size_global:
        for name, extra in runs:
            cfg = dict(
                batch=batch, size=args.image_size, width=args.width,
                steps=args.steps, warmup=args.warmup, **extra,
            )  # fmt: skip
            r = measure(cfg)
            if r["latency_ms"]:
                latencies.append(r["latency_ms"])
            print(_row(name, batch, extra["threads"], r), flush=True)
    if latencies:
        print(
            f"\ngloo all-reduce of 257 float64, 2 processes: {min(latencies):.2f}-{max(latencies):.2f} ms"
        )
    n, s = 2 * args.batch_size_global[-1], args.image_size  # views per step in one process
    print("\nBN compute alone, forward + backward, 1 thread:\n")
    print("\n".join(bn_compute_table([(n, 16, s, s), (n, 64, s // 4, s // 4), (n, 128)])))


if __name__ == "__main__":
    main()

"""Run a function in several CPU gloo processes for the ``dist``-marked tests (protocol.md 4.7).

The function must be defined at module level (it is pickled by reference into spawned processes).
Each rank joins the group through :func:`clrbench.dist.init_from_env`, exactly as under torchrun,
and returns a picklable value; the parent gets the values in rank order.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(
    rank: int, fn: Callable[..., Any], world_size: int, port: int, out_dir: str, args: tuple
) -> None:
    from clrbench import dist

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    # One thread per process: the ranks share the machine, and results become reproducible.
    torch.set_num_threads(1)
    assert dist.init_from_env("gloo", timeout_s=30, collective_timeout_s=60)
    try:
        result = fn(*args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no rank tears down gloo while the other may still talk to it
    finally:
        dist.destroy()


def run_distributed(
    fn: Callable[..., Any], *args: Any, world_size: int = 2, timeout_s: float = 90.0
) -> list[Any]:
    """Call ``fn(*args)`` in ``world_size`` spawned processes that form a gloo group.

    Returns:
        ``[result of rank 0, result of rank 1, ...]``.

    Raises:
        TimeoutError: the processes did not finish within ``timeout_s`` (they are killed).
        torch.multiprocessing.ProcessRaisedException: a rank raised; its traceback is shown.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(
            _entry,
            args=(fn, world_size, free_port(), out_dir, args),
            nprocs=world_size,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise TimeoutError(f"{fn.__name__} did not finish in {timeout_s:g} s.")
        return [
            torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)
        ]

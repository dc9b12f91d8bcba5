"""The only module that imports torch.distributed; every function also works with no process group.

Global batch norm and cross-device negatives follow SimCLR v1 section 2.2 (protocol.md 4.7):
``gather_with_grad`` is the differentiable all-gather of the projections, ``all_reduce_sum``
carries the statistics of :class:`clrbench.simclr.global_bn.GlobalBatchNorm`.

Gradient convention (what the collectives' backward passes assume): every rank's loss is the
mean over its own anchors, and DDP averages parameter gradients over ranks. With equal shards
the mean of the local means is the mean over the global batch, so the gradients that DDP leaves
on every rank equal those of one process that sees the whole batch. Inside the graph, the
backward of each collective therefore returns the gradient of the *sum* of the ranks' losses
with respect to this rank's input; DDP's division by the world size turns that sum into the mean.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist
from torch import nn

from clrbench.errors import UserError

_T = TypeVar("_T")

# Seconds spent in collectives, by tag, while `comm_timer` is active; None means "not timing".
_comm_seconds: dict[str, float] | None = None


class DistError(UserError, RuntimeError):
    """A process group that cannot be set up as asked; the message says why in one sentence."""


# ----------------------------------------------------------------------------- queries


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 without one)."""
    return torch_dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return torch_dist.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """Rank of this process on its node, from torchrun's ``LOCAL_RANK`` (0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this is rank 0, the process that logs and writes files."""
    return rank() == 0


# ----------------------------------------------------------------------------- lifecycle


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise DistError(f"Environment variable {name} is not set; launch with torchrun or set it.")
    try:
        return int(value)
    except ValueError:
        raise DistError(f"Environment variable {name} must be an integer, got {value!r}.") from None


def init_from_env(
    backend: str | None = None,
    timeout_s: float = 60.0,
    collective_timeout_s: float | None = 1800.0,
) -> bool:
    """Join the process group described by torchrun's environment variables.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (and ``LOCAL_RANK`` for the
    GPU). With ``WORLD_SIZE`` unset or 1 nothing is initialised and training runs in one process.

    Args:
        backend: ``"nccl"``, ``"gloo"``, or None for nccl when CUDA is available, else gloo.
        timeout_s: limit for the rendezvous, so a missing peer raises instead of hanging.
        collective_timeout_s: limit for every later collective (a rank stuck behind a slow
            checkpoint write must not trip it); None keeps ``timeout_s``. Applied only where
            torch offers ``torch.distributed.set_timeout``.

    Returns:
        True when this call created the process group (the caller then owns :func:`destroy`);
        False in one process or when a group already exists (e.g. set up by Ray Train).

    Raises:
        DistError: NCCL without GPUs, missing or malformed variables, or a failed rendezvous.
    """
    if is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not torch_dist.is_available():
        raise DistError("This torch build has no torch.distributed; install a build with it.")
    size, this_rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise DistError(
                f"Environment variable {name} is not set; launch with torchrun or set it."
            )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise DistError(
                "Backend 'nccl' needs CUDA GPUs but none is visible; use backend 'gloo' on CPU."
            )
        if local_rank() >= torch.cuda.device_count():
            raise DistError(
                f"LOCAL_RANK {local_rank()} has no GPU: only {torch.cuda.device_count()} visible."
            )
        # Without this every rank's NCCL communicator would sit on GPU 0.
        torch.cuda.set_device(local_rank())
    try:
        torch_dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=this_rank,
            world_size=size,
            timeout=timedelta(seconds=timeout_s),
        )
    except Exception as err:  # rendezvous failures come as several exception types
        raise DistError(
            f"Could not join the {backend} process group as rank {this_rank} of {size} within "
            f"{timeout_s:g} s: {err}"
        ) from err
    if collective_timeout_s is not None and hasattr(torch_dist, "set_timeout"):
        torch_dist.set_timeout(timedelta(seconds=collective_timeout_s))
    return True


def destroy() -> None:
    """Leave and destroy the default process group; a no-op without one."""
    if is_initialized():
        torch_dist.destroy_process_group()


# ----------------------------------------------------------------------------- collectives


@contextlib.contextmanager
def comm_timer() -> Iterator[dict[str, float]]:
    """Accumulate the wall seconds spent in this module's collectives, by tag, while active.

    Tags: ``gather.forward``, ``gather.backward``, ``bn.forward``, ``bn.backward`` (from
    GlobalBatchNorm), ``all_reduce``, ``barrier``, ``broadcast``. The time includes waiting for
    the slowest rank. On CUDA the device is synchronised around each collective, which makes
    timed steps slower than untimed ones.

    Yields:
        The dict being filled; read it after the block.
    """
    global _comm_seconds
    outer, _comm_seconds = _comm_seconds, {}
    try:
        yield _comm_seconds
    finally:
        _comm_seconds = outer


@contextlib.contextmanager
def _timed(tag: str, tensor: torch.Tensor | None = None) -> Iterator[None]:
    if _comm_seconds is None:
        yield
        return
    cuda = tensor is not None and tensor.is_cuda
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield
    if cuda:
        torch.cuda.synchronize()
    _comm_seconds[tag] = _comm_seconds.get(tag, 0.0) + time.perf_counter() - start


def barrier() -> None:
    """Wait until every rank gets here; a no-op in one process."""
    if world_size() > 1:
        with _timed("barrier"):
            torch_dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, tag: str = "all_reduce") -> torch.Tensor:
    """Element-wise sum over ranks; not differentiable, the input is never modified.

    Args:
        tensor: any shape, the same on every rank.
        tag: the name under which :func:`comm_timer` records the time.

    Returns:
        Tensor of the same shape (the input itself when there is one process).
    """
    if world_size() == 1:
        return tensor
    out = tensor.detach().clone(memory_format=torch.contiguous_format)
    with _timed(tag, out):
        torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise mean over ranks (for logging metrics); not differentiable.

    Args:
        tensor: floating point, any shape, the same on every rank.

    Returns:
        A new tensor of the same shape; the input is never modified.
    """
    if world_size() == 1:
        return tensor.detach().clone()
    return all_reduce_sum(tensor) / world_size()


def broadcast_object(obj: _T, src: int = 0) -> _T:
    """Send a picklable object from rank ``src`` to every rank (e.g. a run directory name).

    Returns:
        ``src``'s object on every rank; ``obj`` itself in one process.
    """
    if world_size() == 1:
        return obj
    box: list[Any] = [obj]
    with _timed("broadcast"):
        torch_dist.broadcast_object_list(box, src=src)
    return box[0]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and keeps this rank's slice.

    Rank r's loss L_r depends on every rank's slice, so d(sum_s L_s)/dx_r = sum_s dL_s/dx_r: the
    all-reduce of the full gradient, then this rank's rows (GatherLayer of SimCLR/solo-learn).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = [
            torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(world_size())
        ]
        with _timed("gather.forward", x):
            torch_dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        # Clone: autograd may hand the same gradient buffer to other nodes, so never reduce in place.
        grad = grad.clone(memory_format=torch.contiguous_format)
        with _timed("gather.backward", grad):
            torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        n = grad.shape[0] // world_size()
        return grad[rank() * n : (rank() + 1) * n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order, with gradients flowing back to each rank.

    Args:
        x: (n, ...) with the same shape on every rank.

    Returns:
        (world_size * n, ...); rows ``rank * n : (rank + 1) * n`` are this rank's ``x``.
        ``x`` itself in one process.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


# ----------------------------------------------------------------------------- models


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when there is more than one process.

    DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts from the
    same weights, and averages gradients over ranks in backward (the convention of this module's
    docstring). Convert batch norms with :func:`clrbench.simclr.global_bn.convert_global_bn` before calling this.

    Args:
        model: already on ``device``.
        device: this rank's device; a CUDA device pins DDP to that GPU.

    Returns:
        The DDP wrapper, or ``model`` itself in one process.
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = (
        [device.index if device.index is not None else local_rank()]
        if device.type == "cuda"
        else None
    )
    return DistributedDataParallel(model, device_ids=device_ids)

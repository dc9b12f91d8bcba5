"""clrbench.dist in one process and in two gloo processes (SimCLR v1 section 2.2; protocol.md 4.7).

Convention checked throughout: each rank's loss is the mean over its own anchors and DDP averages
gradients over ranks. With equal shards the mean of the local losses is the single-process loss on
the concatenated batch, so DDP's averaged gradients equal the single-process gradients. Without
DDP, a rank's raw gradient w.r.t. its own inputs is that of the *sum* of the ranks' losses, i.e.
world_size times the single-process gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from distributed_helpers import free_port, run_distributed
from torch import nn

from clrbench import dist
from clrbench.simclr.global_bn import convert_global_bn

TOL = 1e-5
WORLD = 2


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One thread and deterministic kernels, like each spawned rank; restored afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------- one process


def test_single_process_fallbacks() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert (dist.world_size(), dist.rank(), dist.is_main(), dist.is_initialized()) == (
        1,
        0,
        True,
        False,
    )
    assert dist.gather_with_grad(x) is x
    assert dist.all_reduce_sum(x) is x
    mean = dist.all_reduce_mean(x)
    assert torch.equal(mean, x) and mean is not x and not mean.requires_grad
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    dist.barrier()
    dist.destroy()
    model = nn.Linear(2, 2)
    assert dist.wrap_ddp(model, torch.device("cpu")) is model
    with dist.comm_timer() as seconds:
        dist.all_reduce_sum(x)
    assert seconds == {}


def test_local_rank_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert dist.local_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert dist.local_rank() == 3


def test_init_without_world_size_stays_single(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.init_from_env() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist.init_from_env() is False
    assert not dist.is_initialized()


def _torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int, port: int) -> None:
    for name, value in dict(
        RANK=rank, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port
    ).items():
        monkeypatch.setenv(name, str(value))


def test_nccl_without_gpu_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    _torchrun_env(monkeypatch, 0, free_port())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(dist.DistError, match="needs CUDA GPUs"):
        dist.init_from_env("nccl")


def test_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _torchrun_env(monkeypatch, 0, free_port())
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(dist.DistError, match="MASTER_ADDR"):
        dist.init_from_env("gloo")


def test_rendezvous_times_out_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    _torchrun_env(monkeypatch, 1, free_port())  # rank 1, and no rank 0 ever listens
    with pytest.raises(dist.DistError, match="within 2 s"):
        dist.init_from_env("gloo", timeout_s=2)
    assert not dist.is_initialized()


# ----------------------------------------------------------------------------- gather


def _gather_inputs(n: int = 3, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Global x (WORLD * n, d) and one weight matrix per rank, so each rank's loss differs."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * n, d, generator=g), torch.randn(WORLD, WORLD * n, d, generator=g)


def _gather_worker() -> dict[str, torch.Tensor]:
    x_all, w = _gather_inputs()
    n = x_all.shape[0] // WORLD
    x = x_all[dist.rank() * n : (dist.rank() + 1) * n].clone().requires_grad_()
    with dist.comm_timer() as seconds:
        gathered = dist.gather_with_grad(x)
        loss = (gathered.square() * w[dist.rank()]).sum()  # nonlinear, rank-dependent
        loss.backward()
    assert set(seconds) == {"gather.forward", "gather.backward"}
    return {"gathered": gathered.detach(), "grad": x.grad, "loss": loss.detach()}


def _small_checks_worker() -> dict[str, object]:
    """The small two-process checks in one spawn: process start-up dominates their time."""
    return {
        "gather": _gather_worker(),
        "collectives": _collectives_worker(),
        "nt_xent": _nt_xent_worker(),
    }


@pytest.fixture(scope="module")
def small_checks() -> list[dict]:
    return run_distributed(_small_checks_worker)


@pytest.mark.dist
def test_gather_with_grad_matches_single_process(small_checks: list[dict]) -> None:
    ranks = [r["gather"] for r in small_checks]
    x_all, w = _gather_inputs()
    x_ref = x_all.clone().requires_grad_()
    total = sum((x_ref.square() * w[r]).sum() for r in range(WORLD))  # sum of the ranks' losses
    total.backward()
    assert all(torch.equal(r["gathered"], x_all) for r in ranks)
    assert _max_diff(sum(r["loss"] for r in ranks), total.detach()) <= TOL
    assert _max_diff(torch.cat([r["grad"] for r in ranks]), x_ref.grad) <= TOL


@pytest.mark.dist
def test_collectives_in_two_processes(small_checks: list[dict]) -> None:
    ranks = [r["collectives"] for r in small_checks]
    assert ranks == [(2, 3.0, 1.5, "from rank 0")] * 2


def _collectives_worker() -> tuple[int, float, float, str]:
    value = torch.tensor([float(dist.rank() + 1)])  # 1 and 2
    total = dist.all_reduce_sum(value)
    mean = dist.all_reduce_mean(value)
    assert value.item() == dist.rank() + 1  # inputs are never modified
    dist.barrier()
    message = dist.broadcast_object(f"from rank {dist.rank()}")
    return dist.world_size(), total.item(), mean.item(), message


# ----------------------------------------------------------------------------- NT-Xent


def _naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> torch.Tensor:
    """S-v1 eq. 1 as a loop over the 2N anchors: -log(exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau))."""
    z = torch.nn.functional.normalize(torch.cat([z_a, z_b]), dim=1)
    n2 = z.shape[0]
    losses = []
    for i in range(n2):
        sims = z @ z[i] / tau
        others = torch.cat([sims[:i], sims[i + 1 :]])
        losses.append(torch.logsumexp(others, 0) - sims[(i + n2 // 2) % n2])
    return torch.stack(losses).mean()


def _projections(n: int = 4, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(WORLD * n, d, generator=g), torch.randn(WORLD * n, d, generator=g)


def _nt_xent_worker() -> dict[str, torch.Tensor]:
    from clrbench.simclr.loss import nt_xent

    z_a, z_b = _projections()
    n = z_a.shape[0] // WORLD
    rows = slice(dist.rank() * n, (dist.rank() + 1) * n)
    z_a, z_b = z_a[rows].clone().requires_grad_(), z_b[rows].clone().requires_grad_()
    loss = nt_xent(z_a, z_b, 0.5, gather=True)
    loss.backward()
    return {"loss": loss.detach(), "grad_a": z_a.grad, "grad_b": z_b.grad}


@pytest.mark.dist
def test_nt_xent_with_gather_equals_single_process_loss(small_checks: list[dict]) -> None:
    from clrbench.simclr.loss import nt_xent

    ranks = [r["nt_xent"] for r in small_checks]
    z_a, z_b = (z.requires_grad_() for z in _projections())
    ref = _naive_nt_xent(z_a, z_b, 0.5)
    ref.backward()
    assert _max_diff(nt_xent(z_a, z_b, 0.5), ref) <= TOL
    # The global mean loss is the mean of the local means (equal shards).
    assert _max_diff(torch.stack([r["loss"] for r in ranks]).mean(), ref) <= TOL
    # Raw rank gradients are those of the sum of the local losses: WORLD x the single-process
    # gradient. DDP's averaging of parameter gradients divides by WORLD downstream.
    for key, z in (("grad_a", z_a), ("grad_b", z_b)):
        assert _max_diff(torch.cat([r[key] for r in ranks]) / WORLD, z.grad) <= TOL


# ----------------------------------------------------------------------------- training step


def _tiny_simclr() -> nn.Module:
    from clrbench.simclr.encoder import build_encoder
    from clrbench.simclr.head import build_head

    torch.manual_seed(0)
    encoder, dim = build_encoder("resnet18", width=0.125, stem="cifar")
    return nn.Sequential(encoder, build_head("v1", dim, out_dim=32))


def _train_steps(
    global_bn: bool, dtype: torch.dtype = torch.float32, steps: int = 1, batch: int = 8
) -> dict[str, object]:
    """``steps`` SimCLR steps on this rank's rows of a seeded global batch of ``batch`` images.

    In one process (no group) this is the reference on the whole batch; gather, DDP and global BN
    switch on by themselves when the world is larger.
    """
    from clrbench.simclr.lars import LARS, param_groups
    from clrbench.simclr.loss import nt_xent

    model = _tiny_simclr().to(dtype)
    if global_bn:
        convert_global_bn(model)
    net = dist.wrap_ddp(model, torch.device("cpu"))
    opt = LARS(param_groups(model, 1e-4), lr=0.5, momentum=0.9, weight_decay=1e-4)
    n = batch // dist.world_size()
    rows = slice(dist.rank() * n, (dist.rank() + 1) * n)
    losses, grads = [], []
    for step in range(steps):
        views = torch.rand(2, batch, 3, 16, 16, generator=torch.Generator().manual_seed(10 + step))
        views = views.to(dtype)
        z = net(torch.cat([views[0, rows], views[1, rows]]))  # one forward over both views
        loss = nt_xent(z[:n], z[n:], 0.5, gather=dist.world_size() > 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over ranks here
        losses.append(loss.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        opt.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return {"losses": torch.stack(losses), "grads": grads, "state": state}


def _compare(ranks: list[dict], ref: dict) -> dict[str, float]:
    """Max abs differences of the DDP run against the single-process reference, by quantity."""
    loss = _max_diff(torch.stack([r["losses"] for r in ranks]).mean(0), ref["losses"])
    grad = max(
        _max_diff(r["grads"][s][k], g)
        for r in ranks
        for s, gs in enumerate(ref["grads"])
        for k, g in gs.items()
    )
    state = {
        k: max(_max_diff(r["state"][k].double(), v.double()) for r in ranks)
        for k, v in ref["state"].items()
    }
    is_buffer = {k: "running" in k or "num_batches" in k for k in state}
    buffers = max(v for k, v in state.items() if is_buffer[k])
    weights = max(v for k, v in state.items() if not is_buffer[k])
    return {"loss": loss, "grad": grad, "weights": weights, "running_stats": buffers}


def _both_bn_modes() -> dict[str, dict]:
    """Global and local BN in one spawn: process start-up dominates these tests' time."""
    with _one_thread():
        return {
            "global": _train_steps(global_bn=True),
            "local": _train_steps(global_bn=False),
            "global64": _train_steps(global_bn=True, dtype=torch.float64),
        }


@pytest.fixture(scope="module")
def step_results() -> tuple[dict, list[dict]]:
    """(single-process reference on the whole batch, per-rank results of both BN modes)."""
    with _one_thread():
        ref = {"fp32": _train_steps(global_bn=True), "fp64": _train_steps(True, torch.float64)}
    return ref, run_distributed(_both_bn_modes)


@pytest.mark.dist
def test_training_step_two_processes_equal_one_with_global_bn(step_results: tuple) -> None:
    """THE equivalence: 2 x B/2 under DDP + global BN + gathered NT-Xent + LARS == 1 x B."""
    ref, ranks = step_results
    diffs = _compare([r["global"] for r in ranks], ref["fp32"])
    print("global BN, max abs diff:", {k: f"{v:.1e}" for k, v in diffs.items()})
    assert max(diffs.values()) <= TOL, diffs
    # In float64 the two agree to rounding: what is left in float32 is summation order.
    assert max(_compare([r["global64"] for r in ranks], ref["fp64"]).values()) <= 1e-10


@pytest.mark.dist
def test_training_step_with_local_bn_differs(step_results: tuple) -> None:
    """Per-process BN sees only its shard's statistics: the leak that global BN removes."""
    ref, ranks = step_results
    diffs = _compare([r["local"] for r in ranks], ref["fp32"])
    print("local BN, max abs diff:", {k: f"{v:.1e}" for k, v in diffs.items()})
    assert diffs["loss"] > 1e-4 and diffs["grad"] > 1e-3, diffs

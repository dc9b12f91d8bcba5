"""GlobalBatchNorm against nn.BatchNorm on the full batch (SimCLR v1 section 2.2; protocol.md 4.7)."""

from __future__ import annotations

import copy

import pytest
import torch
from distributed_helpers import run_distributed  # tests/ is on sys.path via tests/conftest.py
from torch import nn

from clrbench import dist
from clrbench.simclr.global_bn import GlobalBatchNorm, convert_global_bn, global_batch_norm

TOL = 1e-5


def _reference_bn(kind: str, channels: int, momentum: float | None, bias: bool) -> nn.Module:
    bn = (
        nn.BatchNorm2d(channels, momentum=momentum)
        if kind == "2d"
        else nn.BatchNorm1d(channels, momentum=momentum)
    )
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    if not bias:
        bn.register_parameter("bias", None)  # the v1 head's last BN: gamma only (protocol.md 4.3)
    return bn


def _batch(kind: str, batch: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input (offset mean, so variance by E[x^2] - m^2 would visibly lose digits) and upstream grad."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, channels, 5, 5) if kind == "2d" else (batch, channels)
    return torch.randn(shape, generator=g) * 2 + 3, torch.randn(shape, generator=g)


def _run_steps(
    bn: nn.Module, kind: str, rows: slice, batch: int, steps: int = 2
) -> dict[str, torch.Tensor]:
    """``steps`` training steps on rows ``rows`` of each seeded full batch, then one eval forward."""
    out: dict[str, torch.Tensor] = {}
    for step in range(steps):
        x, dy = _batch(kind, batch, bn.num_features, seed=step)
        x = x[rows].clone().requires_grad_()
        y = bn(x)
        y.backward(dy[rows])
        out[f"y{step}"], out[f"dx{step}"] = y.detach(), x.grad
    out["dw"] = bn.weight.grad
    if bn.bias is not None:
        out["db"] = bn.bias.grad
    out["running_mean"], out["running_var"] = bn.running_mean.clone(), bn.running_var.clone()
    out["num_batches_tracked"] = bn.num_batches_tracked.clone()
    bn.eval()
    out["eval"] = bn(_batch(kind, batch, bn.num_features, seed=99)[0][rows]).detach()
    return out


# ----------------------------------------------------------------------------- one process


def test_world_size_one_equals_batchnorm2d_bit_for_bit() -> None:
    ref = _reference_bn("2d", 6, 0.1, bias=True)
    ours = GlobalBatchNorm.from_batchnorm(copy.deepcopy(ref))
    a, b = _run_steps(ref, "2d", slice(None), 8), _run_steps(ours, "2d", slice(None), 8)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_functional_path_matches_native_kernel() -> None:
    """The collective code path, run with one process, against F.batch_norm."""
    for kind, momentum in [("2d", 0.1), ("1d", 0.3)]:
        ref = _reference_bn(kind, 5, momentum, bias=True)
        x, dy = _batch(kind, 8, 5, seed=1)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        w, b = (
            ref.weight.detach().clone().requires_grad_(),
            ref.bias.detach().clone().requires_grad_(),
        )
        rm, rv = ref.running_mean.clone(), ref.running_var.clone()
        ref(x1).backward(dy)
        global_batch_norm(x2, rm, rv, w, b, momentum, ref.eps).backward(dy)
        assert (x1.grad - x2.grad).abs().max() <= TOL
        assert (ref.weight.grad - w.grad).abs().max() <= TOL
        assert (ref.bias.grad - b.grad).abs().max() <= TOL
        assert (ref.running_mean - rm).abs().max() <= TOL
        assert (ref.running_var - rv).abs().max() <= TOL


@pytest.mark.parametrize("affine", ["both", "weight_only", "none"])
def test_backward_passes_gradcheck_in_float64(affine: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 3, dtype=torch.float64, generator=g).requires_grad_()
    w = (torch.rand(2, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    b = torch.rand(2, dtype=torch.float64, generator=g).requires_grad_()

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        weight = None if affine == "none" else w
        bias = b if affine == "both" else None
        return global_batch_norm(x, None, None, weight, bias, 0.1, 1e-5)

    assert torch.autograd.gradcheck(f, (x, w, b))  # fast_mode misses a wrong x_hat term


def test_keys_and_buffers_are_those_of_batchnorm() -> None:
    ref = nn.BatchNorm2d(4)
    ours = GlobalBatchNorm(4)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    assert isinstance(ours, nn.modules.batchnorm._BatchNorm)


def test_convert_shares_parameters_and_keeps_none_bias() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Sequential(nn.BatchNorm2d(3)))
    model[1].register_parameter("bias", None)
    weight, running_var = model[1].weight, model[1].running_var
    keys = model.state_dict().keys()
    convert_global_bn(model)
    assert isinstance(model[1], GlobalBatchNorm) and isinstance(model[2][0], GlobalBatchNorm)
    assert (
        model[1].weight is weight and model[1].running_var is running_var and model[1].bias is None
    )
    assert model.state_dict().keys() == keys


def test_converted_encoder_keeps_its_checkpoint_keys() -> None:
    from clrbench.simclr.encoder import build_encoder

    encoder, _ = build_encoder("resnet18", width=0.125, stem="cifar")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    convert_global_bn(encoder)
    after = encoder.state_dict()
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in encoder.modules())
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_rejects_input_without_channels() -> None:
    with pytest.raises(ValueError, match="N, C"):
        GlobalBatchNorm(3)(torch.randn(3))


# ----------------------------------------------------------------------------- two processes


CASES = [
    ("2d", 0.1, True, (4, 4)),
    ("1d", None, False, (4, 4)),  # cumulative average; no beta, like the head's last BN
    ("2d", 0.1, True, (3, 5)),  # unequal shards are exact too
]


def _two_rank_worker() -> list[dict]:
    """Every case in one spawn: process start-up dominates these tests' time."""
    results = []
    for kind, momentum, bias, sizes in CASES:
        torch.manual_seed(0)
        bn = convert_global_bn(nn.Sequential(_reference_bn(kind, 6, momentum, bias)))[0]
        start = sum(sizes[: dist.rank()])
        results.append(_run_steps(bn, kind, slice(start, start + sizes[dist.rank()]), sum(sizes)))
    return results


@pytest.fixture(scope="module")
def two_rank_results() -> list[list[dict]]:
    """results[rank][case index]."""
    return run_distributed(_two_rank_worker)


@pytest.mark.dist
@pytest.mark.parametrize("case", range(len(CASES)), ids=["2d", "1d-no-beta", "2d-unequal"])
def test_two_ranks_equal_batchnorm_on_full_batch(case: int, two_rank_results: list) -> None:
    kind, momentum, bias, sizes = CASES[case]
    torch.manual_seed(0)
    ref = _run_steps(_reference_bn(kind, 6, momentum, bias), kind, slice(None), sum(sizes))
    ranks = [r[case] for r in two_rank_results]
    per_sample = ["y0", "y1", "dx0", "dx1", "eval"]  # rows of each rank, in rank order
    diffs = {k: (torch.cat([r[k] for r in ranks]) - ref[k]).abs().max().item() for k in per_sample}
    # Parameter grads: each rank holds its share; their sum is the full-batch gradient (DDP would
    # average them, which matches a loss that is the mean over ranks of per-rank means).
    for k in ("dw", "db") if bias else ("dw",):
        diffs[k] = (sum(r[k] for r in ranks) - ref[k]).abs().max().item()
    for k in ("running_mean", "running_var"):
        diffs[k] = max((r[k] - ref[k]).abs().max().item() for r in ranks)
    assert all(r["num_batches_tracked"] == ref["num_batches_tracked"] for r in ranks)
    print(f"max abs diff {kind} {sizes}:", {k: f"{v:.1e}" for k, v in diffs.items()})
    assert max(diffs.values()) <= TOL, diffs

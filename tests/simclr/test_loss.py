"""NT-Xent against a naive double loop over the paper's definition (S-v1 eq. 1; protocol.md §4.2)."""

from __future__ import annotations

import math

import pytest
import torch

from clrbench import dist
from clrbench.simclr.loss import NTXentLoss, contrastive_logits, nt_xent


def naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> float:
    """S-v1 eq. (1) with Python loops: mean over the 2N views k of l(k, partner of k)."""
    views = [v / math.sqrt(float(v @ v)) for v in torch.cat([z_a, z_b]).double()]
    n2 = len(views)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2  # the other view of the same image
        sim = [float(views[i] @ views[k]) for k in range(n2)]
        denominator = sum(math.exp(sim[k] / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[j] / tau) / denominator)
    return total / n2


def _pair(seed: int, n: int = 6, d: int = 5, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, **kw), torch.randn(n, d, generator=g, **kw)


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
def test_matches_naive_double_loop(tau: float) -> None:
    z_a, z_b = _pair(0)
    assert nt_xent(z_a, z_b, tau).item() == pytest.approx(naive_nt_xent(z_a, z_b, tau), rel=1e-5)


def test_symmetric_in_its_views() -> None:
    z_a, z_b = _pair(1, n=8, d=4)
    assert torch.allclose(nt_xent(z_a, z_b, 0.2), nt_xent(z_b, z_a, 0.2), rtol=1e-6)


def test_closed_form_for_aligned_orthogonal_embeddings() -> None:
    # z_a = z_b = orthonormal rows: the positive has similarity 1, the 2N - 2 negatives 0.
    n, tau = 4, 0.5
    z = torch.eye(n, 6)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)
    # All embeddings equal: each anchor picks its positive out of 2N - 1 equal candidates.
    same = torch.ones(n, 3)
    assert nt_xent(same, same, 0.1).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_module_wrapper_equals_function() -> None:
    z_a, z_b = _pair(5, n=3, d=3)
    loss = NTXentLoss(temperature=0.7)
    assert torch.equal(loss(z_a, z_b), nt_xent(z_a, z_b, 0.7))
    assert "temperature=0.7" in repr(loss)


def test_gradcheck_float64() -> None:
    z_a, z_b = _pair(2, n=4, d=3, dtype=torch.float64)
    z_a.requires_grad_(), z_b.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3), (z_a, z_b))
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3, normalize=False), (z_a, z_b))


def test_accurate_and_finite_in_bf16_autocast_at_tau_005() -> None:
    z_a, z_b = (z.bfloat16() for z in _pair(3, n=16, d=8))
    z_a.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z_a, z_b, 0.05)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(z_a.grad).all()
    # The logits are float32 even under autocast: same value as without it, to float precision.
    ref = nt_xent(z_a.detach().float(), z_b.float(), 0.05)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_gather_in_one_process_equals_local() -> None:
    z_a, z_b = _pair(4)
    assert torch.equal(nt_xent(z_a, z_b, 0.1, gather=True), nt_xent(z_a, z_b, 0.1))
    for got, want in zip(
        contrastive_logits(z_a, z_b, 0.1, gather=True),
        contrastive_logits(z_a, z_b, 0.1),
        strict=True,
    ):
        assert torch.equal(got, want)


def test_gather_offsets_labels_and_masks_by_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank r of 2, simulated: its rows of the logits are the single-process rows r*n..(r+1)*n."""
    world, n = 2, 3
    full_a, full_b = _pair(6, n=world * n, d=4)
    ref_logits, ref_labels = contrastive_logits(full_a, full_b, 0.5, normalize=False)
    losses = []
    for r in range(world):
        local = slice(r * n, (r + 1) * n)

        def fake_gather(x: torch.Tensor, r: int = r, local: slice = local) -> torch.Tensor:
            full = full_a if torch.equal(x, full_a[local]) else full_b
            return torch.cat([full[: r * n], x, full[(r + 1) * n :]])

        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        monkeypatch.setattr(dist, "world_size", lambda: world)
        monkeypatch.setattr(dist, "gather_with_grad", fake_gather)
        logits, labels = contrastive_logits(full_a[local], full_b[local], 0.5, True, False)
        rows = torch.cat([torch.arange(n) + r * n, torch.arange(n) + r * n + world * n])
        assert torch.equal(labels, ref_labels[rows])
        assert torch.allclose(logits, ref_logits[rows])
        losses.append(nt_xent(full_a[local], full_b[local], 0.5, True, False))
    # Equal shards: the mean of the local means is the global loss.
    assert torch.stack(losses).mean().item() == pytest.approx(
        nt_xent(full_a, full_b, 0.5, normalize=False).item(), rel=1e-6
    )


def test_logits_and_labels_give_contrastive_accuracy() -> None:
    z_a = torch.eye(4)
    z_b = z_a.clone()
    z_b[3] = z_a[0]  # image 3's second view looks like image 0
    logits, labels = contrastive_logits(z_a, z_b, 0.1)
    assert logits.shape == (8, 8) and labels.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    assert (logits.diagonal() == -1e9).all()  # the self-similarities are masked
    hits = (logits.argmax(1) == labels).tolist()
    # a_0 ties b_0 with b_3 (argmax takes the first); a_3 and b_3 miss their partner.
    assert hits == [True, True, True, False, True, True, True, False]


def test_raw_dot_product_and_bad_input() -> None:
    z_a, z_b = _pair(7, n=3, d=2)
    logits, _ = contrastive_logits(z_a, z_b, 2.0, normalize=False)
    assert torch.allclose(logits[0, 3], z_a[0] @ z_b[0] / 2.0)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z_a, z_b[:2], 0.1)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z_a, z_b, 0.0)

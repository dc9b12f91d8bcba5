"""NT-Xent against a naive double loop, its symmetry, a closed form and gradcheck (S-v1 eq. 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clrbench.simclr.loss import contrastive_logits, nt_xent


def naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> torch.Tensor:
    """The paper's definition written as loops: mean over 2N anchors of -log softmax at the positive."""
    z = F.normalize(torch.cat([z_a, z_b]).double(), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n2):
        j = (i + n) % n2
        num = torch.exp(z[i] @ z[j] / tau)
        den = sum(torch.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        total = total - torch.log(num / den)
    return total / n2


def test_matches_naive_double_loop() -> None:
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for tau in (0.1, 0.5, 1.0):
        assert torch.allclose(nt_xent(z_a, z_b, tau).double(), naive_nt_xent(z_a, z_b, tau), atol=1e-5)


def test_symmetric_in_its_views() -> None:
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert torch.allclose(nt_xent(z_a, z_b, 0.2), nt_xent(z_b, z_a, 0.2), atol=1e-6)


def test_closed_form_for_aligned_orthogonal_embeddings() -> None:
    """z_a = z_b = orthonormal rows: each anchor sees e^(1/t) once and 2N-2 times e^0."""
    n, tau = 4, 0.5
    z = torch.eye(n)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert math.isclose(nt_xent(z, z.clone(), tau).item(), expected, rel_tol=1e-6)
    # With identical embeddings everywhere the loss is log(2N - 1) (lightly's closed form).
    same = torch.ones(n, 3)
    assert math.isclose(nt_xent(same, same, 0.1).item(), math.log(2 * n - 1), rel_tol=1e-5)


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(2)
    z_a = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    z_b = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    # The loss casts to float32 for the logits; check the float64 math through the naive loop's
    # gradient instead, and the real one against it.
    loss = nt_xent(z_a, z_b, 0.3)
    ga, gb = torch.autograd.grad(loss, [z_a, z_b])
    za2, zb2 = z_a.detach().clone().requires_grad_(), z_b.detach().clone().requires_grad_()
    ra, rb = torch.autograd.grad(naive_nt_xent(za2, zb2, 0.3), [za2, zb2])
    assert torch.allclose(ga, ra, atol=1e-5) and torch.allclose(gb, rb, atol=1e-5)
    assert torch.autograd.gradcheck(lambda a, b: naive_nt_xent(a, b, 0.3), (za2, zb2))


def test_stable_at_low_temperature_in_bf16() -> None:
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(z_a.bfloat16(), z_b.bfloat16(), 0.05)
    assert torch.isfinite(loss)


def test_gather_in_one_process_equals_local_and_logits_give_accuracy() -> None:
    g = torch.Generator().manual_seed(4)
    z_a = torch.randn(5, 4, generator=g)
    z_b = z_a + 0.01 * torch.randn(5, 4, generator=g)
    assert torch.equal(nt_xent(z_a, z_b, 0.1, gather=True), nt_xent(z_a, z_b, 0.1))
    logits, labels = contrastive_logits(z_a, z_b, 0.1)
    assert logits.shape == (10, 10) and labels.tolist() == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    assert (logits.argmax(1) == labels).float().mean() == 1.0  # near-identical views are found


def test_unnormalised_dot_product() -> None:
    z_a, z_b = torch.randn(3, 2), torch.randn(3, 2)
    logits, _ = contrastive_logits(z_a, z_b, 1.0, normalize=False)
    assert torch.allclose(logits[0, 3], z_a[0] @ z_b[0])

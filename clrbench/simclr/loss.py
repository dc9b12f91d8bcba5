"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR (S-v1 eq. 1, Alg. 1).

For n images with 2n views each anchor has one positive (the other view of its image) and
2n - 2 negatives. The loss is the mean over all 2n anchors, the paper's L; GR's objective.py
returns twice that (protocol.md §4.2). It is written as a cross-entropy over masked logits, so
the same logits and labels give the contrastive accuracy. With ``gather=True`` the candidates
come from every process, gathered with gradients (protocol.md §4.7).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from clrbench import dist

# Put on the self-similarities, like GR's LARGE_NUM: exp() of it is exactly 0 in float32, while
# -inf would make any sum over a row (label smoothing, a logged mean logit) infinite or NaN.
_SELF_MASK = -1e9


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Disable autocast: it would run the similarity matmul in bf16 even on float32 inputs."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type without autocast (e.g. meta): nothing to switch off
        return contextlib.nullcontext()


def _check(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must both be (n, d) with the same shape, got {tuple(z_a.shape)} "
            f"and {tuple(z_b.shape)}."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")


def contrastive_logits(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    temperature: float,
    gather: bool = False,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity logits of this process's 2n anchors against all candidates, and their labels.

    Rows are the anchors ``[a_1..a_n, b_1..b_n]``; columns are the candidates ``[a of every
    rank in rank order, b of every rank in rank order]``, 2N of them with N = world_size * n
    (N = n without ``gather``). Each anchor's own column is masked. Computed in float32 (float64
    for float64 inputs) with autocast off, so bf16 training at tau = 0.05 stays accurate.

    Args:
        z_a: (n, d) projections of the first view of this process's n images.
        z_b: (n, d) projections of the second view of the same images, in the same order.
        temperature: tau > 0; the logits are sim / tau.
        gather: take the candidates from every process with :func:`dist.gather_with_grad`
            (every rank must pass the same n). In one process it changes nothing.
        normalize: cosine similarity (True, S-v1) or the raw dot product (S-v1 Table 5).

    Returns:
        logits: (2n, 2N), the self-similarities set to -1e9.
        labels: (2n,) int64 column of each anchor's positive: a_i's is b_i and b_i's is a_i,
            offset by ``dist.rank() * n`` under ``gather``.
    """
    _check(z_a, z_b, temperature)
    dtype = torch.promote_types(torch.promote_types(z_a.dtype, z_b.dtype), torch.float32)
    with _autocast_off(z_a.device):
        z_a, z_b = z_a.to(dtype), z_b.to(dtype)
        if normalize:
            z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
        n = z_a.shape[0]
        # Normalise before gathering, as GR does: the gathered rows are then ready to use.
        cand_a = dist.gather_with_grad(z_a) if gather else z_a  # (N, d)
        cand_b = dist.gather_with_grad(z_b) if gather else z_b  # (N, d)
        n_global = cand_a.shape[0]
        offset = dist.rank() * n if gather else 0
        logits = torch.cat([z_a, z_b]) @ torch.cat([cand_a, cand_b]).T / temperature
        rows = torch.arange(n, device=z_a.device) + offset  # this rank's images among the N
        self_cols = torch.cat([rows, rows + n_global])
        self_mask = F.one_hot(self_cols, num_classes=2 * n_global).bool()
        logits = logits.masked_fill(self_mask, _SELF_MASK)
        labels = torch.cat([rows + n_global, rows])
    return logits, labels


def nt_xent(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    temperature: float,
    gather: bool = False,
    normalize: bool = True,
) -> torch.Tensor:
    """NT-Xent (S-v1 eq. 1): mean over this process's 2n anchors of -log softmax at the positive.

    With ``gather=True`` each rank averages over its own anchors; DDP's averaging of parameter
    gradients over ranks then gives the loss and gradients of one process on the global batch
    (equal shards; see :mod:`clrbench.dist`).

    Args:
        z_a: (n, d) projections of the first view.
        z_b: (n, d) projections of the second view of the same n images.
        temperature: tau > 0 (0.1 for ImageNet, 0.5 for CIFAR-10 in S-v1).
        gather: negatives from every process (S-v1 sec 2.2; protocol.md §4.7).
        normalize: cosine similarity (True) or raw dot product.

    Returns:
        Scalar loss, float32 (float64 for float64 inputs).
    """
    logits, labels = contrastive_logits(z_a, z_b, temperature, gather, normalize)
    return F.cross_entropy(logits, labels)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent`; forward(z_a (n, d), z_b (n, d)) -> scalar."""

    def __init__(self, temperature: float = 0.1, gather: bool = False, normalize: bool = True):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature, self.gather, self.normalize = temperature, gather, normalize

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return nt_xent(z_a, z_b, self.temperature, self.gather, self.normalize)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}, normalize={self.normalize}"

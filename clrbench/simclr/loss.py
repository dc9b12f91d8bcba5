"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (S-v1 eq. 1, Algorithm 1).

For N images and their 2N views, each anchor i has one positive (its other view) and 2(N-1)
negatives; the loss is the mean over all 2N anchors (the paper's L, not the official code's
2x; protocol.md §4.2). Written as a cross-entropy over masked logits, which also gives the
logits and labels for contrastive accuracy. With ``gather=True`` the candidates are the
projections of every process (gathered with gradients) and this process's anchors are
scored against all of them, the positive's index offset by rank (protocol.md §4.7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clrbench import dist

# Added to self-similarities: large enough to zero their softmax weight, small enough to stay
# finite in float32 (exp of it underflows to exactly 0; -inf would give NaN gradients).
_SELF_MASK = -1e9


def contrastive_logits(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, gather: bool = False,
                       normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of each local anchor against every candidate, and the index of its positive.

    Args:
        z_a, z_b: (n, d) projections of view a and view b of this process's n images.
        temperature: tau.
        gather: take the candidates from every process (world size W): 2·W·n of them.
        normalize: cosine similarity (True) or raw dot product (S-v1 Table 5).

    Returns:
        logits: (2n, 2·W·n) float32, self-similarities masked; rows are [a anchors; b anchors].
        labels: (2n,) int64, the column of each anchor's positive.
    """
    z_a, z_b = z_a.float(), z_b.float()  # bf16 logits at tau 0.05 lose too much precision
    if normalize:
        z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    n = z_a.shape[0]
    world, rank = (dist.world_size(), dist.rank()) if gather else (1, 0)
    all_a = dist.gather_with_grad(z_a) if world > 1 else z_a  # (W·n, d)
    all_b = dist.gather_with_grad(z_b) if world > 1 else z_b
    candidates = torch.cat([all_a, all_b])  # (2·W·n, d): [every a; every b]
    anchors = torch.cat([z_a, z_b])  # (2n, d)
    logits = anchors @ candidates.T / temperature
    local = torch.arange(n, device=z_a.device) + rank * n  # this rank's rows among the gathered
    big_n = world * n
    self_cols = torch.cat([local, local + big_n])
    logits[torch.arange(2 * n, device=z_a.device), self_cols] = _SELF_MASK
    labels = torch.cat([local + big_n, local])  # a_i's positive is b_i and vice versa
    return logits, labels


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, gather: bool = False,
            normalize: bool = True) -> torch.Tensor:
    """The NT-Xent loss (scalar): mean over this process's 2n anchors.

    With ``gather=True`` under DDP (which averages gradients over ranks), the result and the
    gradients equal those of one process on the whole global batch.
    """
    logits, labels = contrastive_logits(z_a, z_b, temperature, gather, normalize)
    return F.cross_entropy(logits, labels)


class NTXentLoss(nn.Module):
    """Module wrapper of :func:`nt_xent`."""

    def __init__(self, temperature: float = 0.1, gather: bool = False, normalize: bool = True) -> None:
        super().__init__()
        self.temperature, self.gather, self.normalize = temperature, gather, normalize

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return nt_xent(z_a, z_b, self.temperature, self.gather, self.normalize)

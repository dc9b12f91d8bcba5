"""Linear protocol version 2: a probe whose chosen lambda and test score do not depend on its path.

Version 1 (scikit-learn's rule, max |gradient of the mean loss| <= tol) leaves the low end of
the val curve to the path: after a step down the grid the penalty's gradient changes by
(lambda_old - lambda_new) W / n, which at small lambda is below tol, so every solver accepts the
previous solution with zero iterations, and a walk from the other end (or a cold start) lands
elsewhere; on flat, nearly separable problems the val scores there moved by several points
with the walk (benchmarks/README.md, "Linear probe v2"). Version 2 ("path-free") changes two
things, both properties of the problem, never of the path:

1. **A stopping rule relative to lambda's own scale**: stop when
   ||grad||_F <= eps * lambda * ||W||_F (the optimality condition is grad_data = -lambda W, so
   this asks for it to a relative precision eps at every lambda). After any move along the
   grid the stale solution's gradient is |1 - lambda_old / lambda_new| lambda ||W||, far above
   eps lambda ||W||, so no warm start is ever accepted without progress.
2. **A documented floor**: grid points whose conditioning h0 * e_max / lambda exceeds
   ``condition_max`` are not fitted and not eligible (null in the val curve). e_max is the top
   eigenvalue of the centred train+val Gram (summed over examples) and h0 the mean p (1 - p) at
   the lambda -> inf optimum (W = 0, biases = log class frequencies): both fixed by the data,
   so the floor is the same for every walk. Below it the optimum is too flat to reach
   reliably (the exact optima there differ from their near-optimal neighbours by points of
   val accuracy) and, on separable features, moves off towards infinity.

Norms are taken in the probe's centred (and, for n <= d / 2, row-span) coordinates, an exact
reparametrisation that preserves ||W||_F.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

#: Walk orders of the lambda grid: from the largest lambda down (v1's and the default), from the
#: smallest up, or every point from the lambda -> inf solution with no carried memory.
WALKS = ("down", "up", "cold")
STOPPING = ("gradient", "path-free")


def relative_rule(eps: float, lam: float) -> Callable[[Tensor, Tensor], bool]:
    """The v2 stopping rule at ``lam``: ||g||_F <= eps * lam * ||W||_F (theta = [W; b], (r + 1, K))."""

    def rule(g: Tensor, theta: Tensor) -> bool:
        return float(g.double().norm()) <= eps * lam * float(theta[:-1].double().norm())

    return rule


def floor(curvature0: float, eig_max: float, condition_max: float) -> float:
    """The smallest lambda version 2 fits: h0 * e_max / condition_max (module docstring)."""
    return curvature0 * eig_max / condition_max


def eligible(lambdas: np.ndarray, lam_floor: float) -> np.ndarray:
    """The grid points at or above the floor; at least the largest one."""
    keep = lambdas[lambdas >= lam_floor]
    return keep if keep.size else np.sort(lambdas)[-1:]


def walk_order(lambdas: np.ndarray, walk: str) -> list[float]:
    """The order the grid is fitted in: largest first for "down" and "cold", smallest first for "up"."""
    if walk not in WALKS:
        raise ValueError(f"walk must be one of {', '.join(WALKS)}, not {walk!r}.")
    return sorted(lambdas.tolist(), reverse=walk != "up")


def top_eigenvalue(eig: Tensor) -> float:
    """e_max of the preconditioner's eigenvalues (its Gram is the centred train+val one)."""
    return float(eig.max()) if eig.numel() else 0.0


def initial_curvature(x: Tensor, theta0: Tensor, kind: str) -> float:
    """h0: the mean of p (1 - p) over examples and outputs at theta0 (the lambda -> inf optimum)."""
    z = x @ theta0
    p = torch.softmax(z, 1) if kind == "softmax" else torch.sigmoid(z)
    return float((p * (1 - p)).mean())

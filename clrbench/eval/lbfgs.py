"""L-BFGS along a lambda path of L2-regularised logistic regression, in torch, for the linear probe.

References: Nocedal & Wright, "Numerical Optimization" (2006), ch. 7 (L-BFGS); Halko, Martinsson &
Tropp, SIAM Review 2011 (randomised eigenpairs); protocol.md §2.1 (the objective).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Below this many multiply-adds per matmul (examples * dims * outputs) a CPU solve uses one thread.
SMALL_WORK = 1 << 26


class Objective:
    """Summed logistic loss + (lam / 2) * ||W||^2 over theta = [W; b], shape (r + 1, K).

    This is scikit-learn's ``LogisticRegression`` objective times the number of examples, with
    lam = 1 / C; the bias is not penalised.

    Args:
        x: (n, r + 1) features with a trailing column of ones (the bias input).
        targets: (n,) int64 class indices for "softmax", or (n, K) 0/1 floats for "sigmoid"
            (independent binary problems, one per column).
        kind: "softmax" (multinomial) or "sigmoid" (one-vs-rest columns).
        n_outputs: K, the number of columns of theta.
    """

    def __init__(self, x: Tensor, targets: Tensor, kind: str, n_outputs: int) -> None:
        self.x, self.kind, self.lam, self.n_evals, self.curvature = x, kind, 1.0, 0, 0.0
        if kind == "softmax":
            self.y = torch.nn.functional.one_hot(targets, n_outputs).to(x.dtype)
        else:
            self.y = targets.to(x.dtype)
        # Only the weight rows are penalised: the last row of theta is the bias.
        self.mask = torch.ones(x.shape[1], 1, dtype=x.dtype, device=x.device)
        self.mask[-1] = 0.0
        self._last: tuple[Tensor, float, Tensor, float] | None = None

    def at(self, theta: Tensor) -> tuple[float, Tensor]:
        """Loss and gradient at theta, re-priced without evaluating if theta was the last point
        evaluated (at any lambda): only the penalty depends on lambda, and it is linear in it."""
        if self._last is None or self._last[0] is not theta:
            return self(theta)
        _, value, grad, lam = self._last
        step = self.lam - lam
        return value + 0.5 * step * float(theta[:-1].double().pow(2).sum()), grad + step * self.mask * theta

    def __call__(self, theta: Tensor) -> tuple[float, Tensor]:
        """Loss (a float64 sum) and gradient (r + 1, K) at theta."""
        self.n_evals += 1
        z = self.x @ theta
        if self.kind == "softmax":
            data = torch.logsumexp(z, 1).double().sum() - (z * self.y).double().sum()
            prob = torch.softmax(z, 1)
        else:
            data = (torch.nn.functional.softplus(z) - z * self.y).double().sum()
            prob = torch.sigmoid(z)
        grad = self.x.T @ (prob - self.y) + self.lam * self.mask * theta
        # Mean of p (1 - p): the scale of the data term's Hessian, for the preconditioner.
        self.curvature = float((prob * (1 - prob)).mean())
        value = float(data) + 0.5 * self.lam * float(theta[:-1].double().pow(2).sum())
        self._last = (theta, value, grad, self.lam)
        return value, grad


class _Memory:
    """The (s, y) pairs of one minimisation, flattened, with their Gram S Y^T.

    Pairs live in fixed rows of two (capacity, p) buffers (a new pair takes the row the oldest
    one freed), so products with all of them are one matmul over the buffer and nothing is ever
    copied; ``slots`` lists the rows oldest first. Unused rows hold zeros or an old finite pair
    and always get a zero coefficient.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buf_s: Tensor | None = None
        self.buf_y: Tensor | None = None
        self.slots: list[int] = []
        self.rho: list[float] = []  # 1 / s_i^T y_i, oldest first
        self.sy: list[list[float]] = []  # sy[i][j] = s_i^T y_j, oldest first

    def times(self, buf: Tensor, v: Tensor) -> list[float]:
        """[row_i . v for each pair, oldest first]."""
        out = (buf @ v).tolist()
        return [out[r] for r in self.slots]

    def combine(self, buf: Tensor, coef: list[float]) -> Tensor:
        """sum_i coef_i * row_i (oldest first), as one matmul over the buffer."""
        full = [0.0] * self.capacity
        for r, c in zip(self.slots, coef, strict=True):
            full[r] = c
        return buf.T @ torch.tensor(full, dtype=buf.dtype, device=buf.device)

    def add(self, s: Tensor, y: Tensor) -> None:
        if self.buf_s is None or self.buf_y is None:
            self.buf_s = torch.zeros(self.capacity, s.numel(), dtype=s.dtype, device=s.device)
            self.buf_y = torch.zeros_like(self.buf_s)
        row = self.times(self.buf_y, s) if self.slots else []  # s_new^T y_j
        col = self.times(self.buf_s, y) if self.slots else []  # s_i^T y_new
        free = next(r for r in range(self.capacity) if r not in self.slots)
        self.buf_s[free], self.buf_y[free] = s, y
        self.slots.append(free)
        d = float(torch.vdot(s, y))
        for i, c in enumerate(col):
            self.sy[i].append(c)
        self.sy.append([*row, d])
        self.rho.append(1.0 / d)

    def drop_oldest(self) -> None:
        for lst in (self.slots, self.rho, self.sy):
            lst.pop(0)
        for r in self.sy:
            r.pop(0)


@dataclass
class Lbfgs:
    """Limited-memory BFGS whose memory survives a change of lambda.

    Two things make a 45-point path cheap, and neither changes the optimum or the stopping rule:
    the curvature pairs carry over from one lambda to the next, and the initial inverse Hessian
    is a preconditioner (see Preconditioner) instead of a scaled identity. Pairs are stored as
    (s, y - lam * mask * s), the data part of the gradient change, and
    re-priced at the current lambda, which is exact because the penalty's gradient is linear.

    Attributes:
        memory: number of (s, y) pairs kept; a pair costs 2 (r + 1) K floats, negligible next to
            one evaluation, so more than scipy's 10 is cheap.
        max_linesearch: evaluations allowed per line search before giving up.
    """

    memory: int = 20
    max_linesearch: int = 20
    pairs: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the curvature pairs (the data changed, e.g. train -> train+val)."""
        self.pairs.clear()

    def _direction(self, g: Tensor, mem: _Memory, precondition: Callable[[Tensor], Tensor]) -> Tensor:
        """Two-loop recursion with H0 = gamma * P (P the preconditioner); returns -H g.

        The recursion's inner products are taken from the pairs' Gram S Y^T (kept up to date by
        _Memory), so one direction costs four (m, p) matmuls and O(m^2) scalar work instead of
        4m small vector operations, which dominated small (few-shot) problems.
        """
        shape, gf = g.shape, g.reshape(-1)
        m = len(mem.rho)
        if m == 0:
            # First step ever: the preconditioned gradient, scaled to unit length in its metric
            # (scipy's L-BFGS-B starts the same way, with 1/||g||).
            q = precondition(g)
            return -q / max(1.0, math.sqrt(float(torch.vdot(q.flatten(), gf))))
        assert mem.buf_s is not None and mem.buf_y is not None
        sy, rho = mem.sy, mem.rho
        sg = mem.times(mem.buf_s, gf)
        alpha = [0.0] * m
        for i in reversed(range(m)):  # alpha_i = rho_i s_i^T (g - sum_{j > i} alpha_j y_j)
            alpha[i] = rho[i] * (sg[i] - sum(alpha[j] * sy[i][j] for j in range(i + 1, m)))
        q = gf - mem.combine(mem.buf_y, alpha)
        y_last = mem.buf_y[mem.slots[-1]]
        gamma = sy[-1][-1] / float(torch.vdot(y_last, precondition(y_last.view(shape)).reshape(-1)))
        r0 = gamma * precondition(q.view(shape)).reshape(-1)
        yr = mem.times(mem.buf_y, r0)
        beta: list[float] = []
        for i in range(m):  # beta_i = rho_i y_i^T (r0 + sum_{j < i} (alpha_j - beta_j) s_j)
            beta.append(rho[i] * (yr[i] + sum((alpha[j] - beta[j]) * sy[j][i] for j in range(i))))
        return -(r0 + mem.combine(mem.buf_s, [a - b for a, b in zip(alpha, beta, strict=True)])).view(shape)

    def minimize(self, f: Objective, theta: Tensor, precondition: Callable[[Tensor], Tensor],
                 converged: Callable[[Tensor, Tensor], bool], max_iter: int) -> tuple[Tensor, int, bool]:
        """Minimise f from theta until converged(gradient, theta) or max_iter iterations.

        Args:
            f: the objective at its current lambda.
            theta: (r + 1, K) starting point.
            precondition: applies an approximate inverse Hessian (symmetric, positive) to (r + 1, K).
            converged: the stopping rule on (gradient, theta) (see probe.py, probe_path.py).
            max_iter: iteration cap (an iteration is one accepted step, as scipy counts them).

        Returns:
            (theta, iterations, converged).
        """
        lam = f.lam
        # Re-price the stored pairs at this lambda: y = (data part of y) + lam * mask * s.
        mem = _Memory(self.memory + 1)
        for s, yd in self.pairs:
            mem.add(s.reshape(-1), (yd + lam * f.mask * s).reshape(-1))
        value, g = f.at(theta)  # free when theta is the previous lambda's solution
        for it in range(max_iter):
            if converged(g, theta):
                return theta, it, True
            step = self._direction(g, mem, precondition)
            found = self._line_search(f, theta, value, g, step)
            if found is None:  # no decrease along a descent direction: at working precision
                return theta, it, converged(g, theta)
            new_theta, value, new_g = found
            s, y = new_theta - theta, new_g - g
            sy = float(torch.vdot(s.flatten(), y.flatten()))
            if sy > 1e-12 * float(s.norm() * y.norm()):  # always true for lam > 0, kept as a guard
                self.pairs.append((s, y - lam * f.mask * s))
                mem.add(s.reshape(-1), y.reshape(-1))
                if len(mem.rho) > self.memory:
                    self.pairs.pop(0)
                    mem.drop_oldest()
            theta, g = new_theta, new_g
        return theta, max_iter, converged(g, theta)

    def _line_search(self, f: Objective, theta: Tensor, value: float, g: Tensor,
                     step: Tensor) -> tuple[Tensor, float, Tensor] | None:
        """Backtrack from t = 1 on phi(t) = f(theta + t step), using phi' as much as phi.

        The objective is convex, so phi'(t) <= 0 proves phi(t) <= phi(0) without comparing two
        float32 sums that agree to their last digits (near the optimum they do). Otherwise the
        Armijo condition decides; a rejected t is replaced by the root of the secant of phi'.
        """
        d0 = float(torch.vdot(g.flatten(), step.flatten()))
        if not d0 < 0:
            return None
        t = 1.0
        for _ in range(self.max_linesearch):
            trial = theta + t * step
            v, gt = f(trial)
            dt = float(torch.vdot(gt.flatten(), step.flatten()))
            if dt <= 0 or v <= value + 1e-4 * t * d0:
                return trial, v, gt
            t = max(t * d0 / (d0 - dt), 0.1 * t)
        return None


class Preconditioner:
    """Approximate inverse Hessian of the objective from the spectrum of the features' Gram.

    Near the optimum the data term's Hessian block of one output column is about
    h * X^T X, h the mean of p (1 - p) over examples and outputs. With the top-k eigenpairs
    (V, e) of X^T X (centred features), the inverse is approximated by
    V diag(1 / (h e + lam)) V^T on their span and by the Jacobi (diagonal) inverse of the rest on
    the orthogonal complement; the bias gets 1 / (h n). Computing the top-k costs one Gram
    matrix and a few block power iterations (Halko et al. 2011), not a full eigendecomposition.

    Args:
        x: (n, r) centred features (no column of ones) the Gram is taken over.
        rank: number of leading eigenpairs kept; r or more means a full eigendecomposition.
        seed: seed of the power iteration's random start.
    """

    def __init__(self, x: Tensor, rank: int = 256, seed: int = 0) -> None:
        gram = x.T @ x
        r = gram.shape[0]
        self.n = x.shape[0]
        if rank >= r or r <= 2 * rank:
            eig, basis = torch.linalg.eigh(gram.double())
            self.eig, self.basis = eig.clamp_min(0).to(x.dtype), basis.to(x.dtype)
            self.rest: Tensor | None = None
            return
        gen = torch.Generator(device=x.device).manual_seed(seed)
        q = torch.randn(r, rank + 16, generator=gen, device=x.device, dtype=x.dtype)
        for _ in range(4):  # subspace iteration; the spectrum of pooled features decays fast
            q, _ = torch.linalg.qr(gram @ q)
        eig, rot = torch.linalg.eigh((q.T @ gram @ q).double())
        keep = slice(eig.shape[0] - rank, None)  # eigh sorts ascending: keep the top `rank`
        self.eig = eig[keep].clamp_min(0).to(x.dtype)
        self.basis = q @ rot[:, keep].to(x.dtype)
        self.rest = (torch.diagonal(gram) - (self.basis.pow(2) * self.eig).sum(1)).clamp_min(0)

    def inverse(self, lam: float, curvature: float, n_fit: int) -> Callable[[Tensor], Tensor]:
        """The map g -> H0 g for fitting n_fit examples at lam, h = curvature."""
        scale = curvature * n_fit / self.n  # the Gram was summed over self.n examples
        p_top = (1.0 / (scale * self.eig + lam))[:, None]
        p_rest = None if self.rest is None else (1.0 / (scale * self.rest + lam))[:, None]
        p_bias = 1.0 / (curvature * n_fit)
        v = self.basis

        def apply(g: Tensor) -> Tensor:
            gw = g[:-1]
            u = v.T @ gw
            out = v @ (p_top * u)
            if p_rest is not None:
                perp = p_rest * (gw - v @ u)
                out = out + perp - v @ (v.T @ perp)
            return torch.cat([out, p_bias * g[-1:]], 0)

        return apply


@contextmanager
def threads_for(work: int, device: torch.device) -> Iterator[None]:
    """One torch thread for a small CPU solve (work: multiply-adds per matmul), else the caller's.

    A small solve is a long chain of small matmuls; with several OpenMP threads each one ends at
    a barrier, and on a busy machine waiting there costs more than the arithmetic (a 64-d digits
    probe took 29 s with 2 threads on 2 shared cores and 0.5 s with one).
    """
    before = torch.get_num_threads()
    small = device.type == "cpu" and work < SMALL_WORK and before > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)

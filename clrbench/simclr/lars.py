"""LARS, the layer-wise adaptive momentum optimizer SimCLR trains with (You et al. 2017; S-v1 sec 2.3).

The update is GR lars_optimizer.py's classic-momentum branch (protocol.md §4.5). Per tensor w
with gradient g: g <- g + wd*w; trust = eta*||w||/||g|| when both norms are positive, else 1;
v <- m*v + lr*trust*g; w <- w - v. Norm-layer parameters and biases get neither weight decay
nor adaptation: plain momentum SGD with the full scheduled lr. They are picked by module type
and tensor rank, never by name (style.md §3.8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, overload

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

# Modules whose parameters are excluded. Other norms (e.g. RMSNorm) only have 1-D parameters,
# which the rank rule excludes anyway.
_NORM_TYPES: tuple[type[nn.Module], ...] = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


class LARS(torch.optim.Optimizer):
    """LARS with GR's update; groups with ``lars_exclude=True`` are plain momentum SGD.

    Args:
        params: parameters or param groups, e.g. from :func:`param_groups`. A group may set
            ``lr``, ``momentum``, ``weight_decay``, ``eta`` and ``lars_exclude``.
        lr: learning rate (the schedule sets ``group["lr"]`` each step).
        momentum: m of the classic (non-Nesterov) momentum.
        weight_decay: added to the gradient as ``wd * w`` before the trust ratio, as GR does;
            ignored in excluded groups.
        eta: trust coefficient (GR's EETA_DEFAULT 0.001).

    The state of each parameter is ``momentum_buffer`` (v), so ``state_dict()`` and
    ``load_state_dict()`` round-trip as for ``torch.optim.SGD``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
    ) -> None:
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                "LARS needs lr >= 0, 0 <= momentum < 1, weight_decay >= 0 and eta > 0; got "
                f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}."
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            exclude = group.get("lars_exclude", False)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients.")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                buf = state["momentum_buffer"].mul_(group["momentum"])
                if exclude:
                    buf.add_(p.grad, alpha=group["lr"])
                else:
                    g, lr_trust = _decayed_grad_and_rate(
                        p, p.grad, group["lr"], group["weight_decay"], group["eta"]
                    )
                    buf.addcmul_(g, lr_trust)  # a 0-d rate: no host sync, no scaled copy of g
                p.sub_(buf)
        return loss


def _decayed_grad_and_rate(
    w: torch.Tensor, g: torch.Tensor, lr: float, weight_decay: float, eta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g + wd*w, lr * trust), the trust ratio a 0-d tensor on w's device."""
    if weight_decay:
        g = g.add(w, alpha=weight_decay)
    w_norm = torch.linalg.vector_norm(w)
    g_norm = torch.linalg.vector_norm(g)
    # GR: trust 1 when either norm is 0 (a zero-initialised tensor, a zero gradient).
    trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, 1.0)
    return g, trust * lr


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a LARS group and an excluded group.

    Excluded (no weight decay, no adaptation): every parameter of a batch/instance/group/layer
    norm module, and every parameter with ndim <= 1 (biases, any other scale or shift). This is
    GR's exclusion of ``batch_normalization`` and ``bias`` variables, decided by type and rank.

    Args:
        model: the network (unwrapped, or wrapped: both list the same parameters).
        weight_decay: decay of the LARS group (1e-6 in S-v1, 1e-4 in S-v2; protocol.md §4.6).

    Returns:
        ``[{"params": weights, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True}]``; either list may be
        empty. Frozen parameters (``requires_grad=False``) are left out.
    """
    in_norm_modules = {
        id(p)
        for module in model.modules()
        if isinstance(module, _NORM_TYPES)
        for p in module.parameters(recurse=False)
    }
    adapted: list[nn.Parameter] = []
    excluded: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (excluded if id(p) in in_norm_modules or p.ndim <= 1 else adapted).append(p)
    return [
        {"params": adapted, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]

"""LARS, the layer-wise adaptive optimizer SimCLR trains with (You et al. 2017; GR lars_optimizer.py).

Per parameter w with gradient g (protocol.md §4.5, classic momentum):
g <- g + wd·w; trust = eta·||w|| / ||g|| when both norms are positive, else 1;
v <- m·v + lr·trust·g; w <- w - v. BN parameters and biases are excluded from both weight
decay and adaptation (plain momentum SGD with the full lr), chosen by module type and tensor
rank, never by name (style.md §3.8).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


class LARS(torch.optim.Optimizer):
    """LARS with the official update. A group with ``lars_exclude=True`` gets neither decay nor adaptation."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError("LARS needs lr, momentum, weight_decay >= 0 and eta > 0.")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "lars_exclude": False}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["eta"]
            exclude = group["lars_exclude"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not exclude:
                    if wd:
                        g = g.add(p, alpha=wd)
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    g = g * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(m).add_(g, alpha=lr)
                p.sub_(buf)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights (decay + adaptation) and norm-layer params / biases (neither)."""
    excluded: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORMS):
            excluded.update(id(p) for p in module.parameters(recurse=False))
    decay, plain = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (plain if (id(p) in excluded or p.ndim <= 1) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
            {"params": plain, "weight_decay": 0.0, "lars_exclude": True}]

"""Features after the projection head, z = g(h), for the h-vs-g(h) comparison (S-v1 sec. 4.2).

S-v1 finds the layer before the head (h) better than the one after it (g(h)) by more than
10% (sec. 4.2, Fig. 8), because g is trained to be invariant to the augmentations and so
discards information (Table 3). To probe g(h) with the unchanged linear-probe job, this
module registers a checkpoint scheme: ``projection:<clrbench checkpoint>`` loads encoder
*and* head, and its module maps images to g(f(x)). Its weight hash covers both parts, so its
feature-cache key never collides with the encoder's own features (design.md: cache keys).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from clrbench.weights.adapters import ADAPTERS, Encoder
from clrbench.weights.checkpoint import encoder_state, load_clrbench, sha256_state

SCHEME = "projection"


class _Projected(nn.Module):
    """x: (B, 3, S, S) -> g(f(x)): (B, head_dim), BN of the head in inference mode."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).float())


def load_projection(spec: str) -> Encoder:
    """Build g(f(.)) from ``projection:<path>`` (a clrbench pretraining checkpoint).

    Returns:
        An :class:`~clrbench.weights.adapters.Encoder` whose ``meta['feature_dim']`` is the size of
        z and whose id is the run's name with ``-g`` appended.
    """
    from clrbench.config import ModelConfig, from_dict
    from clrbench.simclr.head import head_out_dim
    from clrbench.simclr.model import SimCLR

    path = spec.split(":", 1)[1]
    ckpt = load_clrbench(path)
    cfg = from_dict(ModelConfig, ckpt["config"]["model"], prefix="model")
    model = SimCLR(cfg)
    model.load_state_dict(ckpt["model"])
    module = _Projected(model.encoder, model.head).eval()
    meta = dict(ckpt["encoder"])
    meta["feature_dim"] = head_out_dim(cfg.head, model.feature_dim, cfg.head_dim)
    meta["layer"] = "projection"
    state = {**encoder_state(ckpt), **{f"head.{k}": v for k, v in model.head.state_dict().items()}}
    # Salted, so even an identity head (no weights) never shares the encoder's cache entries.
    sha = hashlib.sha256(f"{SCHEME}:{sha256_state(state)}".encode()).hexdigest()
    name = Path(path).parent.name if Path(path).stem == "last" else Path(path).stem
    cid = f"{name}-g-{sha[:8]}"
    return Encoder(module, meta, cid, sha, SCHEME, spec)


def register() -> None:
    """Make ``projection:`` known to :func:`clrbench.weights.adapters.load_encoder` (idempotent)."""
    if SCHEME not in ADAPTERS:
        ADAPTERS.add(SCHEME, load_projection)


__all__ = ["SCHEME", "load_projection", "register"]

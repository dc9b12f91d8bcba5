"""The SimCLR network: encoder f (ResNet) and projection head g (S-v1 sec 2.1, Fig. 2)."""

from __future__ import annotations

import torch
from torch import nn

from clrbench.config import ModelConfig


class SimCLR(nn.Module):
    """h = f(x), z = g(h).

    Both views travel through one forward pass over the concatenated 2N batch, so that
    batch norm computes its statistics over both (S-v1 sec 2.2; protocol.md §4.7).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from clrbench.simclr.encoder import build_encoder
        from clrbench.simclr.head import build_head

        self.encoder, self.feature_dim = build_encoder(cfg.arch, cfg.width, cfg.stem)
        self.head = build_head(cfg.head, self.feature_dim, cfg.head_dim, cfg.head_hidden_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (2N, 3, S, S) -> h: (2N, feature_dim), z: (2N, head_dim)."""
        h = self.encoder(x)
        return h, self.head(h)


class OnlineProbe(nn.Module):
    """A linear classifier on stop-gradient features, trained alongside (S-v1 B.6 note).

    Only a health signal for pretraining: its accuracy is logged, never reported as a result.
    """

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h.detach().float())

"""The projection head g(.) that maps h to the space of the contrastive loss (S-v1 sec 2.1, Fig. 8).

v1 follows the released SimCLR code (GR model_util): Linear(d->d, no bias) -> BN -> ReLU ->
Linear(d->out, no bias) -> BN without beta. v2 (S-v2) has three layers. ``linear`` and
``none`` are the paper's head ablation (a nonlinear head beats linear by ~3% and none by >10%).
"""

from __future__ import annotations

from torch import nn

HEADS = ("none", "linear", "v1", "v2")


def _bn_no_beta(dim: int) -> nn.BatchNorm1d:
    """BN with a learnable scale but no shift, as the last BN of GR's head (``center=False``)."""
    bn = nn.BatchNorm1d(dim)
    bn.register_parameter("bias", None)
    return bn


def build_head(kind: str, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None) -> nn.Module:
    """Projection head; input (B, in_dim) -> (B, head_out_dim(kind, in_dim, out_dim))."""
    hid = hidden_dim or in_dim
    if kind == "none":
        return nn.Identity()
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), _bn_no_beta(out_dim))
    if kind in ("v1", "v2"):
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(1 if kind == "v1" else 2):
            layers += [nn.Linear(d, hid, bias=False), nn.BatchNorm1d(hid), nn.ReLU(inplace=True)]
            d = hid
        layers += [nn.Linear(d, out_dim, bias=False), _bn_no_beta(out_dim)]
        for m in layers:  # GR: dense kernels N(0, 0.01)
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
        return nn.Sequential(*layers)
    raise ValueError(f"Unknown head {kind!r}; choose one of {', '.join(HEADS)}.")


def head_out_dim(kind: str, in_dim: int, out_dim: int = 128) -> int:
    return in_dim if kind == "none" else out_dim

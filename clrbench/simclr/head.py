"""The projection head g(.) that maps features h to the space of the loss (S-v1 sec 2.1, 4.2).

``v1`` is the 2-layer MLP of S-v1 as the released code builds it (GR model_util, protocol.md
§4.3), ``v2`` the 3-layer head of S-v2; ``linear`` and ``none`` are the head ablation of S-v1
Fig. 8 (a nonlinear head beats a linear one by about 3% and no head by more than 10%).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from clrbench.registry import Registry

HeadBuilder = Callable[[int, int, int], nn.Module]

#: Head kind -> builder ``(in_dim, out_dim, hidden_dim) -> module``.
HEADS: Registry[HeadBuilder] = Registry("projection head")
HEAD_KINDS: tuple[str, ...] = ("none", "linear", "v1", "v2")


class ScaleOnlyBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with a learnable scale gamma and no shift beta (TF ``center=False``).

    GR ends the head with this BN (protocol.md §4.3). ``bias`` is registered as None, so the
    state dict has no ``bias`` key and the optimizer never sees a shift.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.ones_(self.weight)


def _dense(in_dim: int, out_dim: int, bias: bool) -> nn.Linear:
    """A Linear layer with GR's kernel initialiser N(0, 0.01^2) and zero bias."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.normal_(layer.weight, std=0.01)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _mlp(in_dim: int, out_dim: int, hidden_dim: int, hidden_layers: int) -> nn.Sequential:
    """[Linear -> BN -> ReLU] x hidden_layers, then Linear -> BN(gamma only).

    The Linear layers have no bias because the BN after each one absorbs it (GR
    ``linear_layer`` with ``use_bn=True``); the hidden BNs keep their beta.
    """
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [_dense(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU()]
        dim = hidden_dim
    layers += [_dense(dim, out_dim, bias=False), ScaleOnlyBatchNorm1d(out_dim)]
    return nn.Sequential(*layers)


@HEADS.register("none")
def _no_head(in_dim: int, out_dim: int, hidden_dim: int) -> nn.Module:
    return nn.Identity()


@HEADS.register("linear")
def _linear_head(in_dim: int, out_dim: int, hidden_dim: int) -> nn.Module:
    # A plain linear map, the paper's "linear projection" ablation. GR's code adds a BN after
    # it (head_proj_mode=linear); clrbench keeps the ablation as the paper states it.
    return _dense(in_dim, out_dim, bias=True)


@HEADS.register("v1")
def _v1_head(in_dim: int, out_dim: int, hidden_dim: int) -> nn.Module:
    return _mlp(in_dim, out_dim, hidden_dim, hidden_layers=1)


@HEADS.register("v2")
def _v2_head(in_dim: int, out_dim: int, hidden_dim: int) -> nn.Module:
    return _mlp(in_dim, out_dim, hidden_dim, hidden_layers=2)


def build_head(
    kind: str, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None
) -> nn.Module:
    """Build the projection head g(.).

    Args:
        kind: ``none`` (identity), ``linear`` (one Linear layer with bias), ``v1`` (Linear ->
            BN -> ReLU -> Linear -> BN without beta; S-v1 as in GR) or ``v2`` (two hidden
            layers; S-v2).
        in_dim: size of the encoder features h.
        out_dim: size of the projection z (128 in SimCLR; ignored by ``none``).
        hidden_dim: width of the hidden layers of ``v1``/``v2``; None means ``in_dim`` as GR.

    Returns:
        A module mapping (B, in_dim) to (B, head_out_dim(kind, in_dim, out_dim)).

    Raises:
        UnknownNameError: ``kind`` is not a known head.
        ValueError: a dimension is smaller than 1.
    """
    builder = HEADS.get(kind)
    hidden = in_dim if hidden_dim is None else hidden_dim
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden)):
        if value < 1:
            raise ValueError(f"Projection head {name} must be >= 1, got {value}.")
    return builder(in_dim, out_dim, hidden)


def head_out_dim(kind: str, in_dim: int, out_dim: int = 128) -> int:
    """Size of z that :func:`build_head` with these arguments produces."""
    HEADS.get(kind)  # unknown kinds raise here as in build_head
    return in_dim if kind == "none" else out_dim


#: How many layers each head kind has: the depth ``head:k`` of a feature layer may reach.
HEAD_DEPTH: dict[str, int] = {"none": 0, "linear": 1, "v1": 2, "v2": 3}


def head_layers(head: nn.Module) -> list[nn.Module]:
    """The head split into its layers, each a module mapping (B, d_in) -> (B, d_out).

    A layer is a Linear with the BN and ReLU that follow it, as S-v2 counts them: "fine-tune
    from the 1st layer of the projection head" means h -> ReLU(BN(W1 h)) (S-v2 sec 2, eq. for
    f_task; GR ``ft_proj_selector=1`` picks ``hiddens_list[1]``, the output after the first
    layer's BN and ReLU). ``none`` has no layer, ``linear`` one, ``v1`` two, ``v2`` three.
    """
    if isinstance(head, nn.Identity):
        return []
    if isinstance(head, nn.Linear):
        return [head]
    layers: list[list[nn.Module]] = []
    for m in head.children():
        if isinstance(m, nn.Linear):
            layers.append([m])
        elif layers:
            layers[-1].append(m)
        else:
            raise ValueError(f"A projection head must start with a Linear layer, not {type(m).__name__}.")
    return [nn.Sequential(*group) for group in layers]

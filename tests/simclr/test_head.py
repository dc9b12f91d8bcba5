"""Projection heads: shapes, GR's BN layout, parameter counts (protocol.md §4.3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clrbench.registry import UnknownNameError
from clrbench.simclr.head import HEAD_KINDS, HEADS, build_head, head_out_dim


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_output_shapes_match_head_out_dim(kind: str) -> None:
    head = build_head(kind, 32, out_dim=16, hidden_dim=24)
    assert head(torch.rand(4, 32)).shape == (4, head_out_dim(kind, 32, 16))


def test_kinds_are_registered() -> None:
    assert sorted(HEAD_KINDS) == HEADS.names()
    assert head_out_dim("none", 32, 16) == 32 and head_out_dim("v1", 32) == 128


def test_v1_is_gr_layout_with_gamma_only_last_bn() -> None:
    head = build_head("v1", 32, 16)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "ScaleOnlyBatchNorm1d"]
    assert head[0].bias is None and head[3].bias is None  # the BN after each absorbs a bias
    assert head[1].bias is not None  # the hidden BN keeps its beta
    assert head[-1].bias is None and torch.all(head[-1].weight == 1)
    assert "4.bias" not in head.state_dict()
    # d*d + (gamma, beta) of d + d*out + gamma of out
    assert n_params(head) == 32 * 32 + 2 * 32 + 32 * 16 + 16
    head[-1].reset_parameters()  # the no-beta BN survives a reset
    assert head[-1].bias is None


def test_v2_has_two_hidden_layers_and_hidden_dim_is_used() -> None:
    head = build_head("v2", 32, 16, hidden_dim=8)
    assert n_params(head) == (32 * 8 + 2 * 8) + (8 * 8 + 2 * 8) + (8 * 16 + 16)
    assert head[-1].bias is None and len(head) == 8


def test_linear_and_none() -> None:
    linear = build_head("linear", 32, 16)
    assert isinstance(linear, nn.Linear) and n_params(linear) == 32 * 16 + 16
    assert n_params(build_head("none", 32)) == 0


def test_dense_kernels_follow_gr_initialiser() -> None:
    torch.manual_seed(0)
    head = build_head("v1", 256, 128)
    assert head[0].weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_every_parameter_gets_a_gradient_in_train_mode() -> None:
    torch.manual_seed(0)
    head = build_head("v1", 8, 4)
    z = head(torch.randn(6, 8))
    z.square().sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_bad_kind_and_dims() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'v1'"):
        build_head("vv1", 32)
    with pytest.raises(UnknownNameError):
        head_out_dim("mlp", 32, 16)
    with pytest.raises(ValueError, match="hidden_dim"):
        build_head("v1", 32, 16, hidden_dim=0)

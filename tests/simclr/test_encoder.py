from __future__ import annotations

import pytest
import torch
import torchvision

from clrbench.registry import UnknownNameError
from clrbench.simclr.encoder import build_encoder
from clrbench.simclr.head import build_head


@pytest.mark.parametrize(("arch", "width", "dim"), [("resnet18", 0.25, 128), ("resnet18", 1.0, 512),
                                                    ("resnet50", 1.0, 2048), ("resnet50", 2.0, 4096)])
def test_feature_dims(arch: str, width: float, dim: int) -> None:
    module, d = build_encoder(arch, width)
    assert d == dim
    if width <= 0.25:
        assert module(torch.rand(2, 3, 32, 32)).shape == (2, dim)


def test_width_1_resnet50_is_torchvision_compatible() -> None:
    ours, _ = build_encoder("resnet50")
    tv = torchvision.models.resnet50()
    res = tv.load_state_dict(ours.state_dict(), strict=False)
    assert sorted(res.missing_keys) == ["fc.bias", "fc.weight"] and not res.unexpected_keys
    tv.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    ours.eval(), tv.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-5)


def test_cifar_stem_keeps_resolution_and_zero_init_residual() -> None:
    m, _ = build_encoder("resnet18", 0.125, stem="cifar")
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    assert m.layer1(m.relu(m.bn1(m.conv1(torch.rand(1, 3, 32, 32))))).shape[-1] == 32
    assert all(torch.all(b.bn2.weight == 0) for b in m.layer1)


def test_unknown_arch() -> None:
    with pytest.raises(UnknownNameError, match="resnet50"):
        build_encoder("resnet05")


def test_heads() -> None:
    x = torch.rand(4, 32)
    assert build_head("v1", 32, 16)(x).shape == (4, 16)
    assert build_head("v2", 32, 16)(x).shape == (4, 16)
    assert build_head("linear", 32, 16)(x).shape == (4, 16)
    assert build_head("none", 32, 16)(x).shape == (4, 32)
    v1 = build_head("v1", 32, 16)
    assert v1[-1].bias is None and v1[-1].weight is not None  # last BN: gamma only (GR)
    assert sum(p.numel() for p in v1.parameters()) == 32 * 32 + 2 * 32 + 32 * 16 + 16

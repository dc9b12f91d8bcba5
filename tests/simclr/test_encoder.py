"""ResNet encoders: widths, stems, zero-init residuals, torchvision key compatibility (protocol.md §4.4)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from clrbench.registry import UnknownNameError
from clrbench.simclr.encoder import ENCODER_ARCHS, ENCODERS, build_encoder


def test_archs_are_registered() -> None:
    assert ENCODER_ARCHS == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert sorted(ENCODER_ARCHS) == ENCODERS.names()


@pytest.mark.parametrize(
    ("arch", "width", "dim"),
    [("resnet18", 0.25, 128), ("resnet34", 0.125, 64), ("resnet50", 0.125, 256)],
)
def test_small_encoders_give_pooled_features(arch: str, width: float, dim: int) -> None:
    module, feature_dim = build_encoder(arch, width, stem="cifar")
    assert feature_dim == dim == module.feature_dim
    assert module(torch.rand(2, 3, 16, 16)).shape == (2, dim)


@pytest.mark.parametrize(
    ("arch", "width", "dim"),
    [("resnet18", 1.0, 512), ("resnet34", 2.0, 1024), ("resnet50", 1.0, 2048),
     ("resnet50", 2.0, 4096), ("resnet50", 4.0, 8192), ("resnet101", 1.0, 2048),
     ("resnet152", 3.0, 6144)],
)  # fmt: skip
def test_full_size_feature_dims(arch: str, width: float, dim: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        module, feature_dim = build_encoder(arch, width)
    assert feature_dim == dim and module.layer4[-1].conv1.in_channels == dim


def test_width_scales_every_channel_count() -> None:
    with torch.device("meta"):
        module, _ = build_encoder("resnet50", 2.0)
        reference = torchvision.models.resnet50()
    assert module.conv1.out_channels == 128  # the stem too, not only the stages
    pairs = zip(module.named_parameters(), reference.named_parameters(), strict=False)
    for (name, ours), (their_name, theirs) in pairs:  # torchvision's extra fc comes last
        assert name == their_name
        assert ours.shape[0] == 2 * theirs.shape[0], name  # every output channel count doubles


def test_width_1_resnet50_loads_into_torchvision_with_identical_features() -> None:
    torch.manual_seed(0)
    ours, _ = build_encoder("resnet50")
    assert not any(key.startswith("fc.") for key in ours.state_dict())
    with torch.no_grad():  # random BN statistics and gammas, so no block is an identity
        for key, value in ours.state_dict().items():
            if value.is_floating_point() and ("bn" in key or "downsample.1" in key):
                value.uniform_(0.5, 1.5)
    with torch.device("meta"):  # no second initialisation: assign=True takes our tensors
        theirs = torchvision.models.resnet50()
    result = theirs.load_state_dict(ours.state_dict(), strict=False, assign=True)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert not result.unexpected_keys
    theirs.fc = nn.Identity()
    ours.eval(), theirs.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_cifar_stem_keeps_resolution_and_imagenet_stem_quarters_it() -> None:
    cifar, _ = build_encoder("resnet18", 0.125, stem="cifar")
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    x = torch.rand(1, 3, 32, 32)
    assert cifar.maxpool(cifar.conv1(x)).shape[-2:] == (32, 32)
    imagenet, _ = build_encoder("resnet18", 0.125)
    assert imagenet.conv1.kernel_size == (7, 7)
    assert imagenet.maxpool(imagenet.conv1(x)).shape[-2:] == (8, 8)


def test_last_bn_of_every_block_starts_at_zero() -> None:
    for arch, last in (("resnet18", "bn2"), ("resnet50", "bn3")):
        module, _ = build_encoder(arch, 0.125)
        for stage in (module.layer1, module.layer2, module.layer3, module.layer4):
            for block in stage:
                assert torch.all(getattr(block, last).weight == 0)
                assert torch.all(block.bn1.weight == 1)
        assert torch.all(module.bn1.weight == 1)


def test_unknown_arch_suggests_a_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        build_encoder("resnet05")


def test_bad_width_and_stem() -> None:
    with pytest.raises(ValueError, match="width"):
        build_encoder("resnet18", 0.0)
    with pytest.raises(ValueError, match="stem"):
        build_encoder("resnet18", 0.125, stem="tiny")

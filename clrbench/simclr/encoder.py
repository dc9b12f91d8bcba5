"""ResNet encoders f(.) with SimCLR's width multiplier and CIFAR stem (S-v1 sec 2.1, B.9).

Built on torchvision's ResNet and its blocks so that state-dict keys are torchvision's own
(``conv1``, ``bn1``, ``layer1.0.conv1``, ...): an encoder exported at width 1x loads into
``torchvision.models.resnet50()``. Every channel count is scaled by ``width`` as in the
released SimCLR 1x/2x/4x models (protocol.md §4.4), and the last BN of each residual block
starts with gamma = 0 (GR resnet.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from clrbench.registry import Registry

ENCODERS: Registry[Callable[[float, str], tuple[nn.Module, int]]] = Registry("encoder architecture")

_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
ENCODER_ARCHS = tuple(_LAYOUTS)


def _channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class ResNetEncoder(ResNet):
    """torchvision's ResNet with all widths scaled, an optional CIFAR stem, and no ``fc``.

    forward: (B, 3, H, W) -> pooled features (B, feature_dim), feature_dim = 512·w·expansion.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                 width: float = 1.0, stem: str = "imagenet") -> None:
        nn.Module.__init__(self)  # torchvision's __init__ hard-codes 64 channels; build here
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}.")
        self._norm_layer = nn.BatchNorm2d
        self.dilation, self.groups, self.base_width = 1, 1, 64
        self.inplanes = _channels(64, width)
        if stem == "cifar":  # S-v1 B.9: 3x3 stride-1 conv, no max-pool, for 32x32 inputs
            self.conv1 = nn.Conv2d(3, self.inplanes, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, _channels(64, width), layers[0])
        self.layer2 = self._make_layer(block, _channels(128, width), layers[1], stride=2)
        self.layer3 = self._make_layer(block, _channels(256, width), layers[2], stride=2)
        self.layer4 = self._make_layer(block, _channels(512, width), layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()  # the head g(.) or a probe goes on top; no parameters here
        self.feature_dim = _channels(512, width) * block.expansion
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # gamma = 0 on the last BN of each residual branch (GR resnet.py)
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def _register(arch: str) -> None:
    block, layers = _LAYOUTS[arch]

    def build(width: float, stem: str) -> tuple[nn.Module, int]:
        m = ResNetEncoder(block, layers, width, stem)
        return m, m.feature_dim

    ENCODERS.add(arch, build)


for _arch in _LAYOUTS:
    _register(_arch)


def build_encoder(arch: str, width: float = 1.0, stem: str = "imagenet") -> tuple[nn.Module, int]:
    """Build the encoder f(.) and return (module, feature_dim).

    Args:
        arch: resnet18/34/50/101/152.
        width: channel multiplier (1, 2, 4 as SimCLR; fractions such as 0.25 for CPU runs).
        stem: ``imagenet`` (7x7/2 conv + max-pool) or ``cifar`` (3x3/1 conv, no max-pool).
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}.")
    return ENCODERS.get(arch)(width, stem)

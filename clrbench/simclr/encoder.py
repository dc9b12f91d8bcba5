"""ResNet encoders f(.) of any width, with SimCLR's CIFAR stem option (S-v1 sec 2.1, B.9).

Built from torchvision's ResNet, BasicBlock, Bottleneck and ``_make_layer``, so the state-dict
keys are torchvision's own (``conv1``, ``bn1``, ``layer1.0.conv1``, ...): a width-1 encoder
loads into ``torchvision.models.resnet50()`` with only ``fc`` missing. As in the released
SimCLR 1x/2x/4x models, ``width`` scales every channel count, stem included (protocol.md §4.4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from clrbench.registry import Registry

Block = type[BasicBlock] | type[Bottleneck]
EncoderBuilder = Callable[[float, str], tuple[nn.Module, int]]

#: Architecture name -> builder ``(width, stem) -> (module, feature_dim)``.
ENCODERS: Registry[EncoderBuilder] = Registry("encoder architecture")

# Block type and blocks per stage (He et al. 2016, Table 1).
_LAYOUTS: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
ENCODER_ARCHS: tuple[str, ...] = tuple(_LAYOUTS)
ENCODER_STEMS: tuple[str, ...] = ("imagenet", "cifar")


def scaled_channels(base: int, width: float) -> int:
    """``base * width`` rounded to an integer, at least 1 (so widths like 0.125 build)."""
    return max(1, round(base * width))


class ResNetEncoder(ResNet):
    """torchvision's ResNet with every channel count scaled by ``width`` and no ``fc`` layer.

    ``fc`` is an ``nn.Identity`` (no parameters, no state-dict keys): the projection head or a
    probe goes on top. Batch norms keep PyTorch's defaults, momentum 0.1 and eps 1e-5, which
    are GR's decay 0.9 and epsilon 1e-5.

    Attributes:
        feature_dim: size of the pooled features h, ``512 * width * block.expansion``.
    """

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int],
        width: float = 1.0,
        stem: str = "imagenet",
    ) -> None:
        # torchvision's __init__ hard-codes 64 stem channels, so the attributes that
        # _make_layer reads are set here instead of calling it.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.dilation, self.groups, self.base_width = 1, 1, 64
        self.inplanes = scaled_channels(64, width)
        if stem == "cifar":
            # S-v1 B.9: for 32x32 inputs a 3x3 stride-1 conv and no max-pool.
            self.conv1 = nn.Conv2d(3, self.inplanes, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        planes = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Module = nn.Identity()
        self.feature_dim = planes[3] * block.expansion
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation, plus gamma = 0 on the last BN of every block.

        Zero gammas make each residual block start as the identity, as GR resnet.py does for
        SimCLR (and torchvision's ``zero_init_residual=True``).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features h.

        Args:
            x: (B, 3, H, W) images.

        Returns:
            (B, feature_dim).
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def _register(arch: str, block: Block, layers: tuple[int, int, int, int]) -> None:
    def build(width: float, stem: str) -> tuple[nn.Module, int]:
        module = ResNetEncoder(block, layers, width, stem)
        return module, module.feature_dim

    ENCODERS.add(arch, build)


for _arch, (_block, _layers) in _LAYOUTS.items():
    _register(_arch, _block, _layers)


def build_encoder(arch: str, width: float = 1.0, stem: str = "imagenet") -> tuple[nn.Module, int]:
    """Build the encoder f(.), randomly initialised.

    Args:
        arch: a name in :data:`ENCODER_ARCHS` (resnet18/34/50/101/152).
        width: channel multiplier of every layer: 1, 2, 4 as SimCLR's models; fractions such
            as 0.25 for CPU runs (resnet18 at 0.25 gives 128-d features).
        stem: ``imagenet`` (7x7 stride-2 conv + 3x3 stride-2 max-pool) or ``cifar`` (3x3
            stride-1 conv, no max-pool; S-v1 B.9).

    Returns:
        (module, feature_dim): the module maps (B, 3, H, W) to (B, feature_dim).

    Raises:
        UnknownNameError: ``arch`` is not registered (the message suggests close names).
        ValueError: ``width`` is not positive or ``stem`` is unknown.
    """
    builder = ENCODERS.get(arch)
    if not width > 0:
        raise ValueError(f"Encoder width must be positive, got {width}.")
    if stem not in ENCODER_STEMS:
        raise ValueError(f"Encoder stem must be one of {', '.join(ENCODER_STEMS)}, got {stem!r}.")
    return builder(width, stem)

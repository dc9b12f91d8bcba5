"""SimCLR's two-view augmentation (S-v1 App. A; protocol.md §4.1), as named, parameterised ops.

Two backends share one configuration:

* ``kornia``: batched on the training device, per-sample random parameters. Used for
  fixed-size in-memory sources (embedded, CIFAR, STL-10), where per-image CPU transforms are
  the bottleneck (measured here at 32 px: ~3,000 view pairs/s batched vs ~900 per image on
  one thread), and the only backend that takes an op list (``augment.ops``).
* ``torchvision``: transforms v2 per image in DataLoader workers, for variable-size images
  (image folders, Hugging Face datasets); the preset composition only.

The default op list is the paper's composition: random resized crop (scale 0.08-1, aspect
3/4-4/3, bicubic), horizontal flip (p 0.5), colour distortion of strength s (jitter with
p 0.8, grayscale with p 0.2) and Gaussian blur (kernel 10% of the side, sigma 0.1-2, p 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from clrbench.config import AugmentConfig, AugmentOp, ConfigError
from clrbench.registry import Registry, did_you_mean

# name -> (builder(params, image_size) -> batched kornia-style module, allowed params)
OpBuilder = Callable[[dict[str, Any], int], nn.Module]
OPS: Registry[tuple[OpBuilder, frozenset[str]]] = Registry("augmentation op")


def _op(name: str, params: set[str]) -> Callable[[OpBuilder], OpBuilder]:
    def deco(fn: OpBuilder) -> OpBuilder:
        OPS.add(name, (fn, frozenset(params)))
        return fn

    return deco


class _Clamp(nn.Module):
    """Keep values in [0, 1] after each op, as GR does (bicubic overshoots)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_(0.0, 1.0)


@_op("crop", {"scale", "ratio"})
def _crop(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    # Clamped here too: a crop can also be a targeted op after the base crop (S-v1 Fig. 5's
    # crop row), and bicubic resampling overshoots [0, 1] by up to ~0.15.
    return nn.Sequential(K.RandomResizedCrop(
        (size, size), scale=tuple(p.get("scale", (0.08, 1.0))),
        ratio=tuple(p.get("ratio", (3 / 4, 4 / 3))), resample="BICUBIC",
    ), _Clamp())


@_op("flip", {"p"})
def _flip(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return K.RandomHorizontalFlip(p=p.get("p", 0.5))


@_op("color", {"strength", "p", "grayscale_p"})
def _color(p: dict[str, Any], size: int) -> nn.Module:
    """Colour distortion: jitter of strength s (random order, as GR's default) + grayscale."""
    import kornia.augmentation as K

    s = float(p.get("strength", 1.0))
    layers: list[nn.Module] = []
    if s > 0:
        layers.append(K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.5, 0.2 * s), p=p.get("p", 0.8)))
    layers.append(K.RandomGrayscale(p=p.get("grayscale_p", 0.2)))
    return nn.Sequential(*layers, _Clamp())


@_op("blur", {"p", "sigma"})
def _blur(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    k = size // 10  # GR data_util: kernel 10% of the side, made odd
    k = 2 * (k // 2) + 1
    if k < 3:
        k = 3
    return K.RandomGaussianBlur(k, tuple(p.get("sigma", (0.1, 2.0))), p=p.get("p", 0.5))


@_op("cutout", {"scale", "p"})
def _cutout(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return K.RandomErasing(scale=tuple(p.get("scale", (0.02, 0.33))), p=p.get("p", 1.0))


@_op("noise", {"std", "p"})
def _noise(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return nn.Sequential(K.RandomGaussianNoise(std=p.get("std", 0.1), p=p.get("p", 1.0)), _Clamp())


@_op("rotate", {"p"})
def _rotate(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return K.RandomRotation90(times=(1, 3), p=p.get("p", 1.0))  # 90, 180 or 270 degrees


class _Sobel(nn.Module):
    """Sobel edge magnitude of the grey image, replicated to 3 channels, scaled to [0, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import kornia

        e = kornia.filters.sobel(kornia.color.rgb_to_grayscale(x))
        e = e / e.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
        return e.expand(-1, 3, -1, -1).contiguous()


@_op("sobel", set())
def _sobel(p: dict[str, Any], size: int) -> nn.Module:
    return _Sobel()


@_op("equalize", {"p"})
def _equalize(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return K.RandomEqualize(p=p.get("p", 0.5))


@_op("solarize", {"p", "thresholds"})
def _solarize(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return K.RandomSolarize(thresholds=p.get("thresholds", 0.1), additions=0.0, p=p.get("p", 0.2))


@_op("motion_blur", {"p", "kernel_size"})
def _motion_blur(p: dict[str, Any], size: int) -> nn.Module:
    import kornia.augmentation as K

    return K.RandomMotionBlur(p.get("kernel_size", 3), angle=35.0, direction=0.5, p=p.get("p", 0.5))


def preset_ops(cfg: AugmentConfig) -> tuple[AugmentOp, ...]:
    """The paper's composition from the preset fields (used when ``cfg.ops`` is empty)."""
    ops = [AugmentOp("crop", {"scale": cfg.crop_scale})]
    if cfg.flip:
        ops.append(AugmentOp("flip"))
    ops.append(AugmentOp("color", {"strength": cfg.color_strength, "p": cfg.color_prob,
                                   "grayscale_p": cfg.grayscale_prob}))
    if cfg.blur_prob > 0:
        ops.append(AugmentOp("blur", {"p": cfg.blur_prob}))
    return tuple(ops)


def build_op(op: AugmentOp, image_size: int) -> nn.Module:
    """One op as a batched module; unknown names or parameters are one clear error."""
    if op.name not in OPS:
        raise ConfigError(f"Unknown augmentation op {op.name!r}.{did_you_mean(op.name, OPS.names())} "
                          f"Known: {', '.join(OPS.names())}.")
    builder, allowed = OPS.get(op.name)
    unknown = sorted(set(op.params) - allowed)
    if unknown:
        raise ConfigError(f"Augmentation op {op.name!r} has no parameter {unknown[0]!r}; "
                          f"it takes {', '.join(sorted(allowed)) or 'none'}.")
    return builder(dict(op.params), image_size)


class TwoViewAugment(nn.Module):
    """Batched two-view SimCLR augmentation (kornia backend).

    Input: uint8 or float (B, 3, H, W) images, all of one size. Output: two float (B, 3, S, S)
    views in [0, 1], S = ``cfg.image_size``, with independent random draws per view and image.
    With ``cfg.asymmetric`` the ops after the crop apply to view a only and view b stays the
    crop (the setting of S-v1 Fig. 5).
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        ops = cfg.ops or preset_ops(cfg)
        if ops[0].name != "crop":
            # Every view is resized to image_size; without an explicit crop use the whole image.
            ops = (AugmentOp("crop", {"scale": (1.0, 1.0), "ratio": (1.0, 1.0)}), *ops)
        self.crop = build_op(ops[0], cfg.image_size)
        self.rest = nn.Sequential(*(build_op(o, cfg.image_size) for o in ops[1:]))
        self.asymmetric = cfg.asymmetric

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        a = self.crop(x).clamp_(0, 1)
        b = self.crop(x).clamp_(0, 1)
        a = self.rest(a)
        if not self.asymmetric:
            b = self.rest(b)
        return a.contiguous(), b.contiguous()


class TorchvisionTwoView:
    """Per-image two-view augmentation with torchvision transforms v2 (DataLoader workers).

    Call on a PIL image or uint8 (3, H, W) tensor; returns two float (3, S, S) views in [0, 1].
    Only the preset composition is supported here; op lists use the kornia backend.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        from torchvision.transforms import v2 as T

        if cfg.ops or cfg.asymmetric:
            # Never ignore an op list silently: every trial of an augmentation study would
            # otherwise train with the same preset and the study would show noise.
            raise ConfigError(
                "augment.ops and augment.asymmetric need an in-memory source (embedded, cifar10, cifar100, "
                "stl10); image folders and Hugging Face datasets use the preset composition only."
            )
        s = cfg.color_strength
        k = max(3, 2 * ((cfg.image_size // 10) // 2) + 1)
        steps: list[Any] = [
            T.ToImage(),
            T.RandomResizedCrop(cfg.image_size, scale=cfg.crop_scale, ratio=(3 / 4, 4 / 3),
                                interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        ]
        if cfg.flip:
            steps.append(T.RandomHorizontalFlip(0.5))
        if s > 0:
            steps.append(T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.5, 0.2 * s))],
                                       p=cfg.color_prob))
        steps.append(T.RandomGrayscale(cfg.grayscale_prob))
        if cfg.blur_prob > 0:
            steps.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=cfg.blur_prob))
        steps.append(T.ToDtype(torch.float32, scale=True))
        self.transform = T.Compose(steps)

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(image), self.transform(image)


def choose_backend(cfg: AugmentConfig, fixed_size: bool) -> str:
    """kornia for fixed-size (in-memory) sources or when ops are listed, else torchvision.

    In-memory sources are only augmented in batch (``train._Batches``), whatever the view
    size: STL-10 at 96 px used to get ``torchvision`` here and was then refused.
    """
    if cfg.backend != "auto":
        if cfg.backend == "torchvision" and cfg.ops:
            raise ConfigError("augment.ops needs augment.backend kornia (or auto).")
        return cfg.backend
    if cfg.ops or fixed_size:
        return "kornia"
    return "torchvision"

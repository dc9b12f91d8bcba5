"""Augmentation ops (S-v1 App. A, Fig. 5): every op alone and in a pair keeps shape and range;
the asymmetric option leaves the second view as the crop; bad names are one clear error."""

from __future__ import annotations

import itertools

import pytest
import torch

from clrbench.config import AugmentConfig, AugmentOp, ConfigError
from clrbench.simclr.augment import OPS, TwoViewAugment, build_op

SIZE = 16


def _images(n: int = 4, side: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)


def _views(names: tuple[str, ...], asymmetric: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ops = (AugmentOp("crop"), *(AugmentOp(n) for n in names))
    torch.manual_seed(seed)
    return TwoViewAugment(AugmentConfig(image_size=SIZE, ops=ops, asymmetric=asymmetric))(_images())


def _check(view: torch.Tensor, what: str) -> None:
    assert view.shape == (4, 3, SIZE, SIZE), what
    assert view.dtype == torch.float32, what
    assert torch.isfinite(view).all(), what
    assert view.min() >= 0.0 and view.max() <= 1.0, f"{what}: range [{view.min():.3f}, {view.max():.3f}]"


def test_the_paper_ops_and_the_broader_set_are_registered() -> None:
    paper = {"crop", "cutout", "color", "sobel", "noise", "blur", "rotate"}  # S-v1 Fig. 4 / 5
    broader = {"flip", "equalize", "solarize", "motion_blur"}  # S-v1 App. B.2's stronger model
    assert paper | broader <= set(OPS.names())


@pytest.mark.parametrize("name", OPS.names())
def test_every_op_alone_keeps_shape_and_range(name: str) -> None:
    for asymmetric in (False, True):
        a, b = _views((name,), asymmetric)
        _check(a, f"{name} view a")
        _check(b, f"{name} view b")


def test_every_ordered_pair_keeps_shape_and_range() -> None:
    for first, second in itertools.product(OPS.names(), repeat=2):
        a, b = _views((first, second), asymmetric=True)
        _check(a, f"{first}+{second}")
        _check(b, f"{first}+{second} view b")


def test_asymmetric_leaves_the_second_view_as_the_crop() -> None:
    # Same seed: the crops draw first (view a, then view b), the targeted ops after, so view
    # b of the asymmetric pipeline must equal view b of a crop-only pipeline exactly.
    crop_a, crop_b = _views(())
    a, b = _views(("color", "sobel"), asymmetric=True)
    torch.testing.assert_close(b, crop_b, rtol=0, atol=0)
    assert not torch.equal(a, crop_a)  # the targeted ops did reach view a
    _, sym_b = _views(("color", "sobel"), asymmetric=False)
    assert not torch.equal(sym_b, crop_b)  # and without the option they reach view b too


def test_unknown_op_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"Unknown augmentation op 'colour'.*Did you mean 'color'"):
        build_op(AugmentOp("colour"), SIZE)


def test_unknown_parameter_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"'blur' has no parameter 'kernel'; it takes p, sigma"):
        build_op(AugmentOp("blur", {"kernel": 3}), SIZE)


def test_per_image_backend_refuses_op_lists_instead_of_ignoring_them() -> None:
    from clrbench.simclr.augment import TorchvisionTwoView

    with pytest.raises(ConfigError, match="need an in-memory source"):
        TorchvisionTwoView(AugmentConfig(ops=(AugmentOp("crop"), AugmentOp("sobel")), asymmetric=True))
    TorchvisionTwoView(AugmentConfig())  # the preset composition still works


def test_in_memory_sources_are_augmented_in_batch_at_any_size() -> None:
    from clrbench.simclr.augment import choose_backend

    assert choose_backend(AugmentConfig(image_size=96), fixed_size=True) == "kornia"  # STL-10
    assert choose_backend(AugmentConfig(image_size=224), fixed_size=False) == "torchvision"
    assert choose_backend(AugmentConfig(image_size=224, ops=(AugmentOp("crop"),)), fixed_size=False) == "kornia"

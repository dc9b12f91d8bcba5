from __future__ import annotations

import pytest

from clrbench.registry import Registry, UnknownNameError


def test_registry_get_and_did_you_mean() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("resnet50", 1)
    reg.register("resnet18")(2)
    assert reg.get("resnet18") == 2 and "resnet50" in reg and len(reg) == 2
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        reg.get("resnet5O")
    with pytest.raises(ValueError, match="twice"):
        reg.add("resnet50", 3)

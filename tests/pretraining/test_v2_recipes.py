"""The SimCLRv2 recipes say what S-v2 sec 3 says: 3-layer head, tau 0.1, sqrt lr, wd 1e-4."""

from __future__ import annotations

import pytest

from clrbench.config import derive, load_pretrain_config


@pytest.mark.parametrize("name", ["quickstart-v2", "cifar10-r18-v2", "imagenet-r50-1x-v2"])
def test_v2_recipes(name: str) -> None:
    cfg = load_pretrain_config(name)
    assert cfg.model.head == "v2" and cfg.loss.temperature == 0.1
    assert cfg.optim.lr_scaling == "sqrt" and cfg.optim.lr_base == 0.1 and cfg.optim.weight_decay == 1e-4


def test_imagenet_v2_is_the_papers_schedule() -> None:
    cfg = load_pretrain_config("imagenet-r50-1x-v2")
    d = derive(cfg, 1_281_167)
    assert d.lr == pytest.approx(6.4)  # 0.1 x sqrt(4096), S-v2 sec 3
    assert cfg.optim.epochs == 800 and cfg.optim.warmup_epochs == 0.05 * 800

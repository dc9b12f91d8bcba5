"""Config: strict YAML, dotted overrides, derived values, every shipped recipe."""

from __future__ import annotations

import math

import pytest

from clrbench.config import (
    ConfigError,
    PretrainConfig,
    derive,
    from_dict,
    load_pretrain_config,
    recipe_names,
    to_dict,
)


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_loads_and_validates(name: str) -> None:
    cfg = load_pretrain_config(name)
    assert isinstance(cfg, PretrainConfig)
    assert from_dict(PretrainConfig, to_dict(cfg)) == cfg  # round trip


def test_shipped_recipes_include_the_paper_ones() -> None:
    assert {"quickstart", "cifar10-r18", "imagenet-r50-1x", "imagenet-r50-4x"} <= set(recipe_names())
    r50 = load_pretrain_config("imagenet-r50-1x")
    assert (r50.optim.batch_size_global, r50.loss.temperature, r50.optim.weight_decay) == (4096, 0.1, 1e-6)
    assert derive(r50, 1_281_167).lr == pytest.approx(4.8)
    c10 = load_pretrain_config("cifar10-r18")
    assert (c10.model.stem, c10.augment.blur_prob, c10.augment.color_strength) == ("cifar", 0.0, 0.5)


def test_unknown_key_names_the_key_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"optim\.warmup_epoch'.*warmup_epochs"):
        from_dict(PretrainConfig, {"optim": {"warmup_epoch": 5}})


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"optim\.batch_size_global: expected an integer"):
        from_dict(PretrainConfig, {"optim": {"batch_size_global": "big"}})
    with pytest.raises(ConfigError, match=r"model\.stem"):
        from_dict(PretrainConfig, {"model": {"stem": "tiny"}})
    with pytest.raises(ConfigError, match="true or false"):
        from_dict(PretrainConfig, {"run": {"channels_last": "yes"}})


def test_overrides_are_typed_and_checked() -> None:
    cfg = load_pretrain_config("quickstart", ["loss.temperature=0.2", "optim.steps=7", "augment.crop_scale=[0.2, 1.0]"])
    assert cfg.loss.temperature == 0.2 and cfg.optim.steps == 7 and cfg.augment.crop_scale == (0.2, 1.0)
    with pytest.raises(ConfigError, match=r"loss\.tau"):
        load_pretrain_config("quickstart", ["loss.tau=0.2"])
    with pytest.raises(ConfigError, match=r"key.sub=value"):
        load_pretrain_config("quickstart", ["loss.temperature"])


def test_exponent_floats_as_users_write_them() -> None:
    """YAML 1.1 reads 1e-4 (no dot) as a string; a float field takes it as the number."""
    cfg = load_pretrain_config("quickstart", ["optim.weight_decay=1e-4", "optim.lr_base=3E-1"])
    assert cfg.optim.weight_decay == 1e-4 and cfg.optim.lr_base == 0.3
    for bad in ("optim.weight_decay=nan", "optim.weight_decay=1e-", "optim.lr_base=e5"):
        with pytest.raises(ConfigError, match=r"expected a number"):
            load_pretrain_config("quickstart", [bad])


def test_augment_ops_from_yaml() -> None:
    cfg = from_dict(PretrainConfig, {"augment": {"ops": ["crop", {"name": "color", "params": {"strength": 0.5}}]}})
    assert [o.name for o in cfg.augment.ops] == ["crop", "color"]
    assert cfg.augment.ops[1].params == {"strength": 0.5}


def test_unknown_recipe_suggests() -> None:
    with pytest.raises(ConfigError, match="quickstart"):
        load_pretrain_config("quickstrat")


def test_derived_values() -> None:
    cfg = from_dict(PretrainConfig, {"optim": {"batch_size_global": 512, "epochs": 3, "warmup_epochs": 1,
                                               "lr_base": 0.075, "lr_scaling": "sqrt"}})
    d = derive(cfg, 5000, world_size=2)
    assert d.steps_per_epoch == 9 and d.total_steps == 27 and d.warmup_steps == 9
    assert d.batch_size_per_device == 256
    assert d.lr == pytest.approx(0.075 * math.sqrt(512))


def test_impossible_batch_sizes() -> None:
    cfg = from_dict(PretrainConfig, {"optim": {"batch_size_global": 510}})
    with pytest.raises(ConfigError, match="not divisible by the world size 4"):
        derive(cfg, 10_000, world_size=4)
    with pytest.raises(ConfigError, match="larger than the 100 training images"):
        derive(cfg, 100)
    with pytest.raises(ConfigError, match="needs negatives"):
        from_dict(PretrainConfig, {"optim": {"batch_size_global": 1}})

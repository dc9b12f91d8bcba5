"""The study grids are exactly the ones named: ordered pairs, diagonal singles, Table 5's two
similarity kinds, every (batch, epochs) pair, no head once; budgets parse as documented."""

from __future__ import annotations

import pytest

from clrbench.config import ConfigError, load_pretrain_config
from clrbench.study.budget import parse_budget
from clrbench.study.grids import (
    PAPER_OPS,
    augment_grid,
    batch_size_grid,
    head_grid,
    parse_numbers,
    temperature_grid,
)


def test_augment_grid_is_every_ordered_pair_with_singles_on_the_diagonal() -> None:
    ops = ["crop", "color", "blur"]
    trials = augment_grid(ops)
    assert [(t.point["first"], t.point["second"]) for t in trials] == [(a, b) for a in ops for b in ops]
    assert len({t.key for t in trials}) == 9
    by = {(t.point["first"], t.point["second"]): t for t in trials}
    assert by[("color", "blur")].key == "color+blur" and by[("blur", "color")].key == "blur+color"
    assert by[("color", "color")].key == "color" and by[("color", "color")].point["single"]
    assert not by[("color", "blur")].point["single"]


def test_augment_trials_crop_first_then_targeted_ops_on_one_branch() -> None:
    by = {t.key: t for t in augment_grid(["crop", "color", "sobel"], color_strength=0.5)}
    cfg = load_pretrain_config("quickstart", list(by["sobel+color"].overrides))
    assert [o.name for o in cfg.augment.ops] == ["crop", "sobel", "color"]
    assert cfg.augment.asymmetric
    assert cfg.augment.ops[2].params == {"strength": 0.5}  # the recipe's colour strength
    single = load_pretrain_config("quickstart", list(by["sobel"].overrides))
    assert [o.name for o in single.augment.ops] == ["crop", "sobel"]
    assert [o.name for o in load_pretrain_config("quickstart", list(by["crop"].overrides)).augment.ops] == [
        "crop",
        "crop",
    ]


def test_paper_grid_has_49_trials() -> None:
    assert len(augment_grid(list(PAPER_OPS))) == 49


def test_unknown_op_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"Unknown augmentation op 'cutot'.*Did you mean 'cutout'"):
        augment_grid(["crop", "cutot"])


def test_temperature_grid_has_both_similarities() -> None:
    trials = temperature_grid([0.1, 0.5], [10.0])
    assert [(t.point["temperature"], t.point["l2"]) for t in trials] == [(0.1, True), (0.5, True), (10.0, False)]
    cfg = load_pretrain_config("quickstart", list(trials[2].overrides))
    assert cfg.loss.temperature == 10.0 and cfg.loss.normalize is False


def test_batch_size_grid_is_every_pair_with_its_own_schedule() -> None:
    trials = batch_size_grid([64, 128], [2.0, 4.0])
    assert [t.key for t in trials] == ["b64-e2", "b64-e4", "b128-e2", "b128-e4"]
    cfg = load_pretrain_config("quickstart", ["optim.steps=100", *trials[3].overrides])
    assert cfg.optim.batch_size_global == 128 and cfg.optim.epochs == 4.0 and cfg.optim.steps is None


def test_head_grid_has_no_head_once_and_probes_g_only_with_a_head() -> None:
    trials = head_grid(["none", "linear", "nonlinear"], [32, 128])
    assert [t.key for t in trials] == ["none", "linear-d32", "linear-d128", "nonlinear-d32", "nonlinear-d128"]
    assert trials[0].layers == ("h",) and all(t.layers == ("h", "g") for t in trials[1:])
    cfg = load_pretrain_config("quickstart", list(trials[3].overrides))
    assert cfg.model.head == "v1" and cfg.model.head_dim == 32
    with pytest.raises(ConfigError, match="Unknown head 'mlp'"):
        head_grid(["mlp"], [32])


def test_numbers_are_checked() -> None:
    assert parse_numbers("0.1, 1", "values") == [0.1, 1.0]
    with pytest.raises(ConfigError, match="not a number"):
        parse_numbers("0.1,x", "values")
    with pytest.raises(ConfigError, match="twice"):
        parse_numbers("1,1", "values")


@pytest.mark.parametrize(("text", "name", "overrides"), [
    ("500", "500steps", ("optim.steps=500",)),
    ("100ep", "100ep", ("optim.steps=null", "optim.epochs=100.0")),
    ("paper", "paper", ("optim.steps=null", "optim.epochs=100.0")),
])
def test_budgets(text: str, name: str, overrides: tuple[str, ...]) -> None:
    b = parse_budget(text, "temperature")
    assert b.name == name and b.overrides == overrides


def test_laptop_is_the_default_and_bad_budgets_say_what_is_accepted() -> None:
    assert "optim.steps=100" in parse_budget("laptop", "augment").overrides
    assert not any("steps" in o for o in parse_budget("laptop", "batch-size").overrides)
    with pytest.raises(ConfigError, match=r"not a preset \(laptop, smoke, paper, recipe\)"):
        parse_budget("huge", "augment")


def test_augment_study_on_a_file_source_is_refused_before_it_starts() -> None:
    from clrbench.study.runner import check_trial

    trial = augment_grid(["sobel"])[0]
    cfg = load_pretrain_config("quickstart", ["data.source=folder", "data.path=/nowhere", *trial.overrides])
    with pytest.raises(ConfigError, match="in-memory source"):
        check_trial(cfg, 12000)

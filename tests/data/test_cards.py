"""Task cards and protocols: every shipped one validates; bad cards fail with the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clrbench.config import ConfigError
from clrbench.data.cards import cards_dir, load_card, load_cards, select_tasks
from clrbench.eval.protocols import LinearProtocol, load_protocol


def test_every_shipped_card_and_protocol_validates() -> None:
    cards = load_cards()
    assert {"digits", "shapes", "textures", "scenes"} <= set(cards)
    assert {c.name for c in select_tasks("quick", cards)} == {"digits", "shapes", "textures", "scenes"}
    for p in sorted((cards_dir() / "protocols").glob("*.yaml")):
        assert load_protocol(p).name == p.stem


def test_quick_suite_covers_every_metric() -> None:
    metrics = {c.metric for c in select_tasks("quick", load_cards())}
    assert metrics == {"top1", "mean_per_class", "map11"}


def test_linear_protocol_is_the_papers() -> None:
    p = load_protocol("linear")
    assert isinstance(p, LinearProtocol)
    assert (p.lambda_min_exp, p.lambda_step_exp, p.lambda_num) == (-6.0, 0.25, 45)


def test_unknown_task_and_protocol_suggest() -> None:
    cards = load_cards()
    with pytest.raises(ConfigError, match="Did you mean 'digits'"):
        select_tasks("digit", cards)
    with pytest.raises(ConfigError, match="linear"):
        load_protocol("linaer")


def test_comma_list_keeps_order_and_dedups() -> None:
    names = [c.name for c in select_tasks("shapes,digits,shapes", load_cards())]
    assert names == ["shapes", "digits"]


def _write(tmp_path: Path, card: dict) -> Path:
    p = tmp_path / f"{card['name']}.yaml"
    p.write_text(yaml.safe_dump(card))
    return p


def _card() -> dict:
    return yaml.safe_load((cards_dir() / "shapes.yaml").read_text())


def test_missing_field_and_unknown_metric_fail_clearly(tmp_path: Path) -> None:
    card = _card()
    del card["metric"]
    with pytest.raises(ConfigError, match=r"shapes.yaml.*metric"):
        load_card(_write(tmp_path, card))
    card = _card()
    card["metric"] = "top5"
    with pytest.raises(ConfigError, match="'top5' is not one of"):
        load_card(_write(tmp_path, card))
    card = _card()
    card["splits"]["val"] = {"carve_from": "train"}
    with pytest.raises(ConfigError, match="per_class, fraction or size"):
        load_card(_write(tmp_path, card))
    card = _card()
    card["metric"] = "map11"
    with pytest.raises(ConfigError, match="multilabel"):
        load_card(_write(tmp_path, card))

"""Study cost estimates stay put under load: the fastest of several timed passes counts, and
the estimate is shown as a range (issue 14: one study read 18 min, then 14.9 h)."""

from __future__ import annotations

import itertools
import time

from clrbench.config import load_pretrain_config
from clrbench.study.budget import parse_budget
from clrbench.study.cost import (
    ESTIMATE_SPREAD,
    TrialCost,
    format_range,
    min_time,
    seconds_per_image,
)


def test_min_time_ignores_passes_slowed_by_other_load() -> None:
    # start, end of each call: the calls took 1, 5, 1.1, 9 and 1 s (mean 3.4 s)
    clock = iter([0.0, 1.0, 10.0, 15.0, 20.0, 21.1, 30.0, 39.0, 40.0, 41.0]).__next__
    assert min_time(lambda: None, 5, clock) == 1.0


def test_seconds_per_image_with_an_artificially_slowed_probe() -> None:
    """Every other timed pass is made 10 s slower (as a busy machine would); the estimate does
    not move: it is the unslowed passes' speed."""
    cfg = load_pretrain_config(
        "quickstart", [*parse_budget("smoke", "temperature").overrides, "run.device=cpu", "run.precision=fp32"]
    )
    calls = itertools.count()
    extra = [0.0]

    def slowed_clock() -> float:
        n = next(calls)
        if n % 4 == 3:  # the end of every second pass
            extra[0] += 10.0
        return time.perf_counter() + extra[0]

    train, infer = seconds_per_image(cfg, batch=2, repeats=4, clock=slowed_clock)
    assert 0 < train < 10.0 / 4 and 0 < infer < 10.0 / 4  # a slowed pass would give >= 2.5 s per image


def test_estimate_is_a_range() -> None:
    c = TrialCost(pretrain_s=600.0, eval_s=120.0, steps=100, lr=0.5)
    assert c.range_s == (720.0, 720.0 * ESTIMATE_SPREAD)
    assert format_range(*c.range_s) == "12-19 min"
    assert format_range(60.0, 100.0) == "60 s-2 min"

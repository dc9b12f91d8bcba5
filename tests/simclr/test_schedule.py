"""LR scaling rules and the warmup + cosine schedule (S-v1 sec 2.3, B.1; protocol.md §4.6)."""

from __future__ import annotations

import itertools
import math

import pytest

from clrbench.simclr.schedule import scaled_lr, warmup_cosine


def test_linear_and_sqrt_scaling_meet_at_4096() -> None:
    assert scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)  # 0.3 * 4096 / 256
    assert scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)  # 0.075 * 64
    assert scaled_lr(1.0, 512, "linear") == 2.0  # GR README CIFAR-10 command
    assert scaled_lr(0.075, 256, "sqrt") == pytest.approx(1.2)


def test_scaling_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="linear, sqrt"):
        scaled_lr(1.0, 512, "log")
    with pytest.raises(ValueError, match="batch_size_global"):
        scaled_lr(1.0, 0, "linear")


def test_warmup_then_cosine() -> None:
    total, warmup, peak = 110, 10, 2.0
    assert warmup_cosine(0, total, warmup, peak) == 0.0  # warmup starts at 0
    assert warmup_cosine(5, total, warmup, peak) == pytest.approx(1.0)  # mid-warmup
    assert warmup_cosine(9, total, warmup, peak) == pytest.approx(1.8)
    assert warmup_cosine(10, total, warmup, peak) == pytest.approx(peak)  # peak
    assert warmup_cosine(60, total, warmup, peak) == pytest.approx(1.0)  # half-way down
    quarter = peak * 0.5 * (1 + math.cos(math.pi / 4))
    assert warmup_cosine(35, total, warmup, peak) == pytest.approx(quarter)
    assert warmup_cosine(110, total, warmup, peak) == pytest.approx(0.0, abs=1e-15)  # end
    assert warmup_cosine(150, total, warmup, peak) == pytest.approx(0.0, abs=1e-15)  # stays 0


def test_no_warmup_starts_at_peak_and_is_monotone() -> None:
    lrs = [warmup_cosine(s, 20, 0, 1.0) for s in range(21)]
    assert lrs[0] == 1.0 and lrs[-1] == pytest.approx(0.0, abs=1e-15)
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_negative_steps_are_rejected() -> None:
    with pytest.raises(ValueError, match="steps must be >= 0"):
        warmup_cosine(-1, 10, 2, 1.0)

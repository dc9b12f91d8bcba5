from __future__ import annotations

import math

import pytest

from clrbench.simclr.schedule import scaled_lr, warmup_cosine


def test_scaling_rules() -> None:
    assert scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert scaled_lr(1.0, 512, "linear") == 2.0
    with pytest.raises(ValueError):
        scaled_lr(1.0, 512, "log")


def test_warmup_then_cosine() -> None:
    total, warm, peak = 100, 10, 2.0
    assert warmup_cosine(0, total, warm, peak) == 0.0
    assert warmup_cosine(5, total, warm, peak) == pytest.approx(1.0)
    assert warmup_cosine(10, total, warm, peak) == pytest.approx(peak)
    assert warmup_cosine(55, total, warm, peak) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, total, warm, peak) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(3, 10, 0, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))

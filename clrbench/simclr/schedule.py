"""Learning-rate scaling with batch size and the warmup + cosine schedule (S-v1 sec 2.3, B.1).

Pure functions; GR model_util.learning_rate_schedule is the reference.
"""

from __future__ import annotations

import math


def scaled_lr(lr_base: float, batch_size_global: int, rule: str) -> float:
    """Peak lr: ``lr_base * B/256`` (linear) or ``lr_base * sqrt(B)`` (sqrt; S-v1 B.1)."""
    if rule == "linear":
        return lr_base * batch_size_global / 256
    if rule == "sqrt":
        return lr_base * math.sqrt(batch_size_global)
    raise ValueError(f"lr scaling must be 'linear' or 'sqrt', got {rule!r}.")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """lr at ``step``: linear from 0 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * step / warmup_steps
    decay = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

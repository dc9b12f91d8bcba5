"""Learning-rate scaling with the batch size and the warmup + cosine schedule (S-v1 sec 2.3, B.1).

Pure functions of numbers, following GR model_util.learning_rate_schedule (protocol.md §4.6).
"""

from __future__ import annotations

import math

LR_SCALING_RULES: tuple[str, ...] = ("linear", "sqrt")


def scaled_lr(lr_base: float, batch_size_global: int, rule: str) -> float:
    """Peak learning rate for a global batch size.

    Args:
        lr_base: the recipe's base rate (0.3 for ``linear``, 0.075 for ``sqrt`` in S-v1).
        batch_size_global: images per step over all processes.
        rule: ``linear``: lr_base * B / 256 (S-v1 sec 2.3); ``sqrt``: lr_base * sqrt(B), better
            for small batches and short runs (S-v1 B.1). Both give 4.8 at B = 4096.

    Raises:
        ValueError: unknown rule or a batch size below 1.
    """
    if batch_size_global < 1:
        raise ValueError(f"batch_size_global must be >= 1, got {batch_size_global}.")
    if rule == "linear":
        return lr_base * batch_size_global / 256
    if rule == "sqrt":
        return lr_base * math.sqrt(batch_size_global)
    raise ValueError(f"lr scaling rule must be one of {', '.join(LR_SCALING_RULES)}, got {rule!r}.")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Learning rate at ``step`` (0-based, the number of updates done so far).

    Linear warmup from 0: ``peak_lr * step / warmup_steps`` for step < warmup_steps; then
    cosine decay without restarts, ``peak_lr * (1 + cos(pi * t)) / 2`` with
    t = (step - warmup_steps) / (total_steps - warmup_steps) clipped to 1, which reaches 0 at
    ``total_steps`` and stays there (TF cosine_decay with alpha 0, as GR).

    Args:
        step: current step, >= 0.
        total_steps: steps of the whole run.
        warmup_steps: steps of linear warmup, >= 0 (GR: 10 epochs' worth).
        peak_lr: the rate reached at the end of warmup, e.g. from :func:`scaled_lr`.

    Raises:
        ValueError: a negative step count.
    """
    if step < 0 or warmup_steps < 0 or total_steps < 0:
        raise ValueError(
            f"steps must be >= 0, got step={step}, total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}."
        )
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)  # a run shorter than its warmup ends at 0
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

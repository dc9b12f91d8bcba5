"""Value checks a recipe's types cannot express: ranges and device names, one sentence each.

:func:`clrbench.config.load_pretrain_config` applies them to every recipe and ``--set``, so a
bad value stops before anything runs (``data.num_images=0`` once meant "all images" through a
truthiness test; ``run.checkpoint_every=-5`` was accepted).
"""

from __future__ import annotations

import re
from typing import Any

#: Numeric fields and their smallest allowed value (None, where allowed, means "default").
MINIMA = {"data.num_images": 1, "data.num_workers": 0, "run.checkpoint_every": 0, "run.keep_every": 0,
          "run.log_every": 1, "model.head_dim": 1, "optim.warmup_epochs": 0, "optim.weight_decay": 0}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def value_problem(cfg: Any) -> str | None:
    """The sentence naming the first bad field of a ``PretrainConfig``, or None when all fit.

    (A sentence, not an exception: this module sits below ``clrbench.config``, which raises it.)
    """
    for key, lo in MINIMA.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is not None and value < lo:
            return f"{key} must be >= {lo}, got {value}."
    if not _DEVICE.fullmatch(cfg.run.device):
        return f"run.device must be auto, cpu, cuda, cuda:N or mps, got {cfg.run.device!r}."
    name = cfg.run.name
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        return f"run.name must be a plain folder name (not empty, hidden or a path), got {name!r}."
    return None

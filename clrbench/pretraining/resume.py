"""Honest resume: a resumed run keeps the math of the run it continues.

Runtime fields (:data:`RUNTIME_FIELDS`: device, precision, logging and checkpoint cadence,
loader workers, where the run lives) may change on ``--resume``; any other change would make
the checkpoint and ``config.yaml`` claim settings its first steps did not use, so it is
refused with one sentence naming the fields.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from clrbench.config import ConfigError, Derived, PretrainConfig, from_dict, to_dict
from clrbench.errors import UserError


class ResumeError(UserError, RuntimeError):
    """A resume that would change the run's math; the message names the fields."""


#: Fields a resumed run may change: they alter how a run is executed and logged, never the
#: numbers it computes (the seed is in ``run`` but drives the data order and augmentation).
RUNTIME_FIELDS = frozenset({"run.name", "run.out", "run.device", "run.checkpoint_every", "run.keep_every",
                            "run.log_every", "run.precision", "run.channels_last",
                            "data.num_workers"})


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def math_changes(saved: dict[str, Any], now: PretrainConfig) -> list[str]:
    """Dotted fields whose value differs between a checkpoint's config and ``now``, ignoring
    :data:`RUNTIME_FIELDS`: a resumed run may change those only.

    The saved config is read through the schema first, so a field added to clrbench since it
    was written compares as its default rather than as a change.
    """
    with contextlib.suppress(ConfigError):  # an older or hand-edited config: compare what it holds
        saved = to_dict(from_dict(PretrainConfig, saved))
    old, new = _flatten(saved), _flatten(to_dict(now))
    return sorted(k for k in old.keys() | new.keys()
                  if k not in RUNTIME_FIELDS and old.get(k, "<unset>") != new.get(k, "<unset>"))


def check_resumable(ckpt: dict[str, Any], cfg: PretrainConfig, d: Derived, path: Path) -> None:
    """Refuse a resume that would change the math of the run in ``path``.

    Runtime fields (device, logging and checkpoint cadence, workers) may change; any other
    change would make the checkpoint and ``config.yaml`` claim settings the first steps did
    not use.
    """
    changed = math_changes(ckpt.get("config") or {}, cfg)
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise ResumeError(f"Cannot resume {path}: this run changes {shown}, which the checkpoint was "
                            "trained with; resume with its settings (config.yaml), or start a new run "
                            "with another run.name or --out.")

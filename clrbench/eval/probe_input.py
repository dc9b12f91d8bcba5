"""Input checks of the linear probe: shapes first, then labels and values.

Every check reads shapes before content and says in one sentence what is wrong (style.md).
"""

from __future__ import annotations

import numpy as np

from clrbench.errors import UserError
from clrbench.eval import metrics


class ProbeInputError(UserError, ValueError):
    """Features or labels that cannot be probed; the message is one sentence naming the problem."""


PROBE_KEYS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
_SPLITS = ("train", "val", "test")


def check_layout(shapes: dict[str, tuple[int, ...]], metric: str) -> None:
    """Shapes and the metric only: no array content is read here."""
    if metric not in metrics.METRICS:
        raise ProbeInputError(f"Unknown metric {metric!r}; use one of {', '.join(metrics.METRICS)}.")
    for s in _SPLITS:
        x, y = shapes[f"{s}_x"], shapes[f"{s}_y"]
        if len(x) != 2 or len(y) not in (1, 2) or x[0] != y[0]:
            raise ProbeInputError(f"{s}_x {x} and {s}_y {y} do not match: expected (n, d) features and n labels.")
        if x[0] == 0:
            raise ProbeInputError(f"{s}_x holds no examples.")
    if len({shapes[f"{s}_x"][1] for s in _SPLITS}) > 1:
        raise ProbeInputError("train_x, val_x and test_x do not match: they must share the feature dimension; got "
                              + ", ".join(str(shapes[f"{s}_x"]) for s in _SPLITS) + ".")
    if len({shapes[f"{s}_y"][1:] for s in _SPLITS}) > 1:
        raise ProbeInputError("train_y, val_y and test_y do not match: all 1-D class indices or all (n, C) 0/1 "
                              "with one C; got " + ", ".join(str(shapes[f"{s}_y"]) for s in _SPLITS) + ".")
    if (metric == "map11") != (len(shapes["train_y"]) == 2):
        want = "(n, C) 0/1 labels" if metric == "map11" else "1-D integer labels"
        raise ProbeInputError(f"metric {metric} needs {want}, but train_y has shape {shapes['train_y']}.")


def check_values(name: str, a: np.ndarray) -> np.ndarray:
    """Content: numeric, finite features; integer class indices or 0/1 columns. Returns a."""
    if name.endswith("_x"):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ProbeInputError(f"{name} is not numeric (dtype {a.dtype}).")
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ProbeInputError(f"{name} holds {bad} NaN or infinite value(s); clean the features first.")
    elif a.ndim == 1:
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)) or (a.size and a.min() < 0):
            raise ProbeInputError(f"{name} must hold non-negative integer class indices (dtype {a.dtype}).")
    elif not np.isin(a, (0, 1)).all():
        raise ProbeInputError(f"{name} must hold only 0 and 1, one column per class.")
    return a


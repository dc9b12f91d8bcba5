"""The grids of the four studies: which trials exist and what each one overrides (pure).

Each grid mirrors a figure or table of S-v1 (Chen et al. 2020, arXiv 2002.05709):

* ``augment``: every single op and every ordered pair of ops, applied after a random crop to
  one branch only (the asymmetric setting of sec. 3 and Fig. 5; the other branch stays the
  crop). Rows are the first op, columns the second, the diagonal the op alone.
* ``temperature``: tau with l2-normalised (cosine) similarities and tau with raw dot products
  (Table 5).
* ``batch-size``: batch size x training epochs (Fig. 9), the learning rate scaled from the
  batch by the recipe's rule (``optim.lr_scaling``, sec. 2.3 / B.1).
* ``head``: no head, a linear head and the nonlinear (v1) head at several output dimensions
  (Fig. 8), each probed on h (before the head) and on g(h) (after it, sec. 4.2).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from clrbench.config import ConfigError

STUDIES = ("augment", "temperature", "batch-size", "head", "label-efficiency")  # the last: clrbench.study.labels

#: Ops of the paper's composition study (Fig. 5), in its order.
PAPER_OPS = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate")

#: The CLI's head names (the paper's words) -> ``model.head`` of the config.
HEAD_KINDS = {"none": "none", "linear": "linear", "nonlinear": "v1", "nonlinear-v2": "v2"}


@dataclass(frozen=True)
class Trial:
    """One grid point: a pretraining run and the feature layers probed after it.

    Attributes:
        study: one of :data:`STUDIES`.
        key: stable, file-name-safe id within the study (``crop+color``, ``tau0.1-l2``).
        point: the grid coordinates, stored in the records' tags (``{"first": "crop", ...}``).
        overrides: dotted ``--set`` overrides applied after the base recipe and the budget.
        layers: ``h`` (encoder features) and/or ``g`` (after the projection head).
    """

    study: str
    key: str
    point: dict[str, Any]
    overrides: tuple[str, ...]
    layers: tuple[str, ...] = ("h",)


def parse_list(text: str, what: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; an empty list or a repeated item is an error."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"--{what} needs at least one value.")
    dupes = sorted({s for s in items if items.count(s) > 1})
    if dupes:
        raise ConfigError(f"--{what} lists {dupes[0]!r} twice.")
    return items


def parse_numbers(text: str, what: str, kind: type = float) -> list[Any]:
    """A comma list of positive numbers (``kind`` float or int)."""
    out = []
    for s in parse_list(text, what):
        try:
            v = kind(s)
        except ValueError:
            raise ConfigError(f"--{what}: {s!r} is not {'an integer' if kind is int else 'a number'}.") from None
        if v <= 0:
            raise ConfigError(f"--{what}: values must be positive, got {s}.")
        out.append(v)
    return out


def _op_yaml(name: str, color_strength: float) -> str:
    # The colour op takes the recipe's strength s: 1.0 for ImageNet, 0.5 for CIFAR (S-v1 B.9).
    if name == "color":
        return f"{{name: color, params: {{strength: {color_strength}}}}}"
    return name


def augment_grid(ops: list[str], color_strength: float = 1.0) -> list[Trial]:
    """Every op alone (diagonal) and every ordered pair (off-diagonal): len(ops)**2 trials.

    Every trial's op list starts with the shared random crop; the targeted ops follow and go
    to view a only (``augment.asymmetric``), so view b is the crop alone (S-v1 sec. 3).

    Raises:
        ConfigError: an unknown op name (with "did you mean").
    """
    from clrbench.registry import did_you_mean
    from clrbench.simclr.augment import OPS

    for name in ops:
        if name not in OPS:
            raise ConfigError(f"Unknown augmentation op {name!r}.{did_you_mean(name, OPS.names())} "
                              f"Known: {', '.join(OPS.names())}.")
    trials = []
    for first, second in itertools.product(ops, ops):
        targeted = [first] if first == second else [first, second]
        op_list = ", ".join(["crop", *(_op_yaml(o, color_strength) for o in targeted)])
        trials.append(Trial(
            study="augment", key=first if first == second else f"{first}+{second}",
            point={"first": first, "second": second, "single": first == second},
            overrides=(f"augment.ops=[{op_list}]", "augment.asymmetric=true"),
        ))
    return trials


def temperature_grid(values: list[float], raw_values: list[float]) -> list[Trial]:
    """tau with cosine similarity (``values``) and with raw dot products (``raw_values``).

    S-v1 Table 5 sweeps 0.05, 0.1, 0.5, 1 with l2 normalisation and 10, 100 without.
    """
    trials = []
    for l2, vals in ((True, values), (False, raw_values)):
        for tau in vals:
            trials.append(Trial(
                study="temperature", key=f"tau{tau:g}-{'l2' if l2 else 'raw'}",
                point={"temperature": float(tau), "l2": l2},
                overrides=(f"loss.temperature={float(tau)!r}", f"loss.normalize={str(l2).lower()}"),
            ))
    return trials


def batch_size_grid(batch_sizes: list[int], epochs: list[float]) -> list[Trial]:
    """Every (batch size, epochs) pair, each a separate run with its own schedule (S-v1 Fig. 9).

    The lr follows the recipe's scaling rule from the global batch; ``optim.steps`` is
    cleared so the epoch count decides the length.
    """
    return [
        Trial(study="batch-size", key=f"b{b}-e{e:g}", point={"batch_size": int(b), "epochs": float(e)},
              overrides=(f"optim.batch_size_global={int(b)}", "optim.steps=null", f"optim.epochs={float(e)!r}"))
        for b, e in itertools.product(batch_sizes, epochs)
    ]


def head_grid(heads: list[str], dims: list[int]) -> list[Trial]:
    """No head once; every other head at every output dimension (S-v1 Fig. 8).

    Each trial is probed on h and, when there is a head, on g(h) too (S-v1 sec. 4.2).

    Raises:
        ConfigError: an unknown head name.
    """
    from clrbench.registry import did_you_mean

    trials = []
    for head in heads:
        if head not in HEAD_KINDS:
            raise ConfigError(f"Unknown head {head!r}.{did_you_mean(head, list(HEAD_KINDS))} "
                              f"Known: {', '.join(HEAD_KINDS)}.")
        if head == "none":  # g is the identity: one trial, and g(h) = h
            trials.append(Trial(study="head", key="none", point={"head": "none", "dim": None},
                                overrides=("model.head=none",)))
            continue
        for d in dims:
            trials.append(Trial(study="head", key=f"{head}-d{int(d)}", point={"head": head, "dim": int(d)},
                                overrides=(f"model.head={HEAD_KINDS[head]}", f"model.head_dim={int(d)}"),
                                layers=("h", "g")))
    return trials

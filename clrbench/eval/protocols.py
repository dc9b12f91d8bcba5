"""Evaluation protocols: how a task is evaluated (linear probe grid, fine-tune grid), as versioned YAML.

A protocol file (``tasks/protocols/<name>.yaml``) names its kind and every figure that can
change a number (protocol.md §2); its version is stored in every record it produces.
Protocols are read once per process (:func:`load_protocol` is cached): the same file is asked
for by planning, every job and every record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clrbench.config import ConfigError, from_dict, read_yaml
from clrbench.data.cards import cards_dir
from clrbench.registry import did_you_mean


@dataclass(frozen=True)
class LinearProtocol:
    name: str
    version: int
    kind: Literal["linear"]
    feature_layer: str = "pooled"  # global average pool of the last stage (S-v1 sec 2.1)
    lambda_min_exp: float = -6.0  # grid 10^(min + step*k), k = 0..num-1 (S-v1 B.8.1)
    lambda_step_exp: float = 0.25
    lambda_num: int = 45
    # L-BFGS stopping rule, scikit-learn's: max |grad of the mean loss| <= tol, at most max_iter
    # iterations per lambda. The papers do not state one; it moves the chosen lambda on hard
    # problems (benchmarks/README.md), so it is part of the protocol and of its version.
    tol: float = 1e-4
    max_iter: int = 1000
    dtype: Literal["float32", "bfloat16"] = "bfloat16"  # dtype of feature extraction compute
    batch_size: int = 256  # images per forward pass during extraction
    resources: dict[str, float] = field(default_factory=dict)  # Ray requests, e.g. {num_gpus: 1}
    notes: str = ""


@dataclass(frozen=True)
class FinetuneProtocol:
    """Fine-tuning of the whole network plus a new linear head (S-v1 B.8.1; protocol.md §2.2).

    Every (lr, wd) pair of the grid is one trial trained on train and scored on val; the best
    pair is retrained on train+val and scored on test. ``wds`` are per-step shrinkages: with
    ``wd_divided_by_lr`` the SGD ``weight_decay`` is wd / lr, so lr * (wd / lr) = wd
    (S-v1 B.8.1 "each value divided by the learning rate"). ``None`` for the three image sizes
    means "the card's preprocessing" (its crop for training and test, its resize for test).
    """

    name: str
    version: int
    kind: Literal["finetune"]
    steps: int = 20000  # S-v1 B.8.1
    batch_size: int = 256  # images per step on the one device a trial runs on (S-v1 B.8.1)
    lrs: tuple[float, ...] = (1e-4, 10**-3.5, 1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1)
    wds: tuple[float, ...] = (0.0, 1e-6, 10**-5.5, 1e-5, 10**-4.5, 1e-4, 10**-3.5, 1e-3)
    wd_divided_by_lr: bool = True  # S-v1 B.8.1: each wd value is divided by the lr
    nesterov_momentum: float = 0.9
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # not in S-v1; K19 / SSLT use cosine
    bn_momentum_rule: Literal["simclr", "torch_default"] = "simclr"  # min(10/s, 0.1)
    train_resize_crop: int | None = 224  # random resized crop (bicubic) + flip, nothing else
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of the crop (torchvision default)
    test_resize: int | None = 256  # bicubic resize of the shorter side, then centre crop
    test_crop: int | None = 224
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast where supported
    checkpoint_every: int = 2000  # steps; a killed trial resumes from here
    seed: int = 0
    resources: dict[str, float] = field(default_factory=dict)  # Ray requests of one trial
    notes: str = ""
    # Decode once: training images are decoded a single time, their shorter side resized to
    # this (never enlarged) and kept as uint8 in a memory-mapped cache from which the random
    # crops are cut (clrbench.eval.finetune.decoded). None: decode the original at every step.
    pre_crop_size: int | None = None

    def __post_init__(self) -> None:
        if self.pre_crop_size is not None and self.pre_crop_size < 1:
            raise ConfigError(f"{self.name}: pre_crop_size must be positive or null.")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError(f"{self.name}: steps, batch_size and checkpoint_every must be positive.")
        if not self.lrs or not self.wds:
            raise ConfigError(f"{self.name}: the lr and wd grids need at least one value each.")
        if any(lr <= 0 for lr in self.lrs) or any(wd < 0 for wd in self.wds):
            raise ConfigError(f"{self.name}: learning rates must be positive and weight decays non-negative.")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"{self.name}: crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}.")
        if (self.test_resize is None) != (self.test_crop is None):
            raise ConfigError(f"{self.name}: set both test_resize and test_crop, or neither (the card's).")


@dataclass(frozen=True)
class FinetuneAshaProtocol(FinetuneProtocol):
    """The same fine-tune grid, searched with ASHA on Ray Tune (clrbench.eval.finetune.asha).

    Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
    Hyperparameter Tuning"): every trial reports its val metric at each rung (steps); one
    whose score is below the top 1/``reduction_factor`` of the scores already seen at that
    rung stops there. The rungs must be geometric with ratio ``reduction_factor`` and end at
    ``steps`` (Ray's ASHAScheduler derives them from the first rung, the ratio and ``steps``).
    The best trial that reached ``steps`` is retrained on train+val exactly as ``finetune``.
    ``resources`` are one trial's Ray requests (``num_gpus: 0.25`` puts four on a GPU).
    """

    kind: Literal["finetune-asha"] = "finetune-asha"  # type: ignore[assignment]
    rungs: tuple[int, ...] = (1250, 5000, 20000)
    reduction_factor: int = 4
    max_concurrent: int = 0  # trials at once; 0: as many as the cluster's resources allow

    def __post_init__(self) -> None:
        super().__post_init__()
        r, f = self.rungs, self.reduction_factor
        if f < 2 or not r or r[-1] != self.steps or any(b != a * f for a, b in zip(r, r[1:], strict=False)):
            raise ConfigError(f"{self.name}: rungs must be geometric with ratio reduction_factor ({f}) and end at "
                              f"steps ({self.steps}), e.g. [1250, 5000, 20000]; got {list(r)}.")
        if self.max_concurrent < 0:
            raise ConfigError(f"{self.name}: max_concurrent must be 0 (no limit) or positive.")


Protocol = LinearProtocol | FinetuneProtocol


def protocols_dir() -> Path:
    return cards_dir() / "protocols"


@functools.lru_cache(maxsize=128)
def load_protocol(name_or_path: str | Path, directory: str | Path | None = None) -> Protocol:
    """A protocol by shipped name (``linear``, ``finetune``, ``finetune-short``) or path."""
    p = Path(name_or_path)
    d = Path(directory) if directory else protocols_dir()
    if not p.exists():
        names = sorted(q.stem for q in d.glob("*.yaml"))
        p = d / f"{name_or_path}.yaml"
        if not p.exists():
            raise ConfigError(
                f"Unknown protocol {str(name_or_path)!r}.{did_you_mean(str(name_or_path), names)} "
                f"Known: {', '.join(names)}."
            )
    data = read_yaml(p)
    kind = data.get("kind")
    cls = {"linear": LinearProtocol, "finetune": FinetuneProtocol,
           "finetune-asha": FinetuneAshaProtocol}.get(str(kind))
    if cls is None:
        raise ConfigError(f"{p.name}: kind must be 'linear', 'finetune' or 'finetune-asha', got {kind!r}.")
    proto: Protocol = from_dict(cls, data)
    return proto

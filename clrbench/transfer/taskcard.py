"""Task cards and evaluation protocols: versioned YAML, loaded strictly, validated, registered.

A task card holds the facts of one dataset (source, classes, splits, metric, expected sizes,
preprocessing; protocol.md §1); a protocol holds how it is evaluated (linear probe grid,
fine-tune grid; protocol.md §2). A job is (checkpoint x card x protocol) and its record stores
both versions. Anything that can change a number bumps the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clrbench.config import ConfigError, assets_dir, from_dict, read_yaml
from clrbench.registry import did_you_mean

METRICS = ("top1", "mean_per_class", "map11")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    loader: str  # key in clrbench.transfer.datasets.LOADERS
    args: dict[str, Any] = field(default_factory=dict)
    hf_id: str | None = None  # an alternative Hugging Face hub copy whose splits match
    root_dir: str | None = None  # folder under the data root the loader reads


@dataclass(frozen=True)
class SplitSpec:
    """How one of train / val / test is obtained.

    Either an official split of the source (``source``), or carved from another split
    (``carve_from``) by a stratified random draw of ``per_class`` images per class, a
    ``fraction`` of each class, or ``size`` images in all, with a fixed ``seed``.
    The split carved from loses the carved images.
    """

    source: str | None = None
    carve_from: str | None = None
    per_class: int | None = None
    fraction: float | None = None
    size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.source is None) == (self.carve_from is None):
            raise ConfigError("a split needs exactly one of 'source' or 'carve_from'.")
        rules = [r for r in (self.per_class, self.fraction, self.size) if r is not None]
        if self.carve_from is not None and len(rules) != 1:
            raise ConfigError("a carved split needs exactly one of per_class, fraction or size.")
        if self.fraction is not None and not 0 < self.fraction < 1:
            raise ConfigError(f"split fraction must be in (0, 1), got {self.fraction}.")


@dataclass(frozen=True)
class Preprocessing:
    resize: int = 224  # shorter side, bicubic (S-v1 B.8.1)
    crop: int = 224  # centre crop
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"


@dataclass(frozen=True)
class TaskCard:
    name: str
    version: int
    title: str
    citation: str
    source: Source
    num_classes: int
    metric: Literal["top1", "mean_per_class", "map11"]
    splits: dict[str, SplitSpec]
    expected_sizes: dict[str, int]
    homepage: str = ""
    multilabel: bool = False
    classes: tuple[str, ...] = ()
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    groups: tuple[str, ...] = ()  # task groups the card belongs to: quick, all
    notes: str = ""

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ConfigError(f"{self.name}: version must be a positive integer.")
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ConfigError(f"{self.name}: splits lacks {', '.join(missing)}.")
        extra = [s for s in self.splits if s not in SPLITS]
        if extra:
            raise ConfigError(f"{self.name}: unknown split(s) {', '.join(extra)}.")
        if self.multilabel != (self.metric == "map11"):
            raise ConfigError(f"{self.name}: map11 goes with multilabel: true, and only with it.")
        if self.classes and len(self.classes) != self.num_classes:
            raise ConfigError(
                f"{self.name}: {len(self.classes)} class names for num_classes={self.num_classes}."
            )
        for s in SPLITS:
            if s not in self.expected_sizes:
                raise ConfigError(f"{self.name}: expected_sizes lacks {s}.")


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

    def __post_init__(self) -> None:
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


Protocol = LinearProtocol | FinetuneProtocol


def cards_dir() -> Path:
    return assets_dir() / "tasks"


def load_card(path: str | Path) -> TaskCard:
    """Load and validate one card; errors name the file and the key."""
    p = Path(path)
    data = read_yaml(p)
    try:
        card: TaskCard = from_dict(TaskCard, data)
    except ConfigError as e:
        raise ConfigError(f"{p.name}: {e}") from None
    if card.name != p.stem:
        raise ConfigError(f"{p.name}: name {card.name!r} differs from the file name.")
    return card


def load_cards(directory: str | Path | None = None) -> dict[str, TaskCard]:
    """All cards of a folder (default: the shipped ones), by name."""
    d = Path(directory) if directory else cards_dir()
    return {c.name: c for c in (load_card(p) for p in sorted(d.glob("*.yaml")))}


def load_protocol(name_or_path: str | Path, directory: str | Path | None = None) -> Protocol:
    """A protocol by shipped name (``linear``, ``finetune``, ``finetune-short``) or path."""
    p = Path(name_or_path)
    d = Path(directory) if directory else cards_dir() / "protocols"
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
    cls = {"linear": LinearProtocol, "finetune": FinetuneProtocol}.get(str(kind))
    if cls is None:
        raise ConfigError(f"{p.name}: kind must be 'linear' or 'finetune', got {kind!r}.")
    proto: Protocol = from_dict(cls, data)
    return proto


def select_tasks(spec: str, cards: dict[str, TaskCard]) -> list[TaskCard]:
    """Resolve ``quick`` | ``all`` | ``a,b`` to cards; an unknown name suggests close ones."""
    out: list[TaskCard] = []
    for part in [s.strip() for s in spec.split(",") if s.strip()]:
        group = [c for c in cards.values() if part in c.groups]
        if group:
            out.extend(group)
        elif part in cards:
            out.append(cards[part])
        else:
            names = sorted(cards) + sorted({g for c in cards.values() for g in c.groups})
            raise ConfigError(
                f"Unknown task {part!r}.{did_you_mean(part, names)} "
                "See `clrbench tasks ls` for the list."
            )
    seen: dict[str, TaskCard] = {}
    for c in out:
        seen.setdefault(c.name, c)
    if not seen:
        raise ConfigError(f"No task selected by {spec!r}.")
    return list(seen.values())

"""Task cards: versioned YAML, loaded strictly, validated, selected by name or group.

A task card holds the facts of one dataset (source, classes, splits, metric, expected sizes,
preprocessing; protocol.md §1); how it is evaluated is a protocol
(:mod:`clrbench.eval.protocols`). A job is (checkpoint x card x protocol) and its record
stores both versions. Anything that can change a number bumps the version.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clrbench.config import ConfigError, assets_dir, from_dict, read_yaml
from clrbench.registry import did_you_mean

METRICS = ("top1", "mean_per_class", "map11")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class HubSource:
    """A copy of the dataset on the Hugging Face hub (or a local folder in the hub layout).

    ``splits`` maps each *source* split the card names (``train``, ``test``, ``trainval``...)
    to a hub split or split expression (``validation``, ``train+validation``); val is then
    carved exactly as for the files. ``label_map`` renames hub label names onto the card's
    classes. ``reproduces`` says whether the copy gives the protocol's splits image for image;
    ``differences`` says what differs when it does not.
    """

    id: str
    splits: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    revision: str | None = None
    image: str = "image"
    label: str = "label"
    label_map: dict[str, str] = field(default_factory=dict)
    reproduces: bool = False
    differences: str = ""


@dataclass(frozen=True)
class Source:
    loader: str  # key in clrbench.data.images.LOADERS
    args: dict[str, Any] = field(default_factory=dict)
    hf_id: str | None = None  # an alternative Hugging Face hub copy whose splits match
    root_dir: str | None = None  # folder under the data root the loader reads
    hub: HubSource | None = None  # the hub copy `clrbench eval --source hf` reads


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
    order: int = 1000  # column on boards (K19 Table 1's order for the twelve); ties by name
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


def cards_dir() -> Path:
    return assets_dir() / "tasks"


def load_card(path: str | Path) -> TaskCard:
    """Load and validate one card; errors name the file and the key."""
    p = Path(path)
    return card_from_data(read_yaml(p), p)


def card_from_data(data: dict[str, Any], p: Path) -> TaskCard:
    """Validate the parsed card file ``p``; errors name the file and the key."""
    try:
        card: TaskCard = from_dict(TaskCard, data)
    except ConfigError as e:
        raise ConfigError(f"{p.name}: {e}") from None
    if card.name != p.stem:
        raise ConfigError(f"{p.name}: name {card.name!r} differs from the file name.")
    return card


def load_cards(directory: str | Path | None = None) -> dict[str, TaskCard]:
    """All cards of a folder (default: the shipped ones), by name; read once per process."""
    return dict(_load_cards(str(Path(directory) if directory else cards_dir())))


@functools.lru_cache(maxsize=16)
def _load_cards(directory: str) -> tuple[tuple[str, TaskCard], ...]:
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"The task-card folder {d} does not exist.")
    return tuple((c.name, c) for c in (load_card(p) for p in sorted(d.glob("*.yaml"))))


def task_order(names: Iterable[str], cards: dict[str, TaskCard] | None = None) -> list[str]:
    """``names`` (without repeats) in board order: the cards' ``order``; ties keep the order given."""
    cards = load_cards() if cards is None else cards
    return sorted(dict.fromkeys(names), key=lambda t: cards[t].order if t in cards else 1000)


def transfer_tasks() -> tuple[str, ...]:
    """The twelve tasks of Kornblith et al. 2019 (the group ``all``), in board order."""
    cards = load_cards()
    return tuple(task_order([c.name for c in cards.values() if "all" in c.groups], cards))


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

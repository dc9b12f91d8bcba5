"""Frozen configuration dataclasses, strict YAML loading and dotted ``--set`` overrides.

Every recipe maps one-to-one onto :class:`PretrainConfig`. Unknown keys and wrong types are
errors that name the key (``ConfigError``). Derived values (effective learning rate, steps per
epoch, warmup steps) are computed by :func:`derive`, logged, and never written back.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clrbench.errors import UserError


class ConfigError(UserError, ValueError):
    """A recipe or override that does not fit the schema; the message names the key."""


# ----------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "resnet18"  # resnet18/34/50/101/152
    width: float = 1.0  # channel multiplier of every layer (SimCLR's 1x/2x/4x; 0.25 for CPU)
    stem: Literal["imagenet", "cifar"] = "imagenet"  # cifar: 3x3 stride-1 conv, no max-pool (S-v1 B.9)
    head: Literal["none", "linear", "v1", "v2"] = "v1"  # projection head g (S-v1 Fig. 8; S-v2)
    head_dim: int = 128  # output dimension of g
    head_hidden_dim: int | None = None  # hidden width of g; None = the encoder's feature dim
    global_bn: bool | None = None  # BN statistics over all processes; None = on when world > 1

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise ConfigError(f"model.width must be positive, got {self.width}.")
        if self.head_dim < 1:
            raise ConfigError(f"model.head_dim must be >= 1, got {self.head_dim}.")


@dataclass(frozen=True)
class AugmentOp:
    """One named, parameterised augmentation op (see clrbench.simclr.augment.OPS)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AugmentConfig:
    image_size: int = 32  # side of each view in pixels
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of the random resized crop
    flip: bool = True  # horizontal flip with p 0.5
    color_strength: float = 1.0  # s of S-v1 App. A; 0.5 for CIFAR (B.9); 0 disables jitter
    color_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5  # Gaussian blur, kernel 10% of the side, sigma U(0.1, 2); 0 for CIFAR
    ops: tuple[AugmentOp, ...] = ()  # explicit op list; when set it replaces the preset above
    asymmetric: bool = False  # ops after the crop go to view a only; view b stays the crop (S-v1 Fig. 5)
    backend: Literal["auto", "kornia", "torchvision"] = "auto"  # auto: batched kornia <= 64 px

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ConfigError(f"augment.image_size must be >= 8, got {self.image_size}.")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"augment.crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}.")


@dataclass(frozen=True)
class DataConfig:
    source: Literal["embedded", "folder", "hf", "cifar10", "cifar100", "stl10"] = "embedded"
    path: str | None = None  # image folder, HF hub id / local dataset path, or torchvision root
    split: str = "train"  # split of an HF dataset or torchvision dataset
    image_key: str | None = None  # HF column holding the image (auto-detected when None)
    label_key: str | None = None  # HF column holding the label, for the online probe
    num_images: int | None = None  # use only the first N images (quick experiments)
    num_workers: int = 2  # DataLoader workers decoding images


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["lars", "sgd"] = "lars"
    lr_base: float = 0.3  # lr = lr_base * B/256 (linear) or lr_base * sqrt(B) (sqrt), S-v1 B.1
    lr_scaling: Literal["linear", "sqrt"] = "linear"
    weight_decay: float = 1e-6  # S-v1 sec 2.3; 1e-4 in the v2-era code
    momentum: float = 0.9
    eta: float = 0.001  # LARS trust coefficient
    batch_size_global: int = 256  # images (not views) per step summed over all processes
    epochs: float = 100
    steps: int | None = None  # total steps; overrides epochs when set
    warmup_epochs: float = 10

    def __post_init__(self) -> None:
        if self.batch_size_global < 2:
            raise ConfigError(
                f"optim.batch_size_global must be >= 2 (NT-Xent needs negatives), got {self.batch_size_global}."
            )
        if self.epochs <= 0 and self.steps is None:
            raise ConfigError("optim.epochs must be positive (or set optim.steps).")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"optim.steps must be >= 1, got {self.steps}.")
        if self.lr_base <= 0:
            raise ConfigError(f"optim.lr_base must be positive, got {self.lr_base}.")


@dataclass(frozen=True)
class LossConfig:
    temperature: float = 0.1  # tau of NT-Xent (S-v1 Table 5); 0.5 for CIFAR
    normalize: bool = True  # cosine similarity; False = raw dot product (S-v1 Table 5)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"loss.temperature must be positive, got {self.temperature}.")


@dataclass(frozen=True)
class RunConfig:
    name: str = "simclr"  # run folder name under out
    out: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast where supported
    channels_last: bool = True
    checkpoint_every: int = 0  # steps between checkpoints; 0 = once per epoch and at the end
    keep_every: int = 0  # also keep every K-th checkpoint as step_XXXXXX.pt; 0 = last only
    log_every: int = 10  # steps between metrics.jsonl lines
    online_probe: bool = True  # linear head on detached h when the source has labels (health signal)


@dataclass(frozen=True)
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ----------------------------------------------------------------------------- derived


@dataclass(frozen=True)
class Derived:
    """Values computed from a config and the data size; logged, never written back."""

    world_size: int
    batch_size_global: int
    batch_size_per_device: int
    num_images: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    lr: float  # peak learning rate after scaling


def derive(cfg: PretrainConfig, num_images: int, world_size: int = 1) -> Derived:
    """Compute the derived training quantities (S-v1 sec 2.3 and B.1; GR model_util).

    Raises:
        ConfigError: the global batch does not split evenly, or exceeds the data.
    """
    b = cfg.optim.batch_size_global
    if b % world_size:
        raise ConfigError(
            f"optim.batch_size_global={b} is not divisible by the world size {world_size}; "
            f"choose a multiple of {world_size}."
        )
    if num_images < b:
        raise ConfigError(
            f"optim.batch_size_global={b} is larger than the {num_images} training images; "
            "lower it with --batch-size."
        )
    steps_per_epoch = num_images // b  # the last partial batch is dropped (BN, equal shards)
    total = cfg.optim.steps if cfg.optim.steps is not None else max(1, math.ceil(cfg.optim.epochs * steps_per_epoch))
    warmup = min(total, round(cfg.optim.warmup_epochs * steps_per_epoch))
    lr = cfg.optim.lr_base * b / 256 if cfg.optim.lr_scaling == "linear" else cfg.optim.lr_base * math.sqrt(b)
    return Derived(
        world_size=world_size,
        batch_size_global=b,
        batch_size_per_device=b // world_size,
        num_images=num_images,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=warmup,
        lr=lr,
    )


# ----------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the field's type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}.")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {choices}.")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}.")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}.")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if tp is AugmentOp and isinstance(value, str):
            return AugmentOp(name=value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}.")
        return from_dict(tp, value, prefix=key)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; users write it so
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}.")
        return value
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}.")  # pragma: no cover


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, strictly.

    Raises:
        ConfigError: an unknown key (with "did you mean"), a wrong type, or a bad value.
    """
    from clrbench.registry import did_you_mean

    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"Unknown key {dotted!r}.{did_you_mean(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        missing = str(e).split("argument", 1)[-1].strip(": ")
        raise ConfigError(f"{prefix or cls.__name__}: missing required field {missing}.") from None
    except ConfigError as e:  # raised by __post_init__: say where
        if prefix and not str(e).startswith(prefix):
            raise ConfigError(f"{prefix}: {e}") from None
        raise


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML-able nested dict (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key.sub=value.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"Override {text!r} has an empty key.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def merge_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a nested mapping (a new mapping; the input is untouched)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"Override {text!r}: {part!r} is not a section.")
            node = child
        node[path[-1]] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an unreadable or non-mapping file is a ConfigError."""
    p = Path(path)
    try:
        # libyaml's loader where PyYAML has it: cards, protocols and reference rows are read on
        # every command, and the pure-Python one is most of a no-op rerun's time.
        data = yaml.load(p.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise ConfigError(f"No such file: {p}.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Cannot read {p}: {e}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of sections, not {type(data).__name__}.")
    return data


def load_pretrain_config(
    recipe: str | Path | None = None, overrides: list[str] | None = None
) -> PretrainConfig:
    """Load a recipe (a path, or the name of a shipped recipe) and apply ``--set`` overrides."""
    data: dict[str, Any] = {}
    if recipe is not None:
        data = read_yaml(resolve_recipe(recipe))
    from clrbench.config_checks import value_problem

    cfg = from_dict(PretrainConfig, merge_overrides(data, overrides or []))
    if problem := value_problem(cfg):
        raise ConfigError(problem)
    return cfg


def assets_dir() -> Path:
    """Folder of the data shipped inside the package (recipes, task cards, references)."""
    return Path(__file__).parent / "assets"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in (assets_dir() / "pretrain").glob("*.yaml"))


def resolve_recipe(recipe: str | Path) -> Path:
    """A path that exists, else a shipped recipe name (``cifar10-r18``)."""
    from clrbench.registry import did_you_mean

    p = Path(recipe)
    if p.exists():
        return p
    shipped = assets_dir() / "pretrain" / f"{p.stem}.yaml"
    if p.suffix in ("", ".yaml") and p.parent in (Path("."), Path("pretrain")) and shipped.exists():
        return shipped
    names = recipe_names()
    raise ConfigError(
        f"No recipe {str(recipe)!r}: not a file, nor a shipped recipe.{did_you_mean(p.stem, names)} "
        f"Shipped: {', '.join(names)}."
    )

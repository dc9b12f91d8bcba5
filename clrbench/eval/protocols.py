"""Evaluation protocols: how a task is evaluated (linear probe grid, fine-tune grid), as versioned YAML.

A protocol file (``tasks/protocols/<name>.yaml``) names its kind and every figure that can
change a number (protocol.md §2); its version is stored in every record it produces.
Protocols are read once per process (:func:`load_protocol` is cached): the same file is asked
for by planning, every job and every record.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clrbench.config import ConfigError, from_dict, read_yaml
from clrbench.data.cards import cards_dir
from clrbench.registry import did_you_mean


@dataclass(frozen=True)
class LinearProtocol:
    name: str
    version: int
    kind: Literal["linear"]
    # pooled (= encoder): global average pool of the last stage (S-v1 sec 2.1); head:k: the
    # k-th projection-head layer (S-v2 sec 2; clrbench.weights.layers)
    feature_layer: str = "pooled"
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
    # Version 2 (linear-v2.yaml; clrbench.eval.probe_path): "gradient" is v1's rule above;
    # "path-free" makes the chosen lambda and test score independent of the solver's path.
    stopping: Literal["gradient", "path-free"] = "gradient"
    condition_max: float = 1e5  # version 2's floor: lambda >= h0 * e_max / condition_max
    # Pixels the card's preprocessing is scaled to (protocol variant NAME@<R>px); None: the card's.
    resolution: int | None = None
    # SimCLRv2's label fractions (linear-1pct, linear-10pct): fit on this share of each class of
    # train (clrbench.data.subsets, the semi protocols' draw), lambda still chosen on val, and no
    # refit on train+val, which would add val's labels.
    label_fraction: float | None = None
    subset_seed: int = 0

    def __post_init__(self) -> None:
        _check_layer(self.name, self.feature_layer)
        if self.label_fraction is not None and not 0 < self.label_fraction <= 1:
            raise ConfigError(f"{self.name}: label_fraction must be in (0, 1], got {self.label_fraction}.")


@dataclass(frozen=True)
class KnnProtocol:
    """Weighted k-nearest-neighbour classification on L2-normalised frozen features.

    Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
    CVPR 2018 (sec. 3.4) and Caron et al., "Emerging Properties in Self-Supervised Vision
    Transformers" (DINO), ICCV 2021 (``eval_knn.py``): cosine similarity, the k most similar
    training images vote for their class with weight exp(similarity / temperature).
    """

    name: str
    version: int
    kind: Literal["knn"]
    k: int = 20
    temperature: float = 0.07
    weighting: Literal["exp", "uniform"] = "exp"  # uniform: one vote per neighbour (scikit-learn's)
    k_grid: tuple[int, ...] = ()  # non-empty: k chosen on val from these (ties: the smaller k)
    feature_layer: str = "pooled"
    dtype: Literal["float32", "bfloat16"] = "bfloat16"  # as linear.yaml, so the cached features are shared
    batch_size: int = 256
    query_batch: int = 1024  # query rows per similarity matmul
    resources: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    resolution: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or any(k < 1 for k in self.k_grid) or self.temperature <= 0 or self.query_batch < 1:
            raise ConfigError(f"{self.name}: k, every k_grid entry and query_batch must be positive, "
                              "and temperature above 0.")
        _check_layer(self.name, self.feature_layer)


@dataclass(frozen=True)
class FewshotProtocol:
    """k labelled images per class from train, the linear probe, the full test split; several draws.

    CLIP_benchmark's ``--fewshot_k`` (LAION-AI/CLIP_benchmark) and VTAB's low-data regime
    (Zhai et al. 2019): the k-shot set is a seeded draw, repeated ``draws`` times, and the record
    reports the mean and the spread over draws. lambda is chosen by ``cv_folds``-fold
    cross-validation inside the k-shot set (``lambda_rule: cv``; k = 1 leaves no held-out image of
    a class, so it falls back to ``lambda_fixed``) or fixed at ``lambda_fixed``.
    """

    name: str
    version: int
    kind: Literal["fewshot"]
    k: int = 5
    draws: int = 5
    seed: int = 0
    lambda_rule: Literal["cv", "fixed"] = "cv"
    lambda_fixed: float = 1.0  # on the summed loss, as the linear protocol's grid
    cv_folds: int = 5
    lambda_min_exp: float = -6.0
    lambda_step_exp: float = 0.25
    lambda_num: int = 45
    tol: float = 1e-4
    max_iter: int = 1000
    stopping: Literal["gradient", "path-free"] = "path-free"
    condition_max: float = 1e5
    feature_layer: str = "pooled"
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    batch_size: int = 256
    resources: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    resolution: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.draws < 1 or self.cv_folds < 2 or self.lambda_fixed <= 0:
            raise ConfigError(f"{self.name}: k and draws must be positive, cv_folds at least 2, lambda_fixed above 0.")
        _check_layer(self.name, self.feature_layer)


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
    feature_layer: str = "encoder"  # where the new linear head goes: encoder (S-v1 B.8.1) or head:k (S-v2)
    # Decode once: training images are decoded a single time, their shorter side resized to
    # this (never enlarged) and kept as uint8 in a memory-mapped cache from which the random
    # crops are cut (clrbench.eval.finetune.decoded). None: decode the original at every step.
    pre_crop_size: int | None = None

    def __post_init__(self) -> None:
        _check_layer(self.name, self.feature_layer)
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
        if f < 2 or not r or r[-1] != self.steps or any(b != a * f for a, b in itertools.pairwise(r)):
            raise ConfigError(f"{self.name}: rungs must be geometric with ratio reduction_factor ({f}) and end at "
                              f"steps ({self.steps}), e.g. [1250, 5000, 20000]; got {list(r)}.")
        if self.max_concurrent < 0:
            raise ConfigError(f"{self.name}: max_concurrent must be 0 (no limit) or positive.")


def _check_layer(name: str, layer: str, allow_auto: bool = False) -> None:
    from clrbench.weights.layers import FeatureLayerError, parse_feature_layer

    if allow_auto and layer == "auto":
        return
    try:
        parse_feature_layer(layer)
    except FeatureLayerError as e:
        raise ConfigError(f"{name}: {e}") from None


@dataclass(frozen=True)
class SemiProtocol:
    """Fine-tuning on a few labels, as SimCLRv2 does (S-v2 sec 2 and 3; GR README "Semi-supervised
    learning and fine-tuning the whole network").

    The labelled set is a class-balanced, seeded subset of the task's train split: a
    ``fraction`` of each class (at least one image per class), ``per_class`` images per class,
    or the image names listed in ``subset_file`` (the fixed ImageNet 1% / 10% lists). The whole
    network is fine-tuned from ``feature_layer`` (``auto``: ``head:1`` when the checkpoint has
    a 3-layer v2 head, else the encoder) plus a zero-initialised linear head; no weight decay,
    no warmup, cosine decay, random crop + flip only. Each learning rate of ``lr_bases`` is
    one trial scored on val; the best trial's weights are scored on test (no retrain: adding
    val would change the label fraction) and kept, content-addressed, for ``clrbench distill``.
    """

    name: str
    version: int
    kind: Literal["semi"]
    fraction: float | None = None  # share of each class's train images, e.g. 0.1
    per_class: int | None = None  # or a fixed number of labelled images per class
    subset_file: str | None = None  # or a file of train image names, one per line (ImageNet 1%/10%)
    subset_seed: int = 0
    feature_layer: str = "auto"
    optimizer: Literal["lars", "sgd"] = "lars"  # GR README: --optimizer=lars
    lr_bases: tuple[float, ...] = (0.005,)  # lr = lr_base * sqrt(batch) (GR README: 0.005 -> 0.16 at 1024)
    lr_scaling: Literal["sqrt", "linear"] = "sqrt"  # linear: lr_base * batch / 256
    momentum: float = 0.9
    epochs: float = 30.0  # S-v2 sec 3: 60 epochs for 1% of the labels, 30 for 10%
    batch_size: int = 1024  # S-v2 sec 3 / GR README: --train_batch_size=1024
    bn_momentum_rule: Literal["simclr", "torch_default"] = "torch_default"  # GR batch_norm_decay 0.9
    train_resize_crop: int | None = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    test_resize: int | None = 256
    test_crop: int | None = 224
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    checkpoint_every: int = 2000
    seed: int = 0
    resources: dict[str, float] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        chosen = [k for k in ("fraction", "per_class", "subset_file") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ConfigError(f"{self.name}: set exactly one of fraction, per_class and subset_file "
                              f"(got {', '.join(chosen) or 'none'}).")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"{self.name}: fraction must be in (0, 1], got {self.fraction}.")
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"{self.name}: per_class must be >= 1, got {self.per_class}.")
        if not self.lr_bases or any(lr <= 0 for lr in self.lr_bases):
            raise ConfigError(f"{self.name}: lr_bases needs at least one positive learning rate.")
        if self.epochs <= 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError(f"{self.name}: epochs, batch_size and checkpoint_every must be positive.")
        _check_layer(self.name, self.feature_layer, allow_auto=True)


Protocol = LinearProtocol | KnnProtocol | FewshotProtocol | FinetuneProtocol | FinetuneAshaProtocol | SemiProtocol
_KINDS: dict[str, type] = {"linear": LinearProtocol, "knn": KnnProtocol, "fewshot": FewshotProtocol,
                           "finetune": FinetuneProtocol, "finetune-asha": FinetuneAshaProtocol, "semi": SemiProtocol}


def protocols_dir() -> Path:
    return cards_dir() / "protocols"


@functools.lru_cache(maxsize=128)
def load_protocol(name_or_path: str | Path, directory: str | Path | None = None) -> Protocol:
    """A protocol by shipped name (``linear``, ``finetune``, ``knn``, ...) or path, or a variant.

    Variants (:mod:`clrbench.eval.variants`): ``fewshot-10`` is ``fewshot`` with k = 10;
    ``linear@32px`` is ``linear`` on images scaled to 32 px. Each records under its own name, so
    the board never puts two k or two resolutions in one column.
    """
    from clrbench.eval.variants import load_variant

    variant = load_variant(str(name_or_path), directory, _load_file)
    return variant if variant is not None else _load_file(name_or_path, directory)


def _load_file(name_or_path: str | Path, directory: str | Path | None = None) -> Protocol:
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
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ConfigError(f"{p.name}: kind must be one of {', '.join(_KINDS)}, got {kind!r}.")
    proto: Protocol = from_dict(cls, data)
    return proto


def with_feature_layer(spec: str, layer: str, directory: str | Path) -> str:
    """The protocol ``spec`` with its feature layer replaced (``clrbench eval --feature-layer``).

    Returns ``spec`` unchanged when the protocol already reads ``layer``; otherwise writes a
    derived protocol file ``<directory>/protocols/<name>-<layer>.yaml`` (name e.g.
    ``linear-head1``, so its records never overwrite the default layer's) and returns its path.

    Raises:
        ConfigError: a malformed layer.
    """
    from clrbench.weights.layers import FeatureLayerError, canonical

    proto = load_protocol(spec)
    try:
        want = canonical(layer)
    except FeatureLayerError as e:
        raise ConfigError(f"--feature-layer: {e}") from None
    if proto.feature_layer != "auto" and canonical(proto.feature_layer) == want:
        return spec
    suffix = "encoder" if want == "pooled" else want.replace(":", "")
    return write_derived(proto, f"{proto.name}-{suffix}", {"feature_layer": layer}, directory,
                         f"{proto.name} with feature_layer {layer} (clrbench eval --feature-layer).")


def write_derived(proto: Protocol, name: str, changes: dict[str, Any], directory: str | Path, notes: str) -> str:
    """Write ``<directory>/protocols/<name>.yaml``: ``proto`` with ``changes`` under its own
    ``name`` (so its records never overwrite the original's); returns the path. The file is
    rewritten only when its text changes, and checked by loading it, so a bad change fails here.

    Raises:
        ConfigError: ``changes`` make an invalid protocol.
    """
    import yaml

    from clrbench.atomic import write_bytes
    from clrbench.config import to_dict

    data = {**to_dict(proto), **changes, "name": name, "notes": notes}
    out = Path(directory) / "protocols" / f"{name}.yaml"
    text = yaml.safe_dump(data, sort_keys=False)
    if not out.exists() or out.read_text() != text:
        write_bytes(out, text.encode())
    load_protocol(str(out))
    return str(out)


def check_layer_for(checkpoints: list[str], layer: str) -> None:
    """Refuse, before any job runs, a feature layer one of ``checkpoints`` does not have.

    Raises:
        FeatureLayerError: naming the checkpoint and the layers it has.
    """
    from clrbench.weights.adapters import load_encoder
    from clrbench.weights.layers import at_layer

    for spec in checkpoints:
        at_layer(load_encoder(spec), layer)

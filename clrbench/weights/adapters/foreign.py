"""Encoders trained elsewhere: torchvision, the official SimCLR v1/v2 weights, lightly, solo-learn.

Each adapter maps its layout onto torchvision ResNet keys, infers arch/width/stem from shapes
(:func:`infer_architecture`), drops only the heads it knows (classifier ``fc``, projection
heads, momentum copies) and loads the rest strictly. What each records about its inputs:

====================  ===========  ==========================================================
adapter               range        normalisation (why)
====================  ===========  ==========================================================
torchvision           [0, 1]       ImageNet mean/std (torchvision's weights transforms)
simclr-v1, simclr-v2  [0, 1]       **none**: the TF pipeline only converts to float (GR
                                   ``data_util.preprocess_image``; SSLT ``--no-norm``).
                                   Normalising them anyway gives near-random features.
lightly               [0, 1]       ImageNet mean/std (lightly's transforms' default)
solo-learn            [0, 1]       ImageNet mean/std; CIFAR-10's for a CIFAR-stem backbone
====================  ===========  ==========================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from clrbench.weights.adapters.core import (
    ADAPTERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AdapterError,
    Encoder,
    build_strict,
    infer_architecture,
    is_torchvision_layout,
    run_name,
    strip_prefix,
    weights_sha256,
)
from clrbench.weights.adapters.native import file_of
from clrbench.weights.adapters.reading import read_checkpoint
from clrbench.weights.checkpoint import CheckpointError

# solo-learn's CIFAR statistics (solo/data/pretrain_dataloader.py MEANS_N_STD["cifar10"]).
_CIFAR10_MEAN, _CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def _encoder(state: dict[str, torch.Tensor], adapter: str, path: Path, spec_id: str | None = None,
             mean: list[float] | None = None, std: list[float] | None = None,
             extra: dict[str, Any] | None = None) -> Encoder:
    """Infer the architecture, load strictly, and wrap with the input convention given."""
    arch, width, stem = infer_architecture(state, adapter)
    meta: dict[str, Any] = {"arch": arch, "width": width, "stem": stem, "feature_dim": 0,
                            "input_range": [0.0, 1.0], "mean": mean, "std": std,
                            "resolution": training_resolution(adapter, stem), **(extra or {})}
    module = build_strict(meta, state, adapter, str(path))
    sha = weights_sha256(state, meta)
    return Encoder(module, meta, f"{spec_id or run_name(path)}-{sha[:8]}", sha, adapter, str(path))


def training_resolution(adapter: str, stem: str) -> int | None:
    """The side (px) the weights were trained at, where the source says it, else None.

    torchvision's ImageNet weights and the official SimCLR v1/v2 ResNets: 224 (random resized
    crops of 224, S-v1 sec. 2 / B.9). solo-learn and lightly CIFAR-stem backbones: 32 (their
    CIFAR recipes); an ImageNet-stem solo-learn backbone: 224 (its ImageNet recipes). An
    ImageNet-stem lightly backbone is left unknown: lightly's benchmarks train at 64-224 px.
    """
    if stem == "cifar" and adapter in ("solo-learn", "lightly"):
        return 32
    return 224 if adapter in ("torchvision", "simclr-v1", "simclr-v2", "solo-learn") else None


def _without(state: dict[str, torch.Tensor], *prefixes: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


# --- torchvision -----------------------------------------------------------------------------

def torchvision_state(obj: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """torchvision ResNet keys, bare or under DataParallel's ``module.``, at the top level or in
    a ``state_dict`` entry (pytorch/examples' ImageNet checkpoints); else None."""
    if is_torchvision_layout(obj):
        return obj
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        inner = strip_prefix(obj, "module.")
        return inner if is_torchvision_layout(inner) else None
    wrapped = obj.get("state_dict")
    return torchvision_state(wrapped) if isinstance(wrapped, dict) and wrapped is not obj else None


def hub_weights(arch: str) -> Path:
    """torchvision's ImageNet weights for ``arch`` in the local torch hub cache (never downloads)."""
    import torchvision

    try:
        weights = list(torchvision.models.get_model_weights(arch))
    except (ValueError, KeyError):
        raise AdapterError(f"torchvision has no model {arch!r}; use resnet18/34/50/101/152.") from None
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for w in sorted(weights, key=lambda w: w is not w.__class__.DEFAULT):  # DEFAULT first
        path = cache / w.url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
    raise CheckpointError(
        f"torchvision's ImageNet weights for {arch} are not in {cache}; fetch them once with "
        f"python -c \"import torchvision; torchvision.models.{arch}(weights='DEFAULT')\"."
    )


@ADAPTERS.register("torchvision")
def _torchvision(spec: str) -> Encoder:
    """``torchvision:<arch>`` (hub cache) or a torchvision ResNet state-dict file (.pt/.pth)."""
    body = spec.split(":", 1)[1] if spec.startswith("torchvision:") and not Path(spec).exists() else spec
    named = not Path(body).exists() and "/" not in body and not body.endswith((".pt", ".pth"))
    path = hub_weights(body) if named else Path(body)
    state = torchvision_state(read_checkpoint(path))
    if state is None:
        raise AdapterError(f"The torchvision adapter found no torchvision ResNet keys in {path}.")
    return _encoder(_without(state, "fc."), "torchvision", path, f"torchvision-{body}" if named else None,
                    IMAGENET_MEAN, IMAGENET_STD)


# --- official SimCLR weights, converted from TensorFlow ----------------------------------------

def is_simclr_v1(obj: dict[str, Any]) -> bool:
    """tonylins/simclr-converter writes exactly ``{'state_dict': <torchvision-named ResNet-50>}``."""
    return set(obj) == {"state_dict"} and isinstance(obj["state_dict"], dict) \
        and is_torchvision_layout(obj["state_dict"])


@ADAPTERS.register("simclr-v1")
def _simclr_v1(spec: str) -> Encoder:
    """SimCLR v1 ResNet-50 (1x/2x/4x) converted by tonylins/simclr-converter.

    Inputs are RGB in [0, 1] with **no** mean/std normalisation, as in the TF pipeline
    (protocol.md §2.1); ImageNet-normalised inputs give near-random features. ``fc`` (the
    converted supervised linear head) is dropped.
    """
    path = file_of(spec, "simclr-v1")
    obj = read_checkpoint(path)
    inner = obj.get("state_dict")
    state: dict[str, torch.Tensor] = inner if isinstance(inner, dict) else obj
    if not is_torchvision_layout(state):
        raise AdapterError(f"The simclr-v1 adapter expects {{'state_dict': torchvision ResNet keys}} in "
                           f"{path}; its top-level keys are {sorted(obj)[:8]}.")
    return _encoder(_without(state, "fc."), "simclr-v1", path)


# Separius/SimCLRv2-Pytorch ResNet (sk0) -> torchvision names. In a bottleneck, net.{0,2,4} are
# the three convs and net.{1,3,5}.0 their batch norms; projection.* is the first block's shortcut.
_V2_RULES = [
    (re.compile(r"^net\.0\.0\.weight$"), "conv1.weight"),
    (re.compile(r"^net\.0\.1\.0\.(.+)$"), r"bn1.\1"),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.net\.([024])\.weight$"), None),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.net\.([135])\.0\.(.+)$"), None),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.projection\.shortcut\.weight$"), r"layer\1.\2.downsample.0.weight"),
    (re.compile(r"^net\.([1-4])\.blocks\.(\d+)\.projection\.bn\.0\.(.+)$"), r"layer\1.\2.downsample.1.\3"),
]


def _v2_name(key: str) -> str:
    """Separius key -> torchvision key; an unknown key is returned unchanged (then reported)."""
    for pattern, repl in _V2_RULES:
        m = pattern.match(key)
        if not m:
            continue
        if repl is not None:
            return m.expand(repl)
        stage, block, idx = m.group(1), m.group(2), int(m.group(3))
        if idx % 2 == 0:
            return f"layer{stage}.{block}.conv{idx // 2 + 1}.weight"
        return f"layer{stage}.{block}.bn{idx // 2 + 1}.{m.group(4)}"
    return key


def is_simclr_v2(obj: dict[str, Any]) -> bool:
    """Separius/SimCLRv2-Pytorch writes ``{'resnet': ..., 'head': ...}`` with ``net.0.0.weight``."""
    return isinstance(obj.get("resnet"), dict) and "net.0.0.weight" in obj["resnet"]


@ADAPTERS.register("simclr-v2")
def _simclr_v2(spec: str) -> Encoder:
    """SimCLR v2 ResNet (50/101/152, 1x/2x/3x, no selective kernels) converted by Separius/SimCLRv2-Pytorch.

    Inputs are RGB in [0, 1] with **no** mean/std normalisation (GR ``data_util``); ImageNet-
    normalised inputs give near-random features. The contrastive ``head`` and ``fc`` are dropped.
    Selective-kernel (sk1) models are not torchvision ResNets and are refused.
    """
    path = file_of(spec, "simclr-v2")
    obj = read_checkpoint(path)
    if not is_simclr_v2(obj):
        raise AdapterError(f"The simclr-v2 adapter expects a 'resnet' entry with net.0.0.weight in {path}; "
                           f"its top-level keys are {sorted(obj)[:8]}.")
    raw = obj["resnet"]
    if any(".mixing_conv." in k or ".main_conv." in k for k in raw) or raw["net.0.0.weight"].shape[-1] == 3:
        raise AdapterError(f"{path} is a selective-kernel (sk1) SimCLRv2 model, which is not a torchvision "
                           "ResNet; clrbench evaluates the sk0 models (r50_1x_sk0, r50_2x_sk0, ...).")
    state = {_v2_name(k): v for k, v in raw.items() if not k.startswith("fc.")}
    return _encoder(state, "simclr-v2", path)


# --- Lightning checkpoints: lightly and solo-learn ---------------------------------------------

_BACKBONE_PREFIXES = ("backbone.", "model.backbone.", "encoder.", "model.encoder.")
# nn.Sequential(*list(resnet.children())[:-1]) (lightly's benchmarks): child index -> name.
_TV_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
# The same over lightly's ResNetGenerator (conv1, bn1, layer1..4, linear: no relu/maxpool children).
_GEN_CHILDREN = {"0": "conv1", "1": "bn1", "2": "layer1", "3": "layer2", "4": "layer3", "5": "layer4"}


def backbone_of(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]] | None:
    """(prefix, torchvision-named backbone weights) of a Lightning module's state dict, or None.

    Understands a torchvision ResNet attribute (``backbone.conv1.weight``), an ``nn.Sequential``
    of its children (``backbone.0.weight``, ``backbone.4.0.conv1.weight``) and lightly's
    ResNetGenerator (``shortcut`` for ``downsample``). Everything outside the prefix (projector,
    classifier, momentum copies) is ignored.
    """
    for prefix in _BACKBONE_PREFIXES:
        sub = strip_prefix(state, prefix)
        if "conv1.weight" not in sub and "0.weight" not in sub:
            continue
        if "0.weight" in sub:
            table = _GEN_CHILDREN if any(k.startswith("2.") for k in sub) else _TV_CHILDREN
            sub = {_rename_child(k, table): v for k, v in sub.items()}
        return prefix, {k.replace(".shortcut.", ".downsample."): v for k, v in sub.items()
                        if not k.startswith(("fc.", "linear."))}
    return None


def _rename_child(key: str, table: dict[str, str]) -> str:
    head, _, rest = key.partition(".")
    return f"{table[head]}.{rest}" if head in table else key


def is_lightning(obj: dict[str, Any]) -> bool:
    sd = obj.get("state_dict")
    return isinstance(sd, dict) and backbone_of(sd) is not None


def is_solo_learn(obj: dict[str, Any]) -> bool:
    """solo-learn names its heads ``projector`` and ``classifier`` (lightly: ``projection_head``)."""
    return any(k.startswith(("classifier.", "projector.")) for k in obj.get("state_dict", {}))


def _lightning(spec: str, adapter: str) -> Encoder:
    path = file_of(spec, adapter)
    obj = read_checkpoint(path)
    found = backbone_of(obj["state_dict"]) if isinstance(obj.get("state_dict"), dict) else None
    if found is None:
        keys = sorted(obj.get("state_dict", obj))
        raise AdapterError(f"The {adapter} adapter found no backbone under {', '.join(_BACKBONE_PREFIXES)} "
                           f"in {path}; its keys start {keys[:6]}.")
    state = found[1]
    cifar = state.get("conv1.weight") is not None and state["conv1.weight"].shape[-1] == 3
    if adapter == "solo-learn" and cifar:
        # solo-learn's CIFAR stem: Conv2d(3, 64, 3, stride=1, padding=2), no max-pool; CIFAR stats.
        return _encoder(state, adapter, path, None, _CIFAR10_MEAN, _CIFAR10_STD, {"conv1_padding": 2})
    return _encoder(state, adapter, path, None, IMAGENET_MEAN, IMAGENET_STD)


@ADAPTERS.register("lightly")
def _lightly(spec: str) -> Encoder:
    """A Lightning checkpoint of a lightly model (``backbone.`` prefix); ImageNet mean/std inputs."""
    return _lightning(spec, "lightly")


@ADAPTERS.register("solo-learn")
def _solo_learn(spec: str) -> Encoder:
    """A solo-learn Lightning checkpoint (``backbone.``); ImageNet mean/std, CIFAR-10's for CIFAR stems."""
    return _lightning(spec, "solo-learn")

"""What every adapter shares: the :class:`Encoder` it returns, the registry, and strict loading.

An adapter turns one kind of checkpoint into torchvision-named ResNet weights (``conv1``,
``bn1``, ``layer1.0.conv1``, ...), infers the architecture from the tensor shapes, and records
how the encoder must be fed (input range, mean/std): feeding SimCLR's TF weights ImageNet-
normalised inputs, or a supervised torchvision model unnormalised ones, gives near-random
features (protocol.md §2.1, §6.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clrbench.registry import Registry
from clrbench.weights.checkpoint import CheckpointError, check_finite, sha256_state

#: torchvision's ImageNet statistics (RGB, inputs in [0, 1]); torchvision's weights docs.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class AdapterError(CheckpointError):
    """A checkpoint whose keys fit no adapter; the message lists the keys and the adapter tried."""


@dataclass
class Encoder:
    """A frozen-able encoder with what an evaluator needs to know about it.

    Attributes:
        module: maps (B, 3, S, S) inputs in ``meta['input_range']`` (normalised by
            ``meta['mean']/['std']`` when given) to pooled features (B, feature_dim).
        meta: arch, width, stem, feature_dim, input_range, mean, std (and ``conv1_padding``
            where a foreign stem pads differently from clrbench's).
        checkpoint_id: short stable name used for records (name + weight hash).
        sha256: content hash of the encoder weights.
        kind: which adapter built it.
        path: the file it came from ('' for random init).
        head: the projection head g(.) saved with the encoder (eval mode), or None when the
            checkpoint has none (every foreign adapter, and ``head: none``); maps
            (B, feature_dim) -> (B, head_meta['out_dim']).
        head_meta: kind, in_dim, out_dim, hidden_dim of ``head`` (clrbench.weights.checkpoint).
        head_sha256: content hash of the head weights (part of any cache key of head features).
    """

    module: nn.Module
    meta: dict[str, Any]
    checkpoint_id: str
    sha256: str
    kind: str
    path: str
    head: nn.Module | None = None
    head_meta: dict[str, Any] | None = None
    head_sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "kind": self.kind, **self.meta}


Adapter = Callable[[str], Encoder]
#: Adapter name -> ``(spec) -> Encoder``. The name doubles as the ``NAME:PATH`` hint scheme.
ADAPTERS: Registry[Adapter] = Registry("checkpoint adapter")


def input_normaliser(meta: dict[str, Any], device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, 3, S, S) float images in [0, 1] -> the encoder's inputs: its ``input_range``, then
    its ``mean`` / ``std`` when the metadata has them (none for SimCLR's own weights).

    The one place feature extraction and fine-tuning turn pixels into encoder inputs, so the
    two protocols can never feed one encoder differently.
    """
    lo, hi = meta.get("input_range") or [0.0, 1.0]
    mean, std = meta.get("mean"), meta.get("std")
    m = torch.tensor(mean or [0.0] * 3, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std or [1.0] * 3, device=device).view(1, 3, 1, 1)
    rescale, normalise = (lo, hi) != (0.0, 1.0), bool(mean) or bool(std)

    def apply(x: torch.Tensor) -> torch.Tensor:
        if rescale:
            x = x * (hi - lo) + lo
        if normalise:
            x = (x - m) / s
        return x

    return apply


def run_name(path: Path) -> str:
    """runs/quickstart/last.pt -> quickstart; runs/x/step_0000100.pt -> x-step_0000100."""
    if path.stem == "last":
        return path.parent.name or "checkpoint"
    if path.stem.startswith("step_"):
        return f"{path.parent.name}-{path.stem}"
    return path.stem


def _examples(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > n else shown


def infer_architecture(state: dict[str, torch.Tensor], adapter: str) -> tuple[str, float, str]:
    """(arch, width, stem) of torchvision-named ResNet weights, from their shapes alone.

    Width is conv1's output channels / 64 (SimCLR's 1x/2x/4x scale the stem too, GR
    ``resnet.py``); the stem is ``cifar`` when conv1 is 3x3 (S-v1 B.9: 3x3 stride 1, no
    max-pool) and ``imagenet`` when it is 7x7; the depth comes from the blocks per stage.
    """
    from clrbench.simclr.encoder import _LAYOUTS  # the one table of depths; private on purpose

    conv1 = state.get("conv1.weight")
    if conv1 is None or conv1.ndim != 4:
        raise AdapterError(f"The {adapter} adapter found no ResNet stem (conv1.weight); "
                           f"its keys start {_examples(sorted(state))}.")
    kernel = conv1.shape[-1]
    if kernel not in (3, 7):
        raise AdapterError(f"The {adapter} adapter expects a 7x7 (ImageNet) or 3x3 (CIFAR) conv1, "
                           f"got {tuple(conv1.shape)}.")
    stem = "imagenet" if kernel == 7 else "cifar"
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in state)
    counts = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{s}.")}) for s in (1, 2, 3, 4))
    for arch, (block, layers) in _LAYOUTS.items():
        if tuple(layers) == counts and (block.expansion == 4) == bottleneck:
            return arch, conv1.shape[0] / 64, stem
    raise AdapterError(f"The {adapter} adapter found {counts} blocks per stage "
                       f"({'bottleneck' if bottleneck else 'basic'} blocks), which is no ResNet-18/34/50/101/152.")


def build_strict(meta: dict[str, Any], state: dict[str, torch.Tensor] | None, adapter: str,
                 source: str = "") -> nn.Module:
    """Build ``meta``'s encoder and load ``state`` into it, strictly.

    Every key must be present, none extra, every shape equal; the only tolerance is a missing
    BatchNorm ``num_batches_tracked`` counter (absent from older torchvision files; it never
    changes an output in eval mode). Sets ``meta['feature_dim']``.

    Raises:
        AdapterError: naming the adapter, with a few of the missing / unexpected / misshapen
            keys and their counts.
    """
    from clrbench.simclr.encoder import build_encoder

    where = f" ({source})" if source else ""
    width = meta.get("width")
    # A header or spec can say anything: check it here so a bad value is one sentence.
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 64:
        raise AdapterError(f"The {adapter} encoder{where} has width {width!r}; it must be a number in (0, 64].")
    try:
        module, dim = build_encoder(meta["arch"], float(width), meta["stem"])
    except (ValueError, TypeError) as e:
        raise AdapterError(f"The {adapter} encoder{where} cannot be built: {e}") from None
    if state is not None:
        check_finite(state, source or adapter)
    if meta.get("conv1_padding") is not None:  # solo-learn's CIFAR stem pads by 2, not 1
        module.conv1.padding = (int(meta["conv1_padding"]),) * 2  # type: ignore[union-attr]
    meta["feature_dim"] = dim
    if state is None:
        return module.eval()
    want = module.state_dict()
    missing = sorted(k for k in want if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in want)
    wrong = sorted(f"{k} {tuple(state[k].shape)} (want {tuple(want[k].shape)})"
                   for k in state if k in want and state[k].shape != want[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{len(v)} {what} ({_examples(v)})" for what, v in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("keys of the wrong shape", wrong)) if v]
        where = f" from {source}" if source else ""
        raise AdapterError(f"The {adapter} adapter could not load the weights{where} into {meta['arch']} "
                           f"(width {meta['width']:g}, {meta['stem']} stem): {'; '.join(parts)}.")
    full = {k: state.get(k, want[k]) for k in want}  # fills only num_batches_tracked
    module.load_state_dict(full, strict=True)
    return module.eval()


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with it removed; the rest is dropped."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def is_torchvision_layout(state: dict[str, Any]) -> bool:
    """True for torchvision ResNet keys (conv1 + layer1 blocks), with or without ``fc``."""
    return "conv1.weight" in state and any(k.startswith("layer1.0.") for k in state)


def weights_sha256(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """sha256 of the weights, salted with anything outside them that changes the features.

    Only ``conv1_padding`` (solo-learn's CIFAR stem) is such a thing: the same tensors padded
    differently must never share a feature-cache entry (design.md: cache keys).
    """
    import hashlib

    sha = sha256_state(state)
    pad = meta.get("conv1_padding")
    return sha if pad is None else hashlib.sha256(f"conv1_padding={pad}:{sha}".encode()).hexdigest()

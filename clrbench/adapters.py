"""Turn whatever ``--checkpoint`` names into an encoder plus the metadata to feed it.

Each adapter records the encoder's input range and normalisation, because feeding SimCLR
weights ImageNet-normalised inputs (or the reverse) gives near-random features
(protocol.md §2.1, §6.1). Loading never runs code: ``weights_only`` or safetensors only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clrbench.checkpoint import CheckpointError, encoder_metadata, encoder_state, load, sha256_state
from clrbench.registry import Registry


class AdapterError(CheckpointError):
    """A checkpoint whose keys fit no adapter; the message lists the keys and the adapter tried."""


@dataclass
class Encoder:
    """A frozen-able encoder with what an evaluator needs to know about it.

    Attributes:
        module: maps (B, 3, S, S) inputs in ``meta['input_range']`` (normalised by
            ``meta['mean']/['std']`` when given) to pooled features (B, feature_dim).
        meta: arch, width, stem, feature_dim, input_range, mean, std.
        checkpoint_id: short stable name used for records (name + weight hash).
        sha256: content hash of the encoder weights.
        kind: which adapter built it.
        path: the file it came from ('' for random init).
    """

    module: nn.Module
    meta: dict[str, Any]
    checkpoint_id: str
    sha256: str
    kind: str
    path: str

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "kind": self.kind, **self.meta}


Adapter = Callable[[str], Encoder]
ADAPTERS: Registry[Adapter] = Registry("checkpoint adapter")


def _build(meta: dict[str, Any], state: dict[str, torch.Tensor] | None, adapter: str) -> nn.Module:
    from clrbench.simclr.encoder import build_encoder

    module, dim = build_encoder(meta["arch"], meta["width"], meta["stem"])
    if state is not None:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise AdapterError(
                f"the {adapter} adapter could not load the weights into {meta['arch']} "
                f"(width {meta['width']}): missing {sorted(result.missing_keys)[:8]}, "
                f"unexpected {sorted(result.unexpected_keys)[:8]}."
            )
    meta["feature_dim"] = dim
    return module.eval()


def _run_name(path: Path) -> str:
    """runs/quickstart/last.pt -> quickstart; runs/x/step_0000100.pt -> x-step_0000100."""
    if path.stem == "last":
        return path.parent.name or "checkpoint"
    if path.stem.startswith("step_"):
        return f"{path.parent.name}-{path.stem}"
    return path.stem


@ADAPTERS.register("clrbench")
def _clrbench(spec: str) -> Encoder:
    from clrbench.checkpoint import load_clrbench

    ckpt = load_clrbench(spec)
    state = encoder_state(ckpt)
    meta = dict(ckpt["encoder"])
    module = _build(meta, state, "clrbench")
    sha = sha256_state(state)
    return Encoder(module, meta, f"{_run_name(Path(spec))}-{sha[:8]}", sha, "clrbench", str(spec))


def parse_random(spec: str) -> dict[str, Any]:
    """``random:resnet18,width=0.25,stem=cifar,seed=0`` -> its fields (defaults 1.0, imagenet, 0)."""
    body = spec.split(":", 1)[1]
    arch, *opts = [p.strip() for p in body.split(",") if p.strip()] or [""]
    fields: dict[str, Any] = {"arch": arch, "width": 1.0, "stem": "imagenet", "seed": 0}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in ("width", "stem", "seed"):
            raise AdapterError(f"random: takes width=, stem= and seed=, not {key!r} (in {spec!r}).")
        fields[key] = float(value) if key == "width" else int(value) if key == "seed" else value
    return fields


@ADAPTERS.register("random")
def _random(spec: str) -> Encoder:
    f = parse_random(spec)
    torch.manual_seed(f["seed"])
    meta = encoder_metadata(f["arch"], f["width"], f["stem"], 0)
    module = _build(meta, None, "random")
    sha = sha256_state(module.state_dict())
    w = f"{f['width']:g}"
    cid = f"random-{f['arch']}-w{w}-{f['stem']}-s{f['seed']}"
    return Encoder(module, meta, cid, sha, "random", "")


def detect(spec: str) -> str:
    """Which adapter a ``--checkpoint`` value goes to."""
    if ":" in spec and not Path(spec).exists():
        prefix = spec.split(":", 1)[0]
        if prefix in ADAPTERS:
            return prefix
        raise AdapterError(f"Unknown checkpoint scheme {prefix!r} in {spec!r}; use a file path, "
                           f"or one of {', '.join(p + ':' for p in ADAPTERS.names() if p != 'clrbench')}.")
    p = Path(spec)
    if not p.exists():
        raise CheckpointError(f"No checkpoint at {p}.")
    if p.suffix == ".safetensors" and "safetensors" in ADAPTERS:
        return "safetensors"
    obj = load(p)
    if obj.get("format") == "clrbench.checkpoint":
        return "clrbench"
    if "foreign" in ADAPTERS:
        return "foreign"
    raise AdapterError(f"{p} is not a clrbench checkpoint and no adapter for foreign layouts is installed; "
                       f"its top-level keys are {sorted(obj)[:10]}.")


def load_encoder(spec: str) -> Encoder:
    """Build the encoder named by ``spec`` (a path, ``random:<arch>,...``, ``torchvision:<arch>``)."""
    return ADAPTERS.get(detect(spec))(spec)

"""clrbench's own encoders: training checkpoints (.pt), exported ``.safetensors``, random init."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from clrbench.weights.adapters.core import (
    ADAPTERS,
    AdapterError,
    Encoder,
    build_strict,
    run_name,
    weights_sha256,
)
from clrbench.weights.checkpoint import (
    EXPORT_FORMAT,
    CheckpointError,
    checkpoint_head,
    encoder_metadata,
    encoder_state,
    head_state,
    sha256_state,
)

#: Input side (px) each stem is designed for: CIFAR's 3x3 stem 32 (S-v1 B.9), ImageNet's 224.
STEM_RESOLUTION = {"cifar": 32, "imagenet": 224}

def file_of(spec: str, adapter: str) -> Path:
    """The path in ``spec``, without an ``adapter:`` hint in front of it."""
    prefix = f"{adapter}:"
    return Path(spec[len(prefix):] if spec.startswith(prefix) and not Path(spec).exists() else spec)


@ADAPTERS.register("clrbench")
def _clrbench(spec: str) -> Encoder:
    """A ``clrbench pretrain`` checkpoint: its own metadata says how to feed it ([0, 1], no mean/std)."""
    from clrbench.weights.checkpoint import load_clrbench

    path = file_of(spec, "clrbench")
    ckpt = load_clrbench(path)
    state = encoder_state(ckpt)
    meta = dict(ckpt["encoder"])
    if ckpt.get("distill"):  # a student of clrbench distill: its provenance rides in every record
        meta["distill"] = dict(ckpt["distill"])
    if not meta.get("resolution"):  # checkpoints from before the field: the recipe says it
        size = ((ckpt.get("config") or {}).get("augment") or {}).get("image_size")
        meta["resolution"] = int(size) if size else None
    module = build_strict(meta, state, "clrbench", str(path))
    sha = sha256_state(state)
    enc = Encoder(module, meta, f"{run_name(path)}-{sha[:8]}", sha, "clrbench", str(path))
    head_meta = checkpoint_head(ckpt)
    return with_head(enc, head_meta, head_state(ckpt), str(path)) if head_meta else enc


def with_head(enc: Encoder, head_meta: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> Encoder:
    """``enc`` with its projection head built from ``head_meta`` and ``state`` loaded strictly."""
    from dataclasses import replace

    from clrbench.simclr.head import build_head

    head = build_head(head_meta["kind"], head_meta["in_dim"], head_meta["out_dim"], head_meta["hidden_dim"])
    try:
        head.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise AdapterError(f"The projection head in {source} does not fit its metadata {head_meta} "
                           f"({str(e).splitlines()[0]}).") from None
    return replace(enc, head=head.eval(), head_meta=dict(head_meta), head_sha256=sha256_state(state))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header metadata) of a safetensors file; never unpickles anything."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}).") from None
    return tensors, header


def meta_from_header(header: dict[str, str], path: Path) -> dict[str, Any]:
    """Encoder metadata from an exported header (JSON-encoded values, see clrbench.weights.export)."""
    if header.get("format") != EXPORT_FORMAT:
        raise AdapterError(
            f"{path} has no clrbench encoder metadata, so its input range and normalisation are "
            "unknown; if it holds torchvision ResNet weights trained on ImageNet-normalised inputs, "
            f"pass torchvision:{path}."
        )
    try:
        meta = {k: json.loads(header[k]) for k in ("arch", "width", "stem", "feature_dim", "input_range",
                                                   "mean", "std")}
        if "conv1_padding" in header:
            meta["conv1_padding"] = json.loads(header["conv1_padding"])
        meta["resolution"] = json.loads(header.get("resolution", "null"))
    except (KeyError, json.JSONDecodeError) as e:
        raise AdapterError(f"{path} has a damaged clrbench header ({e}).") from None
    return meta


@ADAPTERS.register("safetensors")
def _safetensors(spec: str) -> Encoder:
    """An encoder written by ``clrbench export``: weights plus metadata in the header."""
    path = file_of(spec, "safetensors")
    tensors, header = read_safetensors(path)
    meta = meta_from_header(header, path)
    # `clrbench export --with-head` adds the head under ``head.``; the encoder keys stay bare.
    state = {k: v for k, v in tensors.items() if not k.startswith("head.")}
    module = build_strict(meta, state, "safetensors", str(path))
    sha = weights_sha256(state, meta)
    enc = Encoder(module, meta, f"{run_name(path)}-{sha[:8]}", sha, "safetensors", str(path))
    if "head" not in header:
        return enc
    try:
        head_meta = json.loads(header["head"])
    except json.JSONDecodeError as e:
        raise AdapterError(f"{path} has a damaged head entry in its header ({e}).") from None
    head = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
    return with_head(enc, head_meta, head, str(path))


def parse_random(spec: str) -> dict[str, Any]:
    """``random:resnet18,width=0.25,stem=cifar,seed=0`` -> its fields (defaults 1.0, imagenet, 0)."""
    body = spec.split(":", 1)[1]
    arch, *opts = [p.strip() for p in body.split(",") if p.strip()] or [""]
    fields: dict[str, Any] = {"arch": arch, "width": 1.0, "stem": "imagenet", "seed": 0}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in ("width", "stem", "seed"):
            raise AdapterError(f"random: takes width=, stem= and seed=, not {key!r} (in {spec!r}).")
        try:
            fields[key] = float(value) if key == "width" else int(value) if key == "seed" else value
        except ValueError:
            kind = "a number" if key == "width" else "an integer"
            raise AdapterError(f"random: {key} must be {kind}, not {value!r} (in {spec!r}).") from None
    if not fields["arch"]:
        raise AdapterError(f"random: needs an architecture, e.g. random:resnet18,width=0.25 (got {spec!r}).")
    return fields


@ADAPTERS.register("random")
def _random(spec: str) -> Encoder:
    """Random initialisation (the S-v1 B.8 random-init baseline), seeded, fed like clrbench's.

    It was trained at no resolution; its ``resolution`` is the input its stem is built for
    (CIFAR stem 32 px, ImageNet stem 224 px), so ``--resolution native`` puts the baseline in
    the same column as the trained encoder of the same stem.
    """
    f = parse_random(spec)
    torch.manual_seed(f["seed"])
    meta = encoder_metadata(f["arch"], f["width"], f["stem"], 0, resolution=STEM_RESOLUTION.get(f["stem"]))
    module = build_strict(meta, None, "random")
    sha = sha256_state(module.state_dict())
    w = f"{f['width']:g}"
    cid = f"random-{f['arch']}-w{w}-{f['stem']}-s{f['seed']}"
    return Encoder(module, meta, cid, sha, "random", "")

"""Checkpoints: atomic save, safe load (``weights_only``), and the encoder's metadata.

A clrbench checkpoint is a dict of tensors and plain values (design.md, Contracts): model
state, optimizer and online-probe state, step and epoch, the resolved config, the encoder
metadata (architecture, width, stem, feature dim, input range and normalisation), git SHA
and clrbench version. It loads with ``torch.load(weights_only=True)``: nothing in it runs
code, and a file that would is refused with one sentence.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from clrbench.atomic import atomic_file
from clrbench.errors import UserError

FORMAT = "clrbench.checkpoint"  # a pretraining checkpoint (.pt): everything to resume and to evaluate
FORMAT_VERSION = 1
EXPORT_FORMAT = "clrbench.encoder"  # an exported encoder (.safetensors header): weights and metadata only


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, corrupt, foreign or unsafe; one clear sentence."""


def encoder_metadata(arch: str, width: float, stem: str, feature_dim: int,
                     mean: list[float] | None = None, std: list[float] | None = None,
                     resolution: int | None = None) -> dict[str, Any]:
    """What an evaluator needs to rebuild the encoder and feed it correctly.

    clrbench's own encoders, like SimCLR's released ones, take RGB in [0, 1] without mean/std
    normalisation (protocol.md §2.1, pixel scaling). ``resolution`` is the side in pixels of
    the views it was trained on (``augment.image_size``; None when unknown), what
    ``clrbench eval --resolution native`` evaluates at.
    """
    return {"arch": arch, "width": float(width), "stem": stem, "feature_dim": int(feature_dim),
            "input_range": [0.0, 1.0], "mean": mean, "std": std, "resolution": resolution}


def training_checkpoint(*, model: dict[str, torch.Tensor], probe: dict[str, Any] | None,
                        optimizer: dict[str, Any], probe_optimizer: dict[str, Any] | None, step: int,
                        steps_per_epoch: int, world_size: int, config: dict[str, Any], derived: dict[str, Any],
                        encoder: dict[str, Any], head: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict pretraining writes (read back by :func:`load_clrbench`).

    Every value is a tensor or plain Python data, so ``torch.load(weights_only=True)`` reads it
    without running code. ``model`` holds encoder and head (``encoder.*`` keys are torchvision's).
    """
    from clrbench.provenance import version_info

    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "probe": probe, "optimizer": optimizer, "probe_optimizer": probe_optimizer,
        "step": step, "epoch": step / steps_per_epoch, "world_size": world_size,
        "config": config, "derived": derived, "encoder": encoder, "head": head,
        **version_info(),
    }


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    On any failure (a full disk, an interrupt) the temporary file is removed and the previous
    file at ``path`` is left intact.
    """
    with atomic_file(path) as f:
        torch.save(obj, f)


def load(path: str | Path) -> dict[str, Any]:
    """Load any torch checkpoint safely (weights_only); errors are one clear sentence."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"No checkpoint at {p}.")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; pass the checkpoint file (for example {p}/last.pt).")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{p} contains pickled code or objects that would run on load; clrbench loads "
                "weights only and refuses it (re-save it as a plain state dict)."
            ) from None
        raise CheckpointError(f"{p} is not a readable checkpoint (corrupt pickle).") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        # A text file or a torn download surfaces as any of these (KeyError for a bad opcode).
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{p} is not a readable checkpoint ({detail}).") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, not a checkpoint dict.")
    return obj


def load_clrbench(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by clrbench pretrain; a foreign file is refused."""
    ckpt = load(path)
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a clrbench checkpoint (no '{FORMAT}' header).")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer clrbench; upgrade to read it.")
    return ckpt


def head_metadata(kind: str, in_dim: int, out_dim: int, hidden_dim: int | None) -> dict[str, Any]:
    """What rebuilds the projection head g(.) of a checkpoint (clrbench.simclr.head.build_head)."""
    return {"kind": kind, "in_dim": int(in_dim), "out_dim": int(out_dim),
            "hidden_dim": None if hidden_dim is None else int(hidden_dim)}


def checkpoint_head(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The head metadata of a clrbench checkpoint, or None when it has no head.

    Checkpoints written before the ``head`` entry existed still hold ``head.*`` weights; their
    head is rebuilt from the resolved config (model.head, head_dim, head_hidden_dim).
    """
    meta = ckpt.get("head")
    if meta is None:
        model = (ckpt.get("config") or {}).get("model") or {}
        kind = model.get("head")
        if not kind or not any(k.startswith("head.") for k in ckpt.get("model", {})):
            return None
        meta = head_metadata(kind, ckpt["encoder"]["feature_dim"], model.get("head_dim", 128),
                             model.get("head_hidden_dim"))
    return None if meta["kind"] == "none" else dict(meta)


def head_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The projection head's weights (``head.`` prefix removed) out of a clrbench checkpoint."""
    prefix = "head."
    return {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}


def encoder_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The encoder's weights (torchvision ResNet keys) out of a clrbench checkpoint."""
    prefix = "encoder."
    return {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_state(state: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict (names, shapes, dtypes and bytes), independent of file format."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

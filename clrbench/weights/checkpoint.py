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
import warnings
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
    without running code. ``model`` holds encoder and head (``encoder.*`` keys are torchvision's);
    ``tensors_sha256`` covers every tensor, so damage on disk is found at load.
    """
    from clrbench.provenance import version_info

    state = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "probe": probe, "optimizer": optimizer, "probe_optimizer": probe_optimizer,
        "step": step, "epoch": step / steps_per_epoch, "world_size": world_size,
        "config": config, "derived": derived, "encoder": encoder, "head": head,
        **version_info(),
    }
    state[CHECKSUM_KEY] = tensors_sha256(state)  # checked at every load (verify_checkpoint)
    return state


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
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        code = _raw_pickle_globals(p)
        if code:
            raise CheckpointError(
                f"{p} is unsafe: a raw Python pickle naming {', '.join(code[:3])}, code that would run on "
                "load; clrbench loads weights only and refuses it (re-save it with torch.save(state_dict))."
            ) from None
        if code is not None:
            raise CheckpointError(f"{p} is a raw Python pickle, not a torch checkpoint; re-save it with "
                                  "torch.save(state_dict).") from None
        if "GLOBAL" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{p} contains pickled code or objects that would run on load; clrbench loads "
                "weights only and refuses it (re-save it as a plain state dict)."
            ) from None
        raise CheckpointError(f"{p} is not a readable checkpoint (corrupt pickle).") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        # A text file or a torn download surfaces as any of these (KeyError for a bad opcode).
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, (KeyError, IndexError, EOFError)):  # a bad opcode says only "101"
            detail = "not a file torch.save wrote, or cut short"
        raise CheckpointError(f"{p} is not a readable checkpoint ({detail}).") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, not a checkpoint dict.")
    return obj


def _raw_pickle_globals(path: Path) -> list[str] | None:
    """For a plain pickle (not torch's zip format): the globals it would import, read with
    ``pickletools`` (which parses opcodes and runs nothing); None for anything else."""
    import pickletools

    try:
        with open(path, "rb") as f:
            if f.read(2)[:1] != b"\x80":  # pickle protocol >= 2 starts with PROTO
                return None
            f.seek(0)
            names: list[str] = []
            strings: list[str] = []
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                    strings.append(str(arg))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name in ("REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "OBJ") and not names:
                    names.append(op.name)
    except Exception:  # not a parseable pickle: the caller says "corrupt"
        return None
    return names


def load_clrbench(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by clrbench pretrain; a foreign file is refused."""
    ckpt = load(path)
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a clrbench checkpoint (no '{FORMAT}' header).")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer clrbench; upgrade to read it.")
    if not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path} is a damaged clrbench checkpoint (it holds no model weights).")
    verify_checkpoint(ckpt, path)
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
CHECKSUM_KEY = "tensors_sha256"


def tensors_sha256(ckpt: dict[str, Any]) -> str:
    """sha256 of every tensor in a checkpoint (model, optimizer and probe state), with its
    place in the nesting, shape and dtype; the checksum field itself is left out."""
    h = hashlib.sha256()

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{where}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                if not (where == "" and k == CHECKSUM_KEY):
                    walk(obj[k], f"{where}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}/{i}")

    walk(ckpt, "")
    return h.hexdigest()


def verify_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose tensors are not what was saved, or whose weights are not finite.

    The checksum (written at save by clrbench pretrain; older checkpoints have none) catches
    bytes damaged on disk or in transit, which torch's zip reader does not check; the finite
    test catches a run saved after its weights blew up, and names the first bad tensor.

    Raises:
        CheckpointError: a checksum mismatch or a non-finite weight (named).
    """
    expected = ckpt.get(CHECKSUM_KEY)
    if expected is not None and tensors_sha256(ckpt) != expected:
        raise CheckpointError(f"{path} is damaged: its tensors do not match the checksum stored when it was "
                              "saved; use an earlier checkpoint (step_*.pt) or retrain.")
    check_finite(ckpt["model"], path)


def check_finite(state: dict[str, Any], source: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first tensor of ``state`` holding NaN or inf."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{source} holds non-finite weights (NaN or inf) in {name}; it cannot be used.")


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

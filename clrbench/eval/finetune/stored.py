"""Fine-tuned networks kept on disk, content-addressed: the teachers of ``clrbench distill``.

A semi-supervised protocol (S-v2 sec 2) stores the weights of its selected trial as
``<cache>/models/<sha256[:16]>.pt``: the whole :class:`~clrbench.eval.finetune.trainer.FinetuneNet`
(encoder, the head layers it was fine-tuned from, the linear classifier) and what rebuilds it
(encoder metadata, head metadata and depth, number of classes), plus where it came from (base
checkpoint, task, protocol, the labelled subset's indices and hash). The name is the hash of
the weights, so the same network is stored once and a record can point at it safely. Loading
is ``weights_only`` like every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from clrbench.weights.checkpoint import CheckpointError, atomic_torch_save, load, sha256_state

FORMAT = "clrbench.finetuned"


@dataclass
class StoredModel:
    """A fine-tuned network, rebuilt: ``net`` maps encoder inputs (B, 3, S, S) to logits (B, C)."""

    net: nn.Module
    meta: dict[str, Any]  # the encoder's metadata (input range, normalisation, arch, ...)
    info: dict[str, Any]  # everything else the file holds besides the weights
    sha256: str
    path: Path


def model_path(cache_dir: str | Path, sha256: str) -> Path:
    return Path(cache_dir) / "models" / f"{sha256[:16]}.pt"


def save_model(cache_dir: str | Path, net: nn.Module, meta: dict[str, Any], info: dict[str, Any]) -> tuple[Path, str]:
    """Store ``net`` under the hash of its weights (atomic; an existing identical file is kept).

    ``info`` must hold ``feature_depth`` (0 = encoder, k = first k head layers), ``head_meta``
    (None at depth 0) and ``num_classes``; the rest is provenance.
    """
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    sha = sha256_state(state)
    path = model_path(cache_dir, sha)
    if not path.exists():
        atomic_torch_save({"format": FORMAT, "format_version": 1, "model": state, "encoder": dict(meta),
                           **info}, path)
    return path, sha


def build_finetune_net(meta: dict[str, Any], depth: int, head_meta: dict[str, Any] | None,
                       num_classes: int) -> nn.Module:
    """An untrained network of the stored shape: encoder (+ first ``depth`` head layers) + linear."""
    from clrbench.eval.finetune.trainer import FinetuneNet
    from clrbench.simclr.head import build_head, head_layers
    from clrbench.weights.adapters.core import build_strict

    m = dict(meta)
    encoder = build_strict(m, None, "finetuned")
    dim = int(m["feature_dim"])
    if depth > 0:
        if head_meta is None:
            raise CheckpointError("a stored fine-tuned model from a head layer lacks its head metadata.")
        layers = head_layers(build_head(head_meta["kind"], head_meta["in_dim"], head_meta["out_dim"],
                                        head_meta["hidden_dim"]))[:depth]
        encoder = nn.Sequential(encoder, *layers)
        dim = next(x.out_features for x in reversed(list(layers[-1].modules())) if isinstance(x, nn.Linear))
    return FinetuneNet(encoder, dim, num_classes)


def load_model(path: str | Path) -> StoredModel:
    """Rebuild a stored fine-tuned network (eval mode) from its file.

    Raises:
        CheckpointError: not a stored fine-tuned model, or weights that do not fit.
    """
    p = Path(path)
    blob = load(p)
    if blob.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a fine-tuned model stored by a semi protocol (no '{FORMAT}' header).")
    net = build_finetune_net(blob["encoder"], int(blob["feature_depth"]), blob.get("head_meta"),
                             int(blob["num_classes"]))
    try:
        net.load_state_dict(blob["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{p}: the stored weights do not fit their metadata ({str(e).splitlines()[0]})."
        ) from None
    info = {k: v for k, v in blob.items() if k not in ("model", "encoder")}
    return StoredModel(net.eval(), dict(blob["encoder"]), info, sha256_state(blob["model"]), p)

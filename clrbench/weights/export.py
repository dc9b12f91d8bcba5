"""``clrbench export``: any ``--checkpoint`` spec -> the encoder alone, as ``.safetensors``.

The file holds torchvision ResNet keys (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
...; no ``fc``), so for a width-1 ImageNet-stem encoder::

    model = torchvision.models.resnet50()
    missing, unexpected = model.load_state_dict(safetensors.torch.load_file(f), strict=False)
    # missing == ['fc.weight', 'fc.bias'], unexpected == []

The header metadata (string values, JSON-encoded) records how to feed it: ``arch``, ``width``,
``stem``, ``feature_dim``, ``input_range``, ``mean``, ``std``, plus ``source`` (the spec),
``source_sha256`` (the source file's bytes; the weights' hash for ``random:``/hub specs),
``weights_sha256``, ``adapter`` and ``clrbench_version``. ``clrbench eval --checkpoint
encoder.safetensors`` reads it back with the same preprocessing.

With ``with_head`` (``clrbench export --with-head``) the projection head is added under
``head.`` keys and its metadata under ``head`` (JSON), so S-v2 fine-tuning from ``head:1``
works from the exported file too; torchvision's ``load_state_dict(strict=False)`` then also
lists the ``head.*`` keys as unexpected, which is why it is opt-in.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from clrbench import __version__
from clrbench.atomic import publish
from clrbench.weights.adapters import Encoder, load_encoder
from clrbench.weights.checkpoint import EXPORT_FORMAT, CheckpointError, sha256_file


def export_metadata(encoder: Encoder, spec: str) -> dict[str, str]:
    """The safetensors header of ``encoder`` (all values strings, as the format requires)."""
    src = Path(encoder.path) if encoder.path else None
    meta = {k: json.dumps(encoder.meta[k]) for k in
            ("arch", "width", "stem", "feature_dim", "input_range", "mean", "std")}
    if encoder.meta.get("conv1_padding") is not None:
        meta["conv1_padding"] = json.dumps(encoder.meta["conv1_padding"])
    if encoder.meta.get("resolution"):  # training resolution, for --resolution native
        meta["resolution"] = json.dumps(encoder.meta["resolution"])
    return {"format": EXPORT_FORMAT, "format_version": "1", **meta, "source": spec,
            "source_sha256": sha256_file(src) if src and src.is_file() else encoder.sha256,
            "weights_sha256": encoder.sha256, "adapter": encoder.kind, "clrbench_version": __version__}


def export_encoder(spec: str, out: str | Path, with_head: bool = False) -> tuple[Path, Encoder]:
    """Write the encoder of ``spec`` to ``out`` atomically (temp file, fsync, rename).

    Returns:
        (the path written, the encoder as loaded).

    Raises:
        CheckpointError: ``out`` does not end in ``.safetensors``, ``with_head`` for a
            checkpoint without a head, or any loading error.
    """
    from safetensors.torch import save

    out = Path(out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"--out must end in .safetensors, got {out}.")
    encoder = load_encoder(spec)
    # safetensors wants contiguous, non-shared CPU tensors; clone() breaks any sharing.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in encoder.module.state_dict().items()}
    header = export_metadata(encoder, spec)
    if with_head:
        if encoder.head is None:
            raise CheckpointError(f"--with-head: {spec} carries no projection head (only clrbench pretraining "
                                  "checkpoints and exports made with --with-head do).")
        state.update({f"head.{k}": v.detach().cpu().contiguous().clone()
                      for k, v in encoder.head.state_dict().items()})
        header["head"] = json.dumps(encoder.head_meta)
    blob = save(state, metadata=header)
    _write_verified(out, blob, state)
    return out, encoder


def _write_verified(out: Path, blob: bytes, state: dict) -> None:
    """Write ``blob`` to a temporary file beside ``out``, read it back and compare the tensors
    with ``state``, then rename it over ``out``: a good export is never replaced by a bad one.

    Raises:
        CheckpointError: the written file does not read back as ``state`` (bad disk, full disk).
    """
    from clrbench.weights.adapters.native import read_safetensors
    from clrbench.weights.checkpoint import check_finite, sha256_state

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(out) if ".tmp" in str(e.filename) else e.filename) from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(out)) from None
        got, _ = read_safetensors(Path(tmp))
        if sha256_state(got) != sha256_state(state):
            raise CheckpointError(f"The export written to {out} did not read back as the weights; "
                                  "the previous file is untouched (check the disk).")
        check_finite(got, out)
        try:
            publish(tmp, out)
        except OSError as e:  # e.g. a folder named like the target: name the target alone
            raise OSError(e.errno, e.strerror, str(out)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parameter_count(encoder: Encoder) -> int:
    return sum(p.numel() for p in encoder.module.parameters())

"""What identifies an encoder (id, weights hash, metadata), remembered so it is read once.

Planning names every job by its checkpoint id, and a job whose features are cached needs only
the weights hash and the metadata that change features, not the weights. Building the
encoder to learn them costs seconds per checkpoint (reading and hashing the file), so the
identity is kept in the cache folder, keyed by what would change it: the spec and, for a file,
its resolved path, size and modification time. Any other spec is built each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clrbench.atomic import write_bytes


@dataclass(frozen=True)
class EncoderInfo:
    """An encoder's identity without its weights (see :class:`clrbench.weights.adapters.Encoder`)."""

    checkpoint_id: str
    sha256: str
    kind: str
    path: str
    meta: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "kind": self.kind, **self.meta}


def _memo_key(spec: str) -> str | None:
    """What would change the identity of ``spec``, or None when it cannot be told cheaply."""
    if spec.startswith("random:"):
        return json.dumps({"spec": spec})  # deterministic: the spec is the weights
    target = spec.split(":", 1)[1] if ":" in spec and not Path(spec).exists() else spec
    p = Path(target)
    try:
        st = p.stat()
    except OSError:
        return None
    if not p.is_file():
        return None
    return json.dumps({"spec": spec, "path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def info_of(encoder: Any) -> EncoderInfo:
    return EncoderInfo(encoder.checkpoint_id, encoder.sha256, encoder.kind, encoder.path, dict(encoder.meta))


def encoder_info(spec: str, cache_dir: str | Path | None = None) -> EncoderInfo:
    """The identity of ``spec``: from the cache folder when this file was seen, else built.

    Raises:
        CheckpointError: (when built) the spec names no loadable encoder.
    """
    from clrbench.weights.adapters import load_encoder

    key = _memo_key(spec)
    path = None
    if key is not None and cache_dir is not None:
        path = Path(cache_dir) / "encoders" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        try:
            return EncoderInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            pass  # not seen yet, or unreadable: build it
    info = info_of(load_encoder(spec))
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            write_bytes(path, json.dumps(asdict(info), sort_keys=True).encode())
    return info

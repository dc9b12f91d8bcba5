"""One encoder, one name: what identifies an encoder, remembered so it is read once.

*Memo.* Planning names every job by its checkpoint id, and a job whose features are cached
needs only the weights hash and the metadata that change features, not the weights. Building
the encoder to learn them costs seconds per checkpoint (reading and hashing the file), so the
identity is kept in the cache folder (:func:`encoder_info`), keyed by what would change it: the
spec and, for a file, its resolved path, size and modification time.

*Identity across files.* An encoder's identity is the sha256 of its weights plus the metadata
outside them that changes its features (arch, width, stem, input range, mean/std, conv1
padding): the same tensors fed differently are another encoder, the same tensors under another
file name (``last.pt``, ``step_0000230.pt``, an exported ``.safetensors``) are not. When a
results folder already holds records of an identity, a new file of it is evaluated under the id
those records use (:func:`known_checkpoint_id`), so nothing is recomputed, and its own name is
kept as an *alias* in ``RESULTS/aliases.json`` for the board to list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clrbench.atomic import write_bytes, write_text

#: Metadata keys that change what an encoder computes (besides its weights).
FEATURE_KEYS = ("arch", "width", "stem", "input_range", "mean", "std", "conv1_padding")
ALIASES_FILE = "aliases.json"


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
    key = _memo_key(spec)
    path = None
    if key is not None and cache_dir is not None:
        path = Path(cache_dir) / "encoders" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        try:
            return EncoderInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            pass  # not seen yet, or unreadable: build it
    from clrbench.weights.adapters import load_encoder  # imports torch (~2 s): only on a miss

    info = info_of(load_encoder(spec))
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            write_bytes(path, json.dumps(asdict(info), sort_keys=True).encode())
    return info


def _norm(v: Any) -> Any:
    """Numbers as floats (1 == 1.0 in a record read back), lists element-wise."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return str(v)


def identity_key(checkpoint: Mapping[str, Any]) -> str | None:
    """16 hex digits naming (weights, feature metadata) of a record's ``checkpoint`` dict or an
    ``Encoder.describe()``; None when it has no weights hash (a failed record)."""
    sha = checkpoint.get("sha256")
    if not sha:
        return None
    meta = {k: _norm(checkpoint[k]) for k in FEATURE_KEYS if checkpoint.get(k) is not None}
    return hashlib.sha256(json.dumps([sha, meta], sort_keys=True).encode()).hexdigest()[:16]


def pick_canonical(ids: Iterable[str]) -> str:
    """The name of a group of ids with one identity: the one with the most records, then the
    shortest, then the first alphabetically (stable whatever order files are read in)."""
    counts = Counter(ids)
    return min(counts, key=lambda i: (-counts[i], len(i), i))


def _recorded_ids(results_dir: Path) -> dict[str, list[str]]:
    """identity -> checkpoint ids of its records (one entry per record), read from the files."""
    out: dict[str, list[str]] = {}
    for path in sorted((results_dir / "records").glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
            key = identity_key(data.get("checkpoint") or {})
        except (OSError, ValueError, AttributeError):
            continue  # an unreadable record is the board's to report
        if key is not None and data.get("status") == "ok":
            out.setdefault(key, []).append(str(data.get("checkpoint_id")))
    return out


def read_aliases(results_dir: Path | str) -> dict[str, list[str]]:
    """checkpoint id -> the other names its weights were evaluated under (``aliases.json``)."""
    path = Path(results_dir) / ALIASES_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return (
        {str(k): [str(a) for a in v] for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}
    )


def add_alias(results_dir: Path | str, checkpoint_id: str, alias: str) -> None:
    """Remember that ``alias`` names the encoder recorded as ``checkpoint_id`` (atomic write)."""
    aliases = read_aliases(results_dir)
    if alias == checkpoint_id or alias in aliases.get(checkpoint_id, []):
        return
    aliases.setdefault(checkpoint_id, []).append(alias)
    write_text(Path(results_dir) / ALIASES_FILE, json.dumps(aliases, indent=1, sort_keys=True) + "\n")


def known_checkpoint_id(encoder: Any, results_dir: Path | str) -> str:
    """The id to evaluate ``encoder`` under: the one ``results_dir`` already records its
    identity as, else its own ``checkpoint_id``. A new name for known weights becomes an alias."""
    key = identity_key(encoder.describe())
    ids = _recorded_ids(Path(results_dir)).get(key or "", [])
    if not ids:
        return str(encoder.checkpoint_id)
    canonical = pick_canonical(ids)
    if canonical != encoder.checkpoint_id:
        add_alias(results_dir, canonical, encoder.checkpoint_id)
    return canonical

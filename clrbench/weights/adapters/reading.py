"""Read a checkpoint file without running any code from it.

``torch.load(weights_only=True)`` refuses any pickled global outside a small allow-list, which
is what keeps a malicious ``__reduce__`` from running. Lightning checkpoints (lightly,
solo-learn) also pickle their configuration (OmegaConf, argparse Namespaces, scheduler
closures), which weights_only refuses too. For globals from those configuration libraries
only, this module substitutes inert stand-ins (:class:`Inert`, our own code: it records its
arguments and does nothing), so the tensors can be read; any other global (``builtins.open``,
``os.system``, ...) is refused with one sentence naming it. Nothing is ever imported from, or
executed for, the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clrbench.weights.checkpoint import CheckpointError, load

# Globals that only ever build configuration objects in Lightning checkpoints. They are never
# imported: each is replaced by an Inert stand-in, so even a hostile file naming one runs nothing.
_INERT_PREFIXES = (
    "omegaconf.", "lightning.", "pytorch_lightning.", "lightning_fabric.", "lightly.", "solo.",
    "argparse.Namespace", "typing.", "collections.", "functools.partial", "torch.optim.",
    "pathlib.", "enum.",
)


class Inert:
    """Stand-in for a pickled configuration object: keeps its arguments and state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on dict subclasses
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # APPENDS on list subclasses
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)


def _stand_in(full_name: str) -> tuple[type, str]:
    cls = type(full_name.rsplit(".", 1)[-1], (Inert,), {"__module__": __name__})
    return cls, full_name


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load ``path`` with ``weights_only`` semantics, tolerating Lightning's pickled configs.

    Raises:
        CheckpointError: missing/corrupt file, or a pickled global that could run code (named).
    """
    try:
        return load(path)
    except CheckpointError as e:
        if "pickled code" not in str(e):
            raise
    names = _pickled_globals(Path(path))
    refused = [n for n in names if not n.startswith(_INERT_PREFIXES)]
    if refused or not names:
        what = ", ".join(refused[:3]) or "unknown globals"
        raise CheckpointError(
            f"{path} contains pickled code that would run on load ({what}); clrbench loads "
            "weights only and refuses it (re-save it as a plain state dict)."
        ) from None
    with torch.serialization.safe_globals([_stand_in(n) for n in names]):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any failure here is one sentence for the user
            raise CheckpointError(f"{path} could not be read even with its configuration objects "
                                  f"set aside ({str(e).splitlines()[0]}).") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict.")
    return obj


def _pickled_globals(path: Path) -> list[str]:
    """The globals a zip-format checkpoint's pickle names, read without unpickling it."""
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if lister is None:  # torch < 2.5: cannot list safely, so refuse
        return []
    try:
        return sorted(lister(str(path)))
    except Exception:  # legacy (non-zip) format: cannot list safely, so refuse
        return []

"""Turn whatever ``--checkpoint`` names into an encoder plus the metadata to feed it.

Each adapter records the encoder's input range and normalisation, because feeding SimCLR
weights ImageNet-normalised inputs (or the reverse) gives near-random features
(protocol.md §2.1, §6.1). Loading never runs code: ``weights_only`` or safetensors only.

A ``--checkpoint`` value resolves in this order (:func:`detect`):

1. ``NAME:REST`` where NAME is an adapter (and the value is not an existing file):
   ``random:resnet18,width=0.25``, ``torchvision:resnet50``, or a hint forcing the adapter
   for a file, e.g. ``simclr-v1:r50_1x.pth``, ``lightly:epoch=99.ckpt``.
2. A ``.safetensors`` file: an encoder written by ``clrbench export``.
3. Any other file, read with ``weights_only`` and recognised by its layout:
   a. ``format == 'clrbench.checkpoint'`` -> ``clrbench``;
   b. ``{'resnet': {'net.0.0.weight', ...}, 'head': ...}`` -> ``simclr-v2`` (Separius converter);
   c. exactly ``{'state_dict': <torchvision ResNet keys>}`` -> ``simclr-v1`` (tonylins
      converter, which writes just that; a supervised model saved the same way needs the
      ``torchvision:`` hint);
   d. ``state_dict`` with a ``backbone.`` / ``model.backbone.`` / ``encoder.`` ResNet ->
      ``solo-learn`` when its heads are named ``projector``/``classifier``, else ``lightly``;
   e. torchvision ResNet keys, bare or under DataParallel's ``module.``, at the top level or in
      a ``state_dict`` entry -> ``torchvision`` (ImageNet mean/std).
4. Anything else: :class:`AdapterError` listing the top-level keys and the adapters tried.
"""

from __future__ import annotations

from pathlib import Path

from clrbench.weights.adapters import foreign, native  # noqa: F401 - importing registers the adapters
from clrbench.weights.adapters.core import ADAPTERS, AdapterError, Encoder
from clrbench.weights.adapters.native import parse_random
from clrbench.weights.adapters.reading import read_checkpoint
from clrbench.weights.checkpoint import CheckpointError

__all__ = ["ADAPTERS", "AdapterError", "Encoder", "detect", "load_encoder", "parse_random"]

# Layout tests for step 3, in order: (predicate on the loaded dict, adapter name).
_LAYOUTS = [
    (lambda obj: obj.get("format") == "clrbench.checkpoint", "clrbench"),
    (foreign.is_simclr_v2, "simclr-v2"),
    (foreign.is_simclr_v1, "simclr-v1"),
    (lambda obj: foreign.is_lightning(obj) and foreign.is_solo_learn(obj), "solo-learn"),
    (foreign.is_lightning, "lightly"),
    (lambda obj: foreign.torchvision_state(obj) is not None, "torchvision"),
]


def detect(spec: str) -> str:
    """Which adapter a ``--checkpoint`` value goes to (order in the module docstring)."""
    if ":" in spec and not Path(spec).exists():
        prefix = spec.split(":", 1)[0]
        if prefix in ADAPTERS:
            return prefix
        raise AdapterError(f"Unknown checkpoint scheme {prefix!r} in {spec!r}; use a file path, "
                           f"or one of {', '.join(p + ':' for p in ADAPTERS.names())}.")
    p = Path(spec)
    if not p.exists():
        raise CheckpointError(f"No checkpoint at {p}.")
    if p.suffix == ".safetensors":
        return "safetensors"
    obj = read_checkpoint(p)
    for test, name in _LAYOUTS:
        if test(obj):
            return name
    inner = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else None
    where = f"; its state_dict keys start {sorted(inner)[:6]}" if inner else ""
    raise AdapterError(
        f"{p} matches no checkpoint layout clrbench knows (tried {', '.join(n for _, n in _LAYOUTS)}); "
        f"its top-level keys are {sorted(map(str, obj))[:8]}{where}. Force an adapter by naming it, "
        f"e.g. torchvision:{p}."
    )


def load_encoder(spec: str) -> Encoder:
    """Build the encoder named by ``spec`` (a path, ``random:<arch>,...``, ``torchvision:<arch>``, ``NAME:PATH``)."""
    return ADAPTERS.get(detect(spec))(spec)

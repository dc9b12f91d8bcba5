"""Protocol variants by name: ``fewshot-10`` (k = 10) and ``linear@32px`` / ``linear@native`` (resolution).

A variant is a shipped protocol with one field changed and a name of its own, so its records
never share a board column with the base protocol's:

- ``NAME-K``: a few-shot protocol (``kind: fewshot``) with ``k = K`` images per class.
- ``NAME@<R>px``: the images are preprocessed at R pixels instead of the card's size. The
  card's rule is kept and scaled so that its crop becomes R: resize the shorter side to
  ``round(card.resize * R / card.crop)`` (bicubic), centre-crop R. For the 224/224 cards this is
  "resize to R, centre-crop R"; a 32 x 32 CIFAR image at R = 32 is left as it is (no resize, no
  crop), which is how google-research/simclr evaluates its CIFAR models.
- ``NAME@native``: R is the encoder's training resolution (checkpoint metadata
  ``resolution``); :func:`resolve_native` turns it into ``NAME@<R>px`` per encoder when jobs
  are planned, so the record names the pixels actually used.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clrbench.config import ConfigError

_RES = re.compile(r"^(?P<base>.+?)@(?P<res>native|\d+(px)?)$")
_SHOTS = re.compile(r"^(?P<base>.+)-(?P<k>\d+)$")


class NativeResolutionError(ConfigError):
    """``@native`` asked for an encoder whose training resolution is not known."""


def split_resolution(name: str) -> tuple[str, str | None]:
    """``linear@32px`` -> (``linear``, ``32``); ``linear`` -> (``linear``, None)."""
    m = _RES.match(name)
    if m is None or Path(name).exists():
        return name, None
    return m["base"], m["res"].removesuffix("px")


def load_variant(name: str, directory: str | Path | None, load_file: Callable[..., Any]) -> Any | None:
    """The protocol a variant name stands for, or None when ``name`` is no variant.

    Args:
        name: a protocol name as given to ``--protocol``.
        directory: the protocols folder (None: shipped).
        load_file: reads a protocol file by name or path (``protocols._load_file``).

    Raises:
        ConfigError: ``@native`` (needs an encoder: :func:`resolve_native`), a resolution below
            8 px, or ``-K`` on a protocol that has no k.
    """
    base, res = split_resolution(name)
    proto = _with_shots(base, directory, load_file)
    if res is None:
        return proto
    if res == "native":
        raise ConfigError(f"{name}: the native resolution depends on the encoder; plan the jobs with "
                          "clrbench eval (it resolves @native per checkpoint).")
    px = int(res)
    if px < 8:
        raise ConfigError(f"{name}: a resolution of {px} px is too small (at least 8).")
    proto = proto if proto is not None else load_file(base, directory)
    return dataclasses.replace(proto, name=f"{proto.name}@{px}px", resolution=px)


def _with_shots(base: str, directory: str | Path | None, load_file: Callable[..., Any]) -> Any | None:
    m = _SHOTS.match(base)
    d = Path(directory) if directory else None
    if m is None or Path(base).exists() or (d is not None and (d / f"{base}.yaml").exists()):
        return None
    try:
        proto = load_file(m["base"], directory)
    except ConfigError:
        return None  # not a variant: the caller reports the unknown name
    if getattr(proto, "kind", None) != "fewshot":
        raise ConfigError(f"{base}: only few-shot protocols take -K (images per class); "
                          f"{m['base']} is a {proto.kind} protocol.")
    k = int(m["k"])
    if k < 1:
        raise ConfigError(f"{base}: k must be at least 1.")
    return dataclasses.replace(proto, name=base, k=k)


def resolve_native(protocol: str, meta: dict[str, Any], checkpoint: str = "") -> str:
    """``linear@native`` -> ``linear@<R>px`` with R the encoder's ``meta['resolution']``;
    ``linear@32`` -> ``linear@32px`` (the name it records under); others unchanged.

    Raises:
        NativeResolutionError: the encoder records no training resolution.
    """
    base, res = split_resolution(protocol)
    if res is None:
        return protocol
    if res != "native":
        return f"{base}@{int(res)}px"
    px = meta.get("resolution")
    if not px:
        raise NativeResolutionError(
            f"{checkpoint or 'this encoder'} records no training resolution, so {protocol} is undefined; "
            f"name the pixels instead, e.g. {base}@224px.")
    return f"{base}@{int(px)}px"


def scaled_preprocessing(pre: Any, resolution: int | None) -> Any:
    """The card's preprocessing with its crop scaled to ``resolution`` (module docstring); None: as is."""
    if resolution is None or resolution == pre.crop:
        return pre
    return dataclasses.replace(pre, resize=max(round(pre.resize * resolution / pre.crop), resolution),
                               crop=resolution)

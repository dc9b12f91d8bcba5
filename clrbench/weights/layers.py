"""Feature layers: which representation of a checkpoint a protocol reads (``encoder``, ``head:k``).

S-v1 evaluates the encoder output h (the pooled last stage) and throws the projection head
away; S-v2 keeps it and fine-tunes "from the 1st layer of the projection head" (S-v2 sec 2,
f_task(x) = W_task ReLU(BN(W_MLP h)); GR ``ft_proj_selector``). A feature layer names one:

- ``encoder`` (also ``pooled``, the name protocol files used before heads were kept): h, (B, d);
- ``head:k``, k >= 1: h through the first k layers of g, each Linear -> BN (-> ReLU), as
  :func:`clrbench.simclr.head.head_layers` splits them. ``head:k`` on a v2 head (3 layers)
  goes up to 3; the last layer's output is z, the input of the contrastive loss.

A layer the checkpoint does not have (any foreign encoder, ``head:3`` on a 2-layer v1 head)
is a :class:`FeatureLayerError`: one sentence, never a silent fall-back to h.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from clrbench.errors import UserError

if TYPE_CHECKING:
    from clrbench.weights.adapters.core import Encoder

ENCODER_NAMES = ("encoder", "pooled")
_HEAD = re.compile(r"^head:([1-9][0-9]*)$")


class FeatureLayerError(UserError, ValueError):
    """A feature layer that is malformed, or that the checkpoint does not have; one sentence."""


def parse_feature_layer(layer: str) -> int:
    """``encoder``/``pooled`` -> 0, ``head:k`` -> k.

    Raises:
        FeatureLayerError: anything else (e.g. ``head_layer1``, ``head:0``).
    """
    if layer in ENCODER_NAMES:
        return 0
    m = _HEAD.match(str(layer))
    if m is None:
        raise FeatureLayerError(f"feature layer {layer!r} is not one of encoder, head:1, head:2, ... "
                                "(the pooled encoder output, or the output of the k-th projection-head layer).")
    return int(m.group(1))


def canonical(layer: str) -> str:
    """One spelling per layer: ``pooled`` for the encoder (the name feature caches were keyed
    by before heads were kept, so old cache entries stay valid), ``head:k`` otherwise."""
    k = parse_feature_layer(layer)
    return "pooled" if k == 0 else f"head:{k}"


def head_depth(encoder: Encoder) -> int:
    """How many head layers ``encoder`` carries (0 without a head)."""
    if encoder.head is None:
        return 0
    from clrbench.simclr.head import head_layers

    return len(head_layers(encoder.head))


def at_layer(encoder: Encoder, layer: str) -> Encoder:
    """``encoder`` whose module outputs the features of ``layer``.

    For ``head:k`` the module is ``Sequential(encoder, first k head layers)``, ``meta``'s
    ``feature_dim`` is that layer's width and ``sha256`` covers the head weights too (so a
    feature cache or a fine-tune folder keyed by it never mixes layers). ``encoder`` itself is
    returned for the encoder layer.

    Raises:
        FeatureLayerError: the checkpoint has no head, or fewer than k layers.
    """
    k = parse_feature_layer(layer)
    if k == 0:
        return encoder
    depth = head_depth(encoder)
    if depth == 0:
        why = ("its adapter keeps no projection head" if encoder.kind != "clrbench"
               else "it was pretrained without a projection head")
        raise FeatureLayerError(f"feature layer {layer} needs a projection head, but {encoder.checkpoint_id} has "
                                f"none ({why}); use feature layer encoder.")
    if k > depth:
        kind = (encoder.head_meta or {}).get("kind", "?")
        raise FeatureLayerError(f"feature layer {layer} does not exist: {encoder.checkpoint_id} has a {depth}-layer "
                                f"{kind} head (use head:1 .. head:{depth}, or encoder).")
    from torch import nn

    from clrbench.simclr.head import head_layers

    assert encoder.head is not None  # head_depth above is 0 without one
    layers = head_layers(encoder.head)[:k]
    module = nn.Sequential(encoder.module, *layers).eval()
    width = next(m.out_features for m in reversed(list(layers[-1].modules())) if isinstance(m, nn.Linear))
    sha = hashlib.sha256(f"{encoder.sha256}+head:{encoder.head_sha256}:{k}".encode()).hexdigest()
    meta = {**encoder.meta, "feature_dim": int(width), "feature_layer": f"head:{k}"}
    return replace(encoder, module=module, meta=meta, sha256=sha)


def default_layer(encoder: Encoder) -> str:
    """S-v2's fine-tuning start: ``head:1`` when the checkpoint has a 3-layer (v2) head, else
    the encoder (S-v2 sec 2: from the 1st layer of a 3-layer head; a 2-layer v1 head is
    fine-tuned from its input, as S-v1 does)."""
    return "head:1" if head_depth(encoder) >= 3 else "encoder"

"""--checkpoint specs: clrbench files and random init (other adapters are tested beside them)."""

from __future__ import annotations

import pytest

from clrbench.adapters import AdapterError, detect, load_encoder, parse_random
from clrbench.checkpoint import CheckpointError


def test_random_spec_parsing_and_determinism() -> None:
    f = parse_random("random:resnet18,width=0.25,stem=cifar,seed=3")
    assert f == {"arch": "resnet18", "width": 0.25, "stem": "cifar", "seed": 3}
    a = load_encoder("random:resnet18,width=0.125,stem=cifar")
    b = load_encoder("random:resnet18,width=0.125,stem=cifar")
    assert a.sha256 == b.sha256 and a.checkpoint_id == "random-resnet18-w0.125-cifar-s0"
    assert a.meta["feature_dim"] == 64 and a.meta["input_range"] == [0.0, 1.0]
    with pytest.raises(AdapterError, match="width=, stem= and seed="):
        parse_random("random:resnet18,depth=3")


def test_unknown_scheme_and_missing_file() -> None:
    with pytest.raises(AdapterError, match="Unknown checkpoint scheme"):
        detect("imagenet:resnet50")
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        detect("nothing/here.pt")

"""The projection head travels with the encoder (S-v2): checkpoints, feature layers, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from clrbench.config import ModelConfig, PretrainConfig, load_pretrain_config, to_dict
from clrbench.simclr.model import SimCLR
from clrbench.weights.adapters import load_encoder
from clrbench.weights.checkpoint import FORMAT, FORMAT_VERSION, encoder_metadata, head_metadata
from clrbench.weights.layers import (
    FeatureLayerError,
    at_layer,
    canonical,
    default_layer,
    parse_feature_layer,
)


def tiny_checkpoint(path: Path, head: str = "v2", with_meta: bool = True, seed: int = 0) -> Path:
    """A clrbench checkpoint of a random width-0.125 ResNet-18 + ``head`` (BN stats made non-trivial)."""
    torch.manual_seed(seed)
    cfg = PretrainConfig(model=ModelConfig(arch="resnet18", width=0.125, stem="cifar", head=head, head_dim=16))
    model = SimCLR(cfg.model)
    for m in model.modules():  # non-default running stats, so eval-mode BN is really exercised
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.state_dict(),
            "encoder": encoder_metadata("resnet18", 0.125, "cifar", model.feature_dim), "config": to_dict(cfg)}
    if with_meta:
        ckpt["head"] = head_metadata(head, model.feature_dim, 16, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def test_feature_layer_names() -> None:
    assert parse_feature_layer("encoder") == parse_feature_layer("pooled") == 0
    assert parse_feature_layer("head:1") == 1 and parse_feature_layer("head:3") == 3
    assert canonical("encoder") == "pooled" and canonical("head:2") == "head:2"
    for bad in ("head_layer1", "head:0", "head:", "layer4", "head:-1"):
        with pytest.raises(FeatureLayerError, match="is not one of encoder, head:1"):
            parse_feature_layer(bad)


def test_head1_features_equal_a_manual_forward(tmp_path: Path) -> None:
    """head:1 = ReLU(BN(W1 h)) with BN in inference mode (S-v2 sec 2; GR hiddens_list[1])."""
    enc = load_encoder(str(tiny_checkpoint(tmp_path / "v2.pt")))
    assert enc.head_meta["kind"] == "v2" and enc.head is not None
    x = torch.rand(5, 3, 16, 16)
    got = at_layer(enc, "head:1").module(x)
    with torch.no_grad():
        h = enc.module(x)
        lin, bn = enc.head[0], enc.head[1]
        pre = h @ lin.weight.T
        manual = torch.relu((pre - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    assert got.shape == (5, enc.head_meta["in_dim"])
    torch.testing.assert_close(got, manual, rtol=1e-5, atol=1e-5)
    z = at_layer(enc, "head:3")
    assert z.meta["feature_dim"] == 16 and z.module(x).shape == (5, 16)
    assert at_layer(enc, "encoder") is enc
    assert len({enc.sha256, at_layer(enc, "head:1").sha256, z.sha256}) == 3  # caches never mix layers


def test_missing_layers_are_one_sentence(tmp_path: Path) -> None:
    v1 = load_encoder(str(tiny_checkpoint(tmp_path / "v1.pt", head="v1")))
    assert at_layer(v1, "head:2").meta["feature_dim"] == 16
    with pytest.raises(FeatureLayerError, match="has a 2-layer v1 head"):
        at_layer(v1, "head:3")
    foreign = load_encoder("random:resnet18,width=0.125,stem=cifar")
    with pytest.raises(FeatureLayerError, match="keeps no projection head"):
        at_layer(foreign, "head:1")
    assert default_layer(v1) == "encoder" and default_layer(foreign) == "encoder"
    assert default_layer(load_encoder(str(tiny_checkpoint(tmp_path / "v2.pt")))) == "head:1"


def test_old_checkpoints_rebuild_their_head_from_the_config(tmp_path: Path) -> None:
    old = load_encoder(str(tiny_checkpoint(tmp_path / "old.pt", with_meta=False)))
    new = load_encoder(str(tiny_checkpoint(tmp_path / "new.pt")))
    assert old.head_meta == new.head_meta and old.head_sha256 == new.head_sha256


def test_pretraining_keeps_the_head_and_torchvision_loads_the_encoder(tmp_path: Path) -> None:
    import torchvision

    from clrbench.pretraining.train import train_loop
    from clrbench.weights.checkpoint import encoder_state, load_clrbench

    cfg = load_pretrain_config("quickstart-v2", [
        "model.width=0.125", "model.head_dim=16", "data.num_images=64", "optim.batch_size_global=16",
        "optim.steps=1", "augment.image_size=16", "run.precision=fp32", f"run.out={tmp_path}", "run.name=v2"])
    ckpt = load_clrbench(train_loop(cfg).checkpoint)
    assert ckpt["head"] == {"kind": "v2", "in_dim": 64, "out_dim": 16, "hidden_dim": None}
    assert any(k.startswith("head.6.") for k in ckpt["model"])  # the 3rd (output) layer is there
    tv = torchvision.models.resnet18()  # same key names (the widths differ): names only
    names = set(encoder_state(ckpt))
    assert names and names <= set(tv.state_dict()) and not any(k.startswith("head") for k in names)


def test_export_writes_the_head_only_when_asked(tmp_path: Path) -> None:
    from safetensors import safe_open

    from clrbench.weights.checkpoint import CheckpointError
    from clrbench.weights.export import export_encoder

    src = str(tiny_checkpoint(tmp_path / "v2.pt"))
    plain, _ = export_encoder(src, tmp_path / "enc.safetensors")
    with safe_open(str(plain), "pt") as f:
        assert not any(k.startswith("head.") for k in f.keys())  # noqa: SIM118
    assert load_encoder(str(plain)).head is None
    full, _ = export_encoder(src, tmp_path / "full.safetensors", with_head=True)
    back, orig = load_encoder(str(full)), load_encoder(src)
    assert back.head_meta == orig.head_meta and back.head_sha256 == orig.head_sha256
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(at_layer(back, "head:2").module(x), at_layer(orig, "head:2").module(x))
    with pytest.raises(CheckpointError, match="carries no projection head"):
        export_encoder("random:resnet18,width=0.125,stem=cifar", tmp_path / "r.safetensors", with_head=True)

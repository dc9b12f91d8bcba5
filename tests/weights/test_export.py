"""`clrbench export`: the encoder alone as .safetensors, loadable by torchvision, metadata intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file
from test_adapters import X, features, randomised  # tests/ is on sys.path (pyproject pythonpath)
from torch import nn
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.weights.adapters import load_encoder
from clrbench.weights.checkpoint import encoder_metadata, sha256_file, sha256_state
from clrbench.weights.export import export_encoder

runner = CliRunner()


def _clrbench_ckpt(path: Path, module: nn.Module, arch: str, width: float, stem: str) -> Path:
    dim = module.feature_dim  # type: ignore[attr-defined]
    torch.save({"format": "clrbench.checkpoint", "format_version": 1,
                "model": {f"encoder.{k}": v for k, v in module.state_dict().items()},
                "encoder": encoder_metadata(arch, width, stem, int(dim))}, path)
    return path


def test_export_round_trip_through_torchvision(tmp_path: Path) -> None:
    """clrbench .pt -> export -> torchvision.models.resnet18 and the torchvision adapter: same h."""
    src = randomised("resnet18", 1.0)
    ckpt = _clrbench_ckpt(tmp_path / "last.pt", src, "resnet18", 1.0, "imagenet")
    out, _ = export_encoder(str(ckpt), tmp_path / "enc.safetensors")
    state = load_file(out)
    tv = torchvision.models.resnet18()
    result = tv.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    tv.fc = nn.Identity()
    want = features(src)
    assert torch.equal(features(tv), want)
    assert torch.equal(features(load_encoder(str(out)).module), want)  # the safetensors adapter
    torch.save(state, tmp_path / "as_torchvision.pth")
    enc = load_encoder(f"torchvision:{tmp_path / 'as_torchvision.pth'}")
    assert enc.kind == "torchvision" and torch.equal(features(enc.module), want)


def test_export_metadata_and_resnet50_keys(tmp_path: Path) -> None:
    """Width-1 ResNet-50: torchvision.models.resnet50() loads it with only fc missing (strict=False)."""
    out, enc = export_encoder("random:resnet50", tmp_path / "r50.safetensors")
    with safe_open(str(out), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == "clrbench.encoder" and json.loads(header["width"]) == 1.0
    assert json.loads(header["input_range"]) == [0.0, 1.0] and json.loads(header["mean"]) is None
    assert header["weights_sha256"] == enc.sha256 and header["clrbench_version"]
    result = torchvision.models.resnet50().load_state_dict(load_file(out), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys


def test_export_keeps_foreign_preprocessing(tmp_path: Path) -> None:
    """A solo-learn CIFAR encoder keeps its mean/std and conv1 padding through export."""
    src = randomised("resnet18", 0.125, "cifar")
    src.conv1.padding = (2, 2)
    sd = {f"backbone.{k}": v for k, v in src.state_dict().items()} | {"classifier.weight": torch.zeros(2, 64)}
    torch.save({"epoch": 1, "state_dict": sd}, tmp_path / "solo.ckpt")
    out, enc = export_encoder(str(tmp_path / "solo.ckpt"), tmp_path / "solo.safetensors")
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["source_sha256"] == sha256_file(tmp_path / "solo.ckpt")
    back = load_encoder(str(out))
    assert back.meta["conv1_padding"] == 2 and back.meta["mean"][0] == 0.4914
    assert back.sha256 == enc.sha256 != sha256_state(load_file(out))  # padding salts the cache key
    assert torch.equal(features(back.module), features(src))


def test_export_cli(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "enc.safetensors"
    r = runner.invoke(app, ["export", "--checkpoint", "random:resnet18,width=0.125,stem=cifar", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Wrote" in r.output and "no mean/std" in r.output and out.is_file()
    assert not list(out.parent.glob(".*.tmp"))  # atomic: no temp file left behind
    enc = load_encoder(str(out))
    assert enc.meta["feature_dim"] == 64 and enc.module(X).shape == (2, 64)


@pytest.mark.parametrize(("args", "message"), [
    (["--checkpoint", "missing/file.pt", "--out", "x.safetensors"], "No checkpoint at missing/file.pt"),
    (["--checkpoint", "random:resnet18,width=0.125", "--out", "x.pt"], "must end in .safetensors"),
    (["--checkpoint", "weights:thing", "--out", "x.safetensors"], "Unknown checkpoint scheme"),
])
def test_export_cli_bad_input_is_one_sentence(tmp_path: Path, args: list[str], message: str) -> None:
    r = runner.invoke(app, ["export", *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output

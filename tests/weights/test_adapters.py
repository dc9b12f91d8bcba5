"""--checkpoint specs: every adapter's layout loads strictly, infers its shape, and runs nothing.

Synthetic state dicts are written in each converter's / library's key layout (read from
tonylins/simclr-converter, Separius/SimCLRv2-Pytorch, lightly, solo-learn) from a tiny
randomised clrbench encoder, and must give that encoder's features back exactly.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from clrbench.simclr.encoder import build_encoder
from clrbench.weights.adapters import AdapterError, detect, load_encoder, parse_random
from clrbench.weights.adapters.core import IMAGENET_MEAN, infer_architecture
from clrbench.weights.checkpoint import CheckpointError, encoder_metadata

X = torch.rand(2, 3, 32, 32)


def randomised(arch: str, width: float, stem: str = "imagenet", seed: int = 0) -> nn.Module:
    """An encoder whose every weight and BN statistic is random (zero-init gammas hide bugs)."""
    torch.manual_seed(seed)
    module, _ = build_encoder(arch, width, stem)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("running_var") else torch.randn_like(t) * 0.2)
    return module.eval()


def features(module: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(X)


def lightning(state: dict[str, torch.Tensor], **extra: object) -> dict[str, object]:
    return {"epoch": 3, "global_step": 12, "pytorch-lightning_version": "2.2.0", "state_dict": state, **extra}


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


def test_clrbench_checkpoint(tmp_path: Path) -> None:
    src = randomised("resnet18", 0.125, "cifar")
    ckpt = {"format": "clrbench.checkpoint", "format_version": 1,
            "model": {f"encoder.{k}": v for k, v in src.state_dict().items()} | {"head.w": torch.zeros(1)},
            "encoder": encoder_metadata("resnet18", 0.125, "cifar", 64)}
    torch.save(ckpt, tmp_path / "last.pt")
    enc = load_encoder(str(tmp_path / "last.pt"))
    assert enc.kind == "clrbench" and enc.meta["mean"] is None
    assert torch.equal(features(enc.module), features(src))


@pytest.mark.parametrize(("arch", "width", "stem"), [("resnet50", 1.0, "imagenet"), ("resnet50", 2.0, "imagenet"),
                                                     ("resnet50", 4.0, "imagenet"), ("resnet152", 3.0, "imagenet"),
                                                     ("resnet18", 0.25, "cifar"), ("resnet34", 1.0, "cifar")])
def test_architecture_inferred_from_shapes(arch: str, width: float, stem: str) -> None:
    with torch.device("meta"):  # shapes only: a 4x ResNet-50 costs nothing here
        state = build_encoder(arch, width, stem)[0].state_dict()
    assert infer_architecture(state, "test") == (arch, width, stem)


def test_torchvision_state_dict_file(tmp_path: Path) -> None:
    src = randomised("resnet18", 0.125)
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}  # DataParallel-saved
    sd |= {"module.fc.weight": torch.zeros(10, 64), "module.fc.bias": torch.zeros(10)}
    torch.save(sd, tmp_path / "sup.pth")
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": sd}, tmp_path / "examples.pth.tar")
    for name in ("sup.pth", "examples.pth.tar"):  # plain, and pytorch/examples' ImageNet checkpoint
        assert detect(str(tmp_path / name)) == "torchvision"
        enc = load_encoder(str(tmp_path / name))
        assert enc.meta["mean"] == IMAGENET_MEAN and enc.meta["input_range"] == [0.0, 1.0]
        assert torch.equal(features(enc.module), features(src))


def test_torchvision_hub_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CheckpointError, match=r"torchvision\.models\.resnet18\(weights='DEFAULT'\)"):
        load_encoder("torchvision:resnet18")
    tv = torchvision.models.resnet18()
    name = torchvision.models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    (tmp_path / "checkpoints").mkdir()
    torch.save(tv.state_dict(), tmp_path / "checkpoints" / name)
    enc = load_encoder("torchvision:resnet18")
    tv.fc = nn.Identity()
    assert enc.checkpoint_id.startswith("torchvision-resnet18-") and enc.meta["std"] is not None
    assert torch.equal(features(enc.module), features(tv))


def test_simclr_v1_converted_layout(tmp_path: Path) -> None:
    """tonylins/simclr-converter: torch.save({'state_dict': resnet50xW().state_dict()})."""
    src = randomised("resnet50", 0.125)
    sd = dict(src.state_dict()) | {"fc.weight": torch.zeros(1000, 256), "fc.bias": torch.zeros(1000)}
    torch.save({"state_dict": sd}, tmp_path / "resnet50-1x.pth")
    assert detect(str(tmp_path / "resnet50-1x.pth")) == "simclr-v1"
    enc = load_encoder(str(tmp_path / "resnet50-1x.pth"))
    assert (enc.meta["arch"], enc.meta["width"], enc.meta["stem"]) == ("resnet50", 0.125, "imagenet")
    assert enc.meta["mean"] is None and enc.meta["std"] is None  # SimCLR: [0, 1], no normalisation
    assert torch.equal(features(enc.module), features(src))


def _separius(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision names -> Separius/SimCLRv2-Pytorch resnet.py names (sk0), written out by hand."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] == "conv1":
            out["net.0.0.weight"] = v
        elif parts[0] == "bn1":
            out[f"net.0.1.0.{parts[1]}"] = v
        else:
            stage, block, mod, rest = parts[0][-1], parts[1], parts[2], ".".join(parts[3:])
            base = f"net.{stage}.blocks.{block}"
            if mod == "downsample":
                out[f"{base}.projection.shortcut.weight" if parts[3] == "0" else
                    f"{base}.projection.bn.0.{'.'.join(parts[4:])}"] = v
            elif mod.startswith("conv"):
                out[f"{base}.net.{2 * (int(mod[-1]) - 1)}.weight"] = v
            else:
                out[f"{base}.net.{2 * (int(mod[-1]) - 1) + 1}.0.{rest}"] = v
    return out


def test_simclr_v2_converted_layout(tmp_path: Path) -> None:
    src = randomised("resnet50", 0.25)
    resnet = _separius(src.state_dict()) | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save({"resnet": resnet, "head": {"layers.0.weight": torch.zeros(4, 4)}}, tmp_path / "r50_1x_sk0.pth")
    assert detect(str(tmp_path / "r50_1x_sk0.pth")) == "simclr-v2"
    enc = load_encoder(str(tmp_path / "r50_1x_sk0.pth"))
    assert (enc.meta["arch"], enc.meta["width"], enc.meta["mean"]) == ("resnet50", 0.25, None)
    assert torch.equal(features(enc.module), features(src))
    sk = dict(resnet) | {"net.1.blocks.0.net.2.main_conv.0.weight": torch.zeros(1)}
    torch.save({"resnet": sk, "head": {}}, tmp_path / "r50_1x_sk1.pth")
    with pytest.raises(AdapterError, match="selective-kernel"):
        load_encoder(str(tmp_path / "r50_1x_sk1.pth"))


def test_lightly_layouts(tmp_path: Path) -> None:
    """Named torchvision backbone, nn.Sequential of its children, and ResNetGenerator (CIFAR)."""
    src = randomised("resnet18", 0.125)
    named = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    heads = {"projection_head.layers.0.weight": torch.zeros(8, 64), "online_classifier.w": torch.zeros(1)}
    hp = {"hyper_parameters": {"args": argparse.Namespace(lr=0.1, data=Path("x"))}}  # pickled config
    torch.save(lightning(named | heads, **hp), tmp_path / "named.ckpt")
    children = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    seq = {f"backbone.{children[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in src.state_dict().items()}
    torch.save(lightning(seq | heads), tmp_path / "seq.ckpt")
    for name in ("named.ckpt", "seq.ckpt"):
        assert detect(str(tmp_path / name)) == "lightly"
        enc = load_encoder(str(tmp_path / name))
        assert enc.meta["mean"] == IMAGENET_MEAN and enc.meta["stem"] == "imagenet"
        assert torch.equal(features(enc.module), features(src))
    cifar = randomised("resnet18", 0.125, "cifar")
    gen_children = {"conv1": "0", "bn1": "1", "layer1": "2", "layer2": "3", "layer3": "4", "layer4": "5"}
    gen = {f"backbone.{gen_children[k.split('.')[0]]}.{k.split('.', 1)[1]}".replace(".downsample.", ".shortcut."): v
           for k, v in cifar.state_dict().items()}
    torch.save(lightning(gen | heads), tmp_path / "gen.ckpt")
    enc = load_encoder(str(tmp_path / "gen.ckpt"))
    assert (enc.meta["stem"], enc.meta["width"]) == ("cifar", 0.125)
    assert torch.equal(features(enc.module), features(cifar))


def test_solo_learn_layout_cifar_stem(tmp_path: Path) -> None:
    """solo-learn: backbone./projector./classifier./momentum_backbone.; CIFAR conv1 pads by 2."""
    src = randomised("resnet18", 0.125, "cifar")
    src.conv1.padding = (2, 2)  # solo/methods/base.py: Conv2d(3, 64, 3, 1, padding=2)
    sd = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    sd |= {f"momentum_backbone.{k}": v * 0 for k, v in src.state_dict().items()}
    sd |= {"projector.0.weight": torch.zeros(8, 64), "classifier.weight": torch.zeros(10, 64)}
    torch.save(lightning(sd), tmp_path / "solo.ckpt")
    assert detect(str(tmp_path / "solo.ckpt")) == "solo-learn"
    enc = load_encoder(str(tmp_path / "solo.ckpt"))
    assert enc.meta["conv1_padding"] == 2 and enc.meta["stem"] == "cifar" and enc.meta["mean"][0] == 0.4914
    assert torch.equal(features(enc.module), features(src))


def test_wrong_layouts_list_the_keys(tmp_path: Path) -> None:
    src = randomised("resnet18", 0.125)
    sd = {f"backbone.{k}": v for k, v in src.state_dict().items() if not k.startswith("layer2.1.bn1.")}
    sd["backbone.extra.weight"] = torch.zeros(1)
    torch.save(lightning(sd), tmp_path / "broken.ckpt")
    with pytest.raises(AdapterError, match=r"lightly adapter .* 1 unexpected keys \(extra\.weight\)") as e:
        load_encoder(str(tmp_path / "broken.ckpt"))
    assert "missing keys" in str(e.value) and "layer2.1.bn1" in str(e.value)  # listed with counts
    torch.save({"weights": {"a": torch.zeros(1)}, "step": 3}, tmp_path / "odd.pt")
    with pytest.raises(AdapterError, match=r"matches no checkpoint layout .*simclr-v2.*\['step', 'weights'\]"):
        load_encoder(str(tmp_path / "odd.pt"))
    torch.save({"state_dict": dict(src.state_dict())}, tmp_path / "v1.pth")
    with pytest.raises(AdapterError, match="simclr-v2 adapter expects a 'resnet' entry"):
        load_encoder(f"simclr-v2:{tmp_path / 'v1.pth'}")  # a forced adapter that does not fit


class _Touch:
    """Unpickling this would create ``path`` (a file side effect) if code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.open, (str(self.path), "w"))


class _HiddenSystem:
    """A hostile call behind an allowed-looking global (functools.partial wrapping os.system)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (functools.partial, (os.system, f"touch {self.path}"))


@pytest.mark.parametrize("payload", [_Touch, _HiddenSystem])
def test_code_running_pickle_runs_nothing(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    state = {f"backbone.{k}": v for k, v in randomised("resnet18", 0.125).state_dict().items()}
    torch.save(lightning(state, hyper_parameters={"x": payload(marker)}), tmp_path / "evil.ckpt")
    for spec in (str(tmp_path / "evil.ckpt"), f"lightly:{tmp_path / 'evil.ckpt'}"):
        with pytest.raises(CheckpointError, match=r"pickled code that would run on load.*refuses"):
            load_encoder(spec)
    assert not marker.exists()

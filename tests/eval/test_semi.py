"""Semi-supervised protocols (S-v2): subset balance and determinism, protocol files, layer
choice, and one tiny end-to-end run that stores the selected network for distillation."""

from __future__ import annotations

from pathlib import Path

import pytest

from clrbench.config import ConfigError
from clrbench.eval.finetune.semi import scaled_lr, schedule, subset_from_file
from clrbench.eval.jobs import EvalError
from clrbench.eval.protocols import SemiProtocol, load_protocol, with_feature_layer


def test_subset_file_matches_file_names(tmp_path: Path) -> None:
    ids = [f"/data/imagenet/train/n01/n01_{i}.JPEG" for i in range(6)]
    lst = tmp_path / "1percent.txt"
    lst.write_text("n01_4.JPEG\nn01_1.JPEG\n\n")
    assert subset_from_file(ids, lst).tolist() == [1, 4]
    lst.write_text("n01_4.JPEG\nn99_1.JPEG\n")
    with pytest.raises(EvalError, match="1 of the 2 images"):
        subset_from_file(ids, lst)
    with pytest.raises(EvalError, match="cannot read the subset file"):
        subset_from_file(ids, tmp_path / "missing.txt")


def test_shipped_semi_protocols_are_the_papers() -> None:
    ten, one = load_protocol("semi-10pct"), load_protocol("semi-1pct")
    assert isinstance(ten, SemiProtocol) and ten.fraction == 0.1 and ten.epochs == 30
    assert one.fraction == 0.01 and one.epochs == 60  # S-v2 sec 3
    for p in (ten, one):
        assert p.optimizer == "lars" and p.lr_scaling == "sqrt" and 0.005 in p.lr_bases and p.batch_size == 1024
        assert p.feature_layer == "auto" and p.crop_scale == (0.08, 1.0)
    assert scaled_lr(ten, 0.005, 1024) == pytest.approx(0.16)  # GR README: 0.005 x sqrt(1024)
    assert schedule(ten, 100) == (100, 30) and schedule(ten, 5000) == (1024, 150)
    assert load_protocol("semi").per_class == 10
    imnet = load_protocol("semi-imagenet-1pct")
    assert imnet.subset_file and imnet.subset_file.endswith("1percent.txt")


def test_bad_semi_protocols_are_refused(tmp_path: Path) -> None:
    base = "name: s\nversion: 1\nkind: semi\n"
    cases = {"": "exactly one of", "fraction: 0.1\nper_class: 3\n": "exactly one of",
             "fraction: 1.5\n": "fraction must be", "fraction: 0.1\nfeature_layer: head_layer1\n": "is not one of"}
    for i, (body, msg) in enumerate(cases.items()):
        p = tmp_path / f"s{i}.yaml"
        p.write_text(base + body)
        with pytest.raises(ConfigError, match=msg):
            load_protocol(str(p))
    p = tmp_path / "lin.yaml"
    p.write_text("name: l\nversion: 1\nkind: linear\nfeature_layer: head_layer1\n")
    with pytest.raises(ConfigError, match="is not one of encoder"):
        load_protocol(str(p))


def test_feature_layer_override_writes_a_named_protocol(tmp_path: Path) -> None:
    assert with_feature_layer("linear", "encoder", tmp_path) == "linear"
    path = with_feature_layer("linear", "head:1", tmp_path)
    derived = load_protocol(path)
    assert derived.name == "linear-head1" and derived.feature_layer == "head:1"
    assert derived.lambda_num == load_protocol("linear").lambda_num
    assert load_protocol(with_feature_layer("semi-10pct", "encoder", tmp_path)).name == "semi-10pct-encoder"
    with pytest.raises(ConfigError, match="--feature-layer"):
        with_feature_layer("linear", "layer4", tmp_path)


TINY = """name: semi-tiny
version: 1
kind: semi
per_class: 4
lr_bases: [0.005, 0.02]
epochs: 2
batch_size: 32
train_resize_crop: 16
test_resize: 16
test_crop: 16
precision: fp32
"""


@pytest.mark.slow
def test_semi_record_from_head1_and_the_stored_teacher(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "weights"))
    from test_head_layers import tiny_checkpoint

    from clrbench.eval.finetune.stored import load_model
    from clrbench.eval.jobs import EvalJob
    from clrbench.eval.runners import run_job

    proto = tmp_path / "semi-tiny.yaml"
    proto.write_text(TINY)
    ckpt = str(tiny_checkpoint(tmp_path / "v2.pt"))
    rec = run_job(EvalJob(ckpt, "v2", "digits", str(proto), cache_dir=str(tmp_path / "cache")))
    assert rec.status == "ok" and rec.protocol == "semi-tiny" and 0 <= rec.value <= 100
    assert rec.hparams["feature_layer"] == "head:1" and rec.tags["labelled"] == 40  # 4 x 10 digits
    assert rec.tags["labelled_per_class"] == [4, 4] and len(rec.tags["subset_hash"]) == 64
    assert len(rec.val_curve) == 2 and rec.split_sizes["train"] == 1008
    teacher = load_model(rec.tags["model"]["path"])
    assert teacher.sha256 == rec.tags["model"]["sha256"] and teacher.info["feature_depth"] == 1
    assert len(teacher.info["subset"]) == 40 and teacher.info["task"] == "digits"


def test_cli_refuses_a_layer_the_checkpoint_lacks(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clrbench.cli import app

    args = ["eval", "--checkpoint", "random:resnet18,width=0.125,stem=cifar", "--tasks", "digits",
            "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, [*args, "--feature-layer", "head:1"])
    assert res.exit_code == 2 and "needs a projection head" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*args, "--feature-layer", "head_layer1"])
    assert res.exit_code == 2 and "is not one of encoder" in res.output

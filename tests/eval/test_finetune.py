"""Fine-tune protocol (S-v1 B.8.1; protocol.md §2.2): grid, BN rule, selection on val only,
divergence, resumable trials, trial jobs, and the CLI on the quick suite. Tiny models, CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clrbench.data.images import ArrayImages
from clrbench.eval.finetune import grid as grid_mod
from clrbench.eval.finetune import trainer as ft
from clrbench.eval.finetune.grid import TrialJob
from clrbench.eval.finetune.images import ImageSizes, StepBatches, crop_box
from clrbench.eval.jobs import EvalJob
from clrbench.eval.protocols import load_protocol
from clrbench.eval.runners import plan_trials, run_job, write_result
from clrbench.weights.adapters import load_encoder

RANDOM = "random:resnet18,width=0.125,stem=cifar"
TINY = """name: ft-tiny
version: 1
kind: finetune
steps: {steps}
batch_size: 32
lrs: [1.0e-2, 1.0e-1]
wds: [0.0]
train_resize_crop: 16
test_resize: 16
test_crop: 16
crop_scale: [0.25, 1.0]
checkpoint_every: 4
"""


def _protocol(tmp_path: Path, steps: int = 6) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "ft-tiny.yaml"
    path.write_text(TINY.format(steps=steps))
    return str(path)


def _job(tmp_path: Path, steps: int = 6, **options: object) -> EvalJob:
    return EvalJob(RANDOM, "rnd", "digits", _protocol(tmp_path, steps), cache_dir=str(tmp_path / "cache"),
                   options=dict(options))


def _spec(**kw: object) -> ft.TrialSpec:
    base = dict(lr=0.05, wd=1e-4, weight_decay=1e-4 / 0.05, seed=3, steps=6, batch_size=16, momentum=0.9,
                schedule="cosine", bn_momentum=0.1, sizes=ImageSizes(16, 16, 16), crop_scale=(0.25, 1.0),
                precision="auto", checkpoint_every=2, num_classes=3, multilabel=False)
    return ft.TrialSpec(**{**base, **kw})


def _images(n: int = 40, classes: int = 3, multilabel: bool = False) -> ArrayImages:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 20, 24, 3), dtype=np.uint8)
    if multilabel:
        y = rng.integers(0, 2, (n, classes)).astype(np.uint8)
        return ArrayImages(images, y, classes, ignore=rng.random((n, classes)) < 0.2)
    return ArrayImages(images, np.arange(n) % classes, classes)


# ----------------------------------------------------------------------------- the paper's figures


def test_default_protocol_is_the_papers() -> None:
    p = load_protocol("finetune")
    assert (p.steps, p.batch_size, p.nesterov_momentum, p.wd_divided_by_lr) == (20000, 256, 0.9, True)
    np.testing.assert_allclose(p.lrs, np.logspace(-4, -1, 7), rtol=1e-12)
    np.testing.assert_allclose(p.wds, [0.0, *np.logspace(-6, -3, 7)], rtol=1e-12)
    assert len(grid_mod.grid(p)) == 56
    assert (p.train_resize_crop, p.test_resize, p.test_crop, p.crop_scale) == (224, 256, 224, (0.08, 1.0))
    assert p.bn_momentum_rule == "simclr" and p.resources.get("num_gpus") == 1
    rand = load_protocol("finetune-random-init")  # S-v1 B.8.1's random-init baseline
    assert rand.steps == 40000
    np.testing.assert_allclose(rand.lrs, np.logspace(-3, 0, 7), rtol=1e-12)
    np.testing.assert_allclose(rand.wds, np.logspace(-5, -1.5, 8), rtol=1e-12)
    short = load_protocol("finetune-short")
    assert short.name == "finetune-short" and short.steps < p.steps and len(grid_mod.grid(short)) < 56


def test_image_sizes_come_from_the_protocol_or_the_card() -> None:
    from clrbench.data.cards import load_cards

    digits = load_cards()["digits"]
    assert grid_mod.image_sizes(load_protocol("finetune"), digits) == ImageSizes(224, 256, 224)
    assert grid_mod.image_sizes(load_protocol("finetune-short"), digits) == ImageSizes(32, 32, 32)


def test_bn_momentum_is_the_complement_of_tf_decay() -> None:
    # protocol.md §2.2: Flowers 1,020 / 256 -> s = 4 -> 0.1; Food 68,175 / 256 -> s = 267 -> 10/267.
    assert ft.steps_per_epoch(1020, 256) == 4 and ft.bn_momentum(1020, 256) == 0.1
    assert ft.steps_per_epoch(68175, 256) == 267 and ft.bn_momentum(68175, 256) == pytest.approx(10 / 267)
    assert ft.bn_momentum(68175, 256) == pytest.approx(1 - max(1 - 10 / 267, 0.9))
    assert ft.bn_momentum(68175, 256, "torch_default") == 0.1
    net = ft.build_net(load_encoder(RANDOM), _spec(bn_momentum=0.0375), torch.device("cpu"))
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.0375 for m in bns)


def test_weight_decay_is_divided_by_the_lr() -> None:
    lr, wd = 0.01, 1e-4
    assert ft.sgd_weight_decay(wd, lr) == pytest.approx(1e-2) and ft.sgd_weight_decay(wd, lr, False) == wd
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=lr, weight_decay=ft.sgd_weight_decay(wd, lr))
    w.grad = torch.zeros(3)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), 1 - wd, rtol=1e-6)  # per-step shrinkage = the grid value


def test_cosine_schedule_and_step_batches() -> None:
    assert ft.lr_at(0, 10, 0.1, "cosine") == 0.1 and ft.lr_at(5, 10, 0.1, "cosine") == pytest.approx(0.05)
    assert ft.lr_at(7, 10, 0.1, "constant") == 0.1
    full = list(StepBatches(10, 4, 6, seed=1))
    assert all(len(b) == 4 for b in full) and [b[0][0] for b in full] == list(range(6))
    stream = [k[2] for b in full for k in b]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert list(StepBatches(10, 4, 6, seed=1, start=3)) == full[3:]  # resumable from the step alone


def test_crop_box_stays_inside_and_in_range() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = crop_box(rng, 20, 30, (0.08, 1.0))
        assert top >= 0 and top + h <= 20 and left >= 0 and left + w <= 30 and h > 0 and w > 0


def test_multilabel_loss_ignores_masked_entries() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    keep = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    got = ft.loss_of(logits, torch.cat([y, keep], 1), multilabel=True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    assert got.item() == pytest.approx((bce[0, 0] + bce[1, 0] + bce[1, 1]).item() / 3)


def test_multilabel_trial_trains_and_predicts() -> None:
    images = _images(multilabel=True)
    net, out = ft.train_trial(load_encoder(RANDOM), images, _spec(multilabel=True, steps=2))
    scores, valid = ft.predict(net, load_encoder(RANDOM), images, ImageSizes(16, 18, 16), _spec(multilabel=True))
    assert out.status == "ok" and scores.shape == (40, 3) and valid.all()


# ----------------------------------------------------------------------------- trials


def test_killed_trial_resumes_from_its_checkpoint_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc, images, spec = load_encoder(RANDOM), _images(), _spec(precision="fp32")
    ref, _ = ft.train_trial(enc, images, spec)
    real, calls = ft.fine_tune_step, {"n": 0}

    def dying(*a: object, **k: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:  # killed during step 4 of 6; the last checkpoint holds step 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ft, "fine_tune_step", dying)
    ckpt = tmp_path / "trial.pt"
    with pytest.raises(KeyboardInterrupt):
        ft.train_trial(enc, images, spec, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 2  # atomic and weights_only-loadable
    monkeypatch.setattr(ft, "fine_tune_step", real)
    resumed, out = ft.train_trial(enc, images, spec, checkpoint=ckpt)
    assert out.resumed_from == 2 and out.steps_done == 6
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_diverged_trial_is_recorded_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ft.fine_tune_step

    def nan_for_big_lr(net, opt, x, y, lr, spec, device):  # type: ignore[no-untyped-def]
        loss = real(net, opt, x, y, lr, spec, device)
        return loss * float("nan") if spec.lr > 0.05 else loss

    monkeypatch.setattr(ft, "fine_tune_step", nan_for_big_lr)
    rec = run_job(_job(tmp_path))
    assert rec.status == "ok" and rec.hparams["lr"] == 0.01
    assert rec.tags["diverged_trials"] == [[0.1, 0.0]]
    assert [c["status"] for c in rec.val_curve] == ["ok", "diverged"] and rec.val_curve[1]["val"] is None
    monkeypatch.setattr(ft, "fine_tune_step", lambda *a: real(*a) * float("nan"))
    rec = run_job(_job(tmp_path / "all"))
    assert rec.status == "diverged" and rec.value is None and "every (lr, wd) trial diverged" in rec.error


def test_choice_comes_from_val_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_job(_job(tmp_path / "a"))
    real_task = grid_mod.load_job_task

    def shuffled_test_labels(job: EvalJob):  # type: ignore[no-untyped-def]
        card, data = real_task(job)
        data.test.targets = np.random.default_rng(1).permutation(data.test.targets)
        return card, data

    monkeypatch.setattr(grid_mod, "load_job_task", shuffled_test_labels)
    second = run_job(_job(tmp_path / "b"))
    def grid_of(rec):  # type: ignore[no-untyped-def]
        return [(c["lr"], c["wd"], c["val"], c["status"]) for c in rec.val_curve]

    assert second.hparams == first.hparams and grid_of(second) == grid_of(first)
    assert second.predictions["pred"] == first.predictions["pred"]  # same model, other labels
    assert second.predictions["y"] != first.predictions["y"]


def test_trial_jobs_persist_and_the_final_job_reuses_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = _job(tmp_path)
    trials = plan_trials([final])
    assert [[t.lr_index, t.wd_index] for t in trials] == [[0, 0], [1, 0]] and all(
        isinstance(t, TrialJob) for t in trials
    )
    result = run_job(trials[1])
    assert isinstance(result, grid_mod.TrialResult) and result.status == "ok" and 0 <= result.value <= 100
    saved = write_result(tmp_path / "results", result)
    assert json.loads(saved.read_text())["lr"] == 0.1 and not (tmp_path / "results" / "records").exists()
    assert [[t.lr_index, t.wd_index] for t in plan_trials([final])] == [[0, 0]]  # only the missing one
    trained: list[float] = []
    real = ft.train_trial
    monkeypatch.setattr(
        ft, "train_trial", lambda enc, im, spec, *a, **k: (trained.append(spec.lr), real(enc, im, spec, *a, **k))[1]
    )
    rec = run_job(final)
    assert trained == [0.01, rec.hparams["lr"]]  # trial (1, 0) was not retrained; then the final retrain
    assert rec.val_curve[1]["val"] == result.value and rec.split_sizes["test"] == len(rec.predictions["y"])
    assert not list(Path(result.path).parent.glob("*.pt"))  # checkpoints of finished runs are removed
    assert math.isfinite(rec.value) and rec.timings["n_trials"] == 2


# ----------------------------------------------------------------------------- end to end (slow)


@pytest.mark.slow
def test_pretrained_finetune_beats_its_linear_probe_and_random_init(tmp_path: Path) -> None:
    """A few dozen SimCLR steps on the embedded images, then digits: fine-tuned >= linear probe,
    and > the same fine-tuning budget from random init (S-v1 Table 8's ordering, in miniature)."""
    from clrbench.config import load_pretrain_config
    from clrbench.eval.jobs import load_job_task
    from clrbench.eval.linear import run_linear
    from clrbench.pretraining.train import train_loop

    cfg = load_pretrain_config("quickstart", [
        "model.width=0.125", "model.head_dim=32", "data.num_images=2048", "optim.batch_size_global=64",
        "optim.warmup_epochs=1", "optim.steps=60", "augment.image_size=32", f"run.out={tmp_path}", "run.name=p",
        "run.precision=fp32"])  # fp32: bf16 autocast is emulated (8x slower) on CPUs without bf16 units
    ckpt = str(train_loop(cfg).checkpoint)
    linear = run_linear(EvalJob(ckpt, "p", "digits", "linear", cache_dir=str(tmp_path / "cache")))
    _, data = load_job_task(EvalJob(ckpt, "p", "digits", "linear", cache_dir=str(tmp_path / "cache")))
    spec = _spec(lr=0.1, wd=0.0, weight_decay=0.0, steps=300, batch_size=64, sizes=ImageSizes(32, 32, 32),
                 crop_scale=(0.08, 1.0), num_classes=10, checkpoint_every=10**6, precision="fp32")
    acc = {}
    for name, spec_str in (("pretrained", ckpt), ("random", RANDOM)):
        enc = load_encoder(spec_str)
        net, _out = ft.train_trial(enc, data.train, spec)
        scores, _ = ft.predict(net, enc, data.test, spec.sizes, spec)
        acc[name] = 100 * float((scores.argmax(1) == data.test.targets).mean())
    assert acc["pretrained"] >= linear.value - 1.0, (acc, linear.value)
    assert acc["pretrained"] > acc["random"] + 2, acc  # measured 88.5 vs 81.3 (loaded 2-core VM)


@pytest.mark.slow
def test_cli_eval_records_a_finetune_protocol(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clrbench.cli import app
    from clrbench.records import read_records

    res = CliRunner().invoke(app, ["eval", "--checkpoint", RANDOM, "--tasks", "digits", "--protocol",
                                   f"{_protocol(tmp_path)},finetune-short", "--results", str(tmp_path / "res"),
                                   "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    recs = {r.protocol: r for r in read_records(tmp_path / "res")}
    assert set(recs) == {"ft-tiny", "finetune-short"} and all(r.status == "ok" for r in recs.values())
    short = recs["finetune-short"]
    assert len(short.val_curve) == 4 and short.hparams["steps"] == 120 and len(short.predictions["pred"]) == 539
    again = CliRunner().invoke(app, ["eval", "--checkpoint", RANDOM, "--tasks", "digits", "--protocol",
                                     "finetune-short", "--results", str(tmp_path / "res"),
                                     "--cache-dir", str(tmp_path / "cache")])
    assert again.exit_code == 0 and "already recorded" in again.output

"""End to end: a few SimCLR steps on embedded data; checkpoints; resume equals uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clrbench.config import load_pretrain_config
from clrbench.pretraining.train import TrainingError, train_loop
from clrbench.weights.checkpoint import load_clrbench

TINY = [
    "model.width=0.125", "model.head_dim=16", "data.num_images=256", "optim.batch_size_global=32",
    "optim.warmup_epochs=1", "run.log_every=1", "augment.image_size=16", "run.precision=fp32",
]


def _cfg(tmp_path: Path, *extra: str):
    return load_pretrain_config("quickstart", [*TINY, f"run.out={tmp_path}", *extra])


def test_a_few_steps_write_a_weights_only_checkpoint(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "optim.steps=4", "run.name=a")
    summary = train_loop(cfg)
    assert summary.steps == 4 and summary.checkpoint.exists()
    ckpt = torch.load(summary.checkpoint, weights_only=True)  # loads without running code
    assert ckpt["step"] == 4 and ckpt["encoder"]["arch"] == "resnet18"
    assert ckpt["config"]["optim"]["steps"] == 4 and ckpt["clrbench"]
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"loss", "lr", "contrastive_acc", "images_per_s", "epoch"} <= set(rows[0])
    assert (tmp_path / "a" / "config.yaml").exists()


def test_existing_run_needs_resume(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "optim.steps=1", "run.name=b")
    train_loop(cfg)
    with pytest.raises(TrainingError, match="--resume"):
        train_loop(cfg)


def _final_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_clrbench(path)["model"]


def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path) -> None:
    full = train_loop(_cfg(tmp_path, "optim.steps=6", "run.name=full", "run.checkpoint_every=2"))
    # Stop after 3 steps (last checkpoint at step 2), then resume to the end.
    part = _cfg(tmp_path, "optim.steps=6", "run.name=part", "run.checkpoint_every=2")
    import clrbench.pretraining.train as train_mod

    calls = {"n": 0}
    real_step = train_mod._step

    def dying_step(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_step(*a, **k)

    train_mod._step = dying_step
    try:
        with pytest.raises(KeyboardInterrupt):
            train_loop(part)
    finally:
        train_mod._step = real_step
    assert load_clrbench(tmp_path / "part" / "last.pt")["step"] == 2
    resumed = train_loop(part, resume=True)
    a, b = _final_weights(full.checkpoint), _final_weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # no duplicate lines after the resume


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """A real SIGKILL mid-run (separate process), then --resume: identical final weights."""
    args = [*TINY, "optim.steps=8", "run.checkpoint_every=2", f"run.out={tmp_path}"]
    sets = [x for a in args for x in ("--set", a)]
    cmd = [sys.executable, "-m", "clrbench", "pretrain", "quickstart", *sets]
    subprocess.run([*cmd, "--set", "run.name=ref"], check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "--set", "run.name=killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    import time

    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "killed" / "last.pt").exists()
    subprocess.run([*cmd, "--set", "run.name=killed", "--resume"], check=True, capture_output=True)
    a, b = _final_weights(tmp_path / "ref" / "last.pt"), _final_weights(tmp_path / "killed" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "optim.steps=4", "run.name=nan", "run.checkpoint_every=1")
    import clrbench.pretraining.train as train_mod

    real_step = train_mod._step
    calls = {"n": 0}

    def nan_step(*a, **k):
        calls["n"] += 1
        loss, acc, p = real_step(*a, **k)
        return (float("nan") if calls["n"] == 3 else loss), acc, p

    train_mod._step = nan_step
    try:
        with pytest.raises(TrainingError, match=r"loss became nan at step 2.*last.pt"):
            train_loop(cfg)
    finally:
        train_mod._step = real_step
    assert load_clrbench(tmp_path / "nan" / "last.pt")["step"] == 2

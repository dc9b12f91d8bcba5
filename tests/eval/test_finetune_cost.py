"""The fine-tune cost printed before `clrbench eval` runs (clrbench.eval.finetune.cost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clrbench.eval.finetune import cost
from clrbench.eval.jobs import EvalJob
from clrbench.eval.protocols import load_protocol

RANDOM = "random:resnet18,width=0.125,stem=cifar"


def test_search_steps_of_the_grid_and_of_asha() -> None:
    # S-v1 B.8.1: 56 trials x 20,000 steps, one val prediction each.
    assert cost.search_steps(load_protocol("finetune")) == (56 * 20000, 56)
    # ASHA, rungs 1,250 / 5,000 / 20,000, factor 4: 56 x 1,250 + 14 x 3,750 + 3.5 x 15,000 (by hand).
    steps, evals = cost.search_steps(load_protocol("finetune-asha"))
    assert steps == pytest.approx(70000 + 52500 + 52500) and evals == pytest.approx(56 + 14 + 3.5)
    assert steps / (56 * 20000) < 1 / 6


def test_estimate_scales_the_measured_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "step_seconds", lambda *a, **k: 0.5)
    job = EvalJob(RANDOM, "rnd", "digits", "finetune-asha-short")
    c = cost.estimate_job(job)
    assert c is not None and c.trials == 16 and c.final_steps == 128
    assert c.trial_steps == pytest.approx(16 * 8 + 4 * 24 + 1 * 96)
    assert c.seconds >= (c.trial_steps + 128) * 0.5
    assert cost.estimate_job(EvalJob(RANDOM, "rnd", "digits", "linear")) is None


def test_probe_step_is_measured() -> None:
    s = cost.step_seconds(RANDOM, 10, 16, 64, "cpu", "fp32", probe_batch=4, repeats=1)
    assert s > 0


def test_eval_asks_for_yes_past_an_hour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from clrbench.cli import app

    monkeypatch.setattr(cost, "step_seconds", lambda *a, **k: 100.0)  # 100 s a step: days
    args = ["eval", "--checkpoint", RANDOM, "--tasks", "digits", "--protocol", "finetune", "--results",
            str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "--yes" in res.output and "1,120,000 trial-steps" in res.output
    assert not list((tmp_path / "res" / "records").glob("**/*.json"))  # nothing ran

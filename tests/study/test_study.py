"""A tiny study end to end: records and picture written; a killed or failed study reruns only
what is missing; g(h) is probed through the projection adapter; the CLI's guard rails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clrbench.records import read_record, record_path
from clrbench.study import runner
from clrbench.study.budget import parse_budget
from clrbench.study.grids import augment_grid, head_grid
from clrbench.study.results import augment_table
from clrbench.study.runner import execute, finish, plan_study

OPS = ["crop", "color"]


def _plan(tmp_path: Path, trials: list[Any] | None = None, study: str = "augment") -> runner.StudyPlan:
    return plan_study(study, trials or augment_grid(OPS, 0.5), recipe="quickstart", overrides=[],
                      budget=parse_budget("smoke", study), tasks="digits", out=tmp_path / "studies",
                      cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts pretraining runs (by run name) while still running them."""
    import clrbench.pretraining.train as train

    calls: list[str] = []
    real = train.train_loop

    def counted(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(cfg.run.name)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(train, "train_loop", counted)
    return calls


def test_tiny_study_writes_records_and_picture_then_reruns_nothing(tmp_path: Path, train_calls: list[str]) -> None:
    plan = _plan(tmp_path)
    assert len(plan.jobs) == len(plan.todo) == 4
    records = execute(plan)
    assert [r.status for r in records] == ["ok"] * 4 and len(train_calls) == 4
    rec = read_record(record_path(plan.results_dir, *plan.todo[1].key))
    assert rec.tags["study"] == "augment" and rec.tags["point"]["first"] == "crop"
    assert rec.tags["point"]["second"] == "color" and rec.tags["pretrain"]["steps"] == 2
    assert plan.baseline_id == "random-resnet18-w0.125-cifar-s0"  # the encoder every trial starts from
    assert read_record(record_path(plan.results_dir, plan.baseline_id, "digits", "linear")).status == "ok"
    outcomes, table, png = finish(plan, OPS)
    assert png.stat().st_size > 5000 and png.with_suffix(".md").exists()
    assert "Random-init encoder of the same shape (random-resnet18-w0.125-cifar-s0)" in table.caption
    assert [c.text for c in table.rows[0]][:1] == ["crop"] and all(o.status == "ok" for o in outcomes)
    again = _plan(tmp_path)
    assert again.todo == [] and again.ctx.ident == plan.ctx.ident


def test_a_deleted_record_is_probed_again_without_pretraining_again(tmp_path: Path, train_calls: list[str]) -> None:
    plan = _plan(tmp_path)
    execute(plan)
    lost = plan.jobs[2]
    record_path(plan.results_dir, *lost.key).unlink()
    again = _plan(tmp_path)
    assert again.todo == [lost]
    train_calls.clear()
    execute(again)
    assert train_calls == []  # its run finished before: only the probe runs
    assert read_record(record_path(plan.results_dir, *lost.key)).status == "ok"
    assert again.estimate_s() == 0.0  # nothing left to run


def test_a_study_killed_half_way_runs_only_the_missing_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               train_calls: list[str]) -> None:
    import clrbench.eval.linear as jobs

    real, seen = jobs.run_linear, []

    def killed_at_third(job: Any) -> Any:
        seen.append(job)
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the third trial
        return real(job)

    monkeypatch.setattr(jobs, "run_linear", killed_at_third)
    plan = _plan(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        execute(plan)
    monkeypatch.setattr(jobs, "run_linear", real)
    again = _plan(tmp_path)
    assert again.todo == plan.jobs[2:]
    train_calls.clear()
    execute(again)
    assert train_calls == [plan.jobs[3].run_name]  # the third trial was trained before the kill
    assert _plan(tmp_path).todo == []


def test_failed_and_diverged_trials_stay_in_the_picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clrbench.pretraining.train as train

    real = train.train_loop

    def flaky(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        if cfg.run.name.startswith("augment-color+crop"):
            raise RuntimeError("out of memory")
        if cfg.run.name.startswith("augment-color-"):
            raise train.TrainingError("The loss became nan at step 1; stopped.")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(train, "train_loop", flaky)
    plan = _plan(tmp_path)
    statuses = {r.checkpoint_id.rsplit("-", 1)[0]: r.status for r in execute(plan)}
    assert statuses == {"augment-crop": "ok", "augment-crop+color": "ok", "augment-color+crop": "failed",
                        "augment-color": "diverged"}
    outcomes, _table, png = finish(plan, OPS)
    cells = {row[0].text: [c.text for c in row[1:]] for row in augment_table(outcomes, OPS).rows}
    assert cells["color"][:2] == ["failed", "diverged"] and png.exists()
    # The next command retries the failed trial; a diverged one is a result and stays.
    assert [j.trial.key for j in _plan(tmp_path).todo] == ["color+crop"]


def test_head_study_probes_h_and_g_of_h(tmp_path: Path) -> None:
    plan = _plan(tmp_path, head_grid(["none", "nonlinear"], [8]), study="head")
    assert [(j.trial.key, j.layer) for j in plan.jobs] == [("none", "h"), ("nonlinear-d8", "h"), ("nonlinear-d8", "g")]
    recs = {(r.tags["trial"], r.tags["layer"]): r for r in execute(plan)}
    g, h = recs[("nonlinear-d8", "g")], recs[("nonlinear-d8", "h")]
    assert g.status == h.status == "ok"
    assert g.checkpoint["kind"] == "projection" and g.checkpoint["feature_dim"] == 8
    assert h.checkpoint["feature_dim"] == 64 and g.checkpoint["sha256"] != h.checkpoint["sha256"]
    _outcomes, table, _png = finish(plan)
    assert [[c.text for c in row][:2] for row in table.rows] == [["none", "-"], ["nonlinear", "8"]]


def test_cli_runs_a_tiny_temperature_study(tmp_path: Path) -> None:
    from clrbench.cli import app

    args = ["study", "temperature", "--values", "0.5", "--values-no-l2", "", "--budget", "smoke", "--tasks", "digits",
            "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "temperature" / "temperature.png").exists()
    assert "clrbench study temperature" in (tmp_path / "temperature" / "study.json").read_text()
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0 and "1 done, 0 to run" in rerun.output


def test_cli_bad_input_and_costly_studies_stop_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clrbench.cli import app

    base = ["--budget", "smoke", "--tasks", "digits", "--out", str(tmp_path)]
    bad = CliRunner().invoke(app, ["study", "augment", "--ops", "crop,colour", *base])
    assert bad.exit_code == 2 and "Did you mean 'color'" in bad.output and "Traceback" not in bad.output
    batch = CliRunner().invoke(app, ["study", "batch-size", "--values", "512", "--epochs", "1", *base])
    assert batch.exit_code == 2 and "larger than the 256 training images" in batch.output
    monkeypatch.setattr(runner, "CONFIRM_ABOVE_S", 0.0)
    costly = CliRunner().invoke(app, ["study", "head", "--heads", "linear", "--dims", "8", *base])
    assert costly.exit_code == 1 and "--yes" in costly.output
    assert not (tmp_path / "head" / "results").exists()


@pytest.mark.ray
def test_ray_runs_the_trials_in_parallel_with_the_same_records(tmp_path: Path, local_ray: None) -> None:
    plan = _plan(tmp_path)
    records = execute(plan, executor="ray", workers=2)
    assert sorted(r.tags["trial"] for r in records) == sorted(t.key for t in plan.trials)
    assert all(r.status == "ok" for r in records) and _plan(tmp_path).todo == []


def test_the_failure_record_never_raises_itself(tmp_path: Path) -> None:
    from clrbench.study.trial import StudyContext, StudyJob, on_job_failure

    (tmp_path / "bad.yaml").write_text("name: bad\nversion: x\n")  # a card that cannot load
    ctx = StudyContext("augment", "quickstart", (), "abc123", str(tmp_path), tasks_dir=str(tmp_path))
    rec = on_job_failure(StudyJob(augment_grid(["crop"])[0], "digits", "h", ctx), ValueError("bad card"))
    assert rec.status == "failed" and rec.error == "ValueError: bad card" and rec.tags["trial"] == "crop"

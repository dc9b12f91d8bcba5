"""The main job outside the happy path (issue 14): missing data is one short block and no
record; one encoder is one row whatever its file is called; small messages say what is true."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.records import Record, read_records, write_record
from clrbench.weights.adapters import load_encoder
from clrbench.weights.checkpoint import encoder_metadata

runner = CliRunner()
TINY = "random:resnet18,width=0.125,stem=cifar"


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLRBENCH_DATA", raising=False)


def test_missing_data_is_one_short_block_no_record_and_a_nonzero_exit(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", "--checkpoint", TINY, "--tasks", "all", "--results", str(tmp_path)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) <= 8, res.output  # was 168 lines
    out = res.output
    assert "12 of 12" in out and "no data root is set" in out
    assert "export CLRBENCH_DATA=" in out and "clrbench data download --tasks" in out
    assert "cars,sun397" in out and "manual steps" in out  # manual only where needed
    assert out.count("food101") == 2  # named once in the list, once in the command
    assert "Traceback" not in out and "failed" not in out
    assert not read_records(tmp_path)  # a missing prerequisite is not a failed measurement


def _fake_dtd(root: Path) -> None:
    base = root / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True)
    (base / "images").mkdir()
    for f in ("train1.txt", "val1.txt", "test1.txt"):
        (base / "labels" / f).write_text("")


def test_missing_data_other_tasks_still_run_on_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--executor ray: the missing task is left out when planning, the others reach the executor."""
    import clrbench.eval.executor as executor

    seen: list[tuple[str, str]] = []

    def fake_run_jobs(jobs, results_dir, executor="local", on_event=None, **kw):
        seen.extend((executor, j.task) for j in jobs)
        return []

    monkeypatch.setattr(executor, "run_jobs", fake_run_jobs)
    _fake_dtd(tmp_path / "data")
    monkeypatch.setenv("CLRBENCH_DATA", str(tmp_path / "data"))
    res = runner.invoke(app, ["eval", "--checkpoint", TINY, "--tasks", "dtd,aircraft,digits", "--executor", "ray",
                              "--results", str(tmp_path / "res")])
    assert ("ray", "dtd") in seen and ("ray", "digits") in seen
    assert not any(t == "aircraft" for _, t in seen)
    assert "1 of 3" in res.output and "fgvc-aircraft-2013b/" in res.output and "(from $CLRBENCH_DATA)" in res.output
    assert "clrbench data download --tasks aircraft\n" in res.output
    assert res.exit_code == 1  # it could not do all that was asked


def test_tasks_list_lists_tasks_and_ls_says_installed(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", "--tasks", "list"])
    assert res.exit_code == 0, res.output
    assert "Groups: all (12 tasks), imagenet (1 task), quick (4 tasks)" in res.output and "flowers102" in res.output
    assert "generated offline" in res.output and "not installed" in res.output
    _fake_dtd(tmp_path)
    res = runner.invoke(app, ["tasks", "ls", "--root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "installed" in res.output
    dtd = next(
        line for line in res.output.splitlines() if line.startswith(("│ dtd", "| dtd", "dtd")) or " dtd " in line[:8]
    )
    assert "yes" in dtd


def _ckpt(path: Path, enc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "clrbench.checkpoint", "format_version": 1, "step": 230, "epoch": 1.0,
                "model": {f"encoder.{k}": v for k, v in enc.module.state_dict().items()},
                "encoder": encoder_metadata(enc.meta["arch"], enc.meta["width"], enc.meta["stem"],
                                            int(enc.meta["feature_dim"]))}, path)
    return path


def _record(cid: str, checkpoint: dict, task: str = "digits", value: float = 60.0) -> Record:
    return Record(cid, task, "linear", "top1", "ok", value, 0.5, 1, 1, checkpoint, {}, [], {}, {}, {}, "s", {}, {})


def test_one_encoder_is_one_row_whatever_its_file_name(tmp_path: Path) -> None:
    enc = load_encoder(TINY)
    last = _ckpt(tmp_path / "runs" / "qs" / "last.pt", enc)
    step = _ckpt(tmp_path / "runs" / "qs" / "step_0000230.pt", enc)
    first = load_encoder(str(last))
    results = tmp_path / "results"
    write_record(results, _record(first.checkpoint_id, first.describe()))
    exported = tmp_path / "exported.safetensors"
    assert runner.invoke(app, ["export", "--checkpoint", str(last), "--out", str(exported)]).exit_code == 0
    for spec in (step, exported):
        res = runner.invoke(app, ["eval", "--checkpoint", str(spec), "--tasks", "digits", "--results", str(results)])
        assert res.exit_code == 0, res.output
        assert "1 job(s) already recorded" in res.output  # not recomputed
    assert [r.checkpoint_id for r in read_records(results)] == [first.checkpoint_id]
    aliases = json.loads((results / "aliases.json").read_text())[first.checkpoint_id]
    assert sorted(aliases) == sorted([load_encoder(str(step)).checkpoint_id, load_encoder(str(exported)).checkpoint_id])
    # Records written under other names before (the three rows) merge into one row.
    other = load_encoder(str(exported))
    write_record(results, replace(_record(other.checkpoint_id, other.describe(), "shapes", 70.0)))
    res = runner.invoke(app, ["leaderboard", "--results", str(results), "--format", "json", "--baseline", "qs"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    assert len(rows) == 1 and rows[0]["cells"]["shapes"]["value"] == 70.0
    assert other.checkpoint_id in rows[0]["aliases"]


def test_leaderboard_protocol_without_records_says_what_exists(tmp_path: Path) -> None:
    write_record(tmp_path, replace(_record("a", {"path": "a"}), protocol="finetune"))
    res = runner.invoke(app, ["leaderboard", "--results", str(tmp_path), "--protocol", "linear"])
    assert res.exit_code == 2  # a bad --protocol, not a missing result
    assert "no linear records" in res.output and "protocols with records: finetune" in res.output


def test_study_trial_table_shows_bracketed_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rich must not eat `[crop, cutout]` as markup; the estimate is a range."""
    import clrbench.study.runner as runner_mod

    monkeypatch.setattr(runner_mod, "seconds_per_image", lambda cfg, *a, **k: (1e-4, 5e-5))
    res = runner.invoke(app, ["study", "augment", "--dry-run", "--budget", "smoke", "--tasks", "digits",
                              "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "augment.ops=[crop, crop, cutout]" in res.output
    assert "Estimate: 49 trials x " in res.output and "fastest of 5 timed passes" in res.output
    est = res.output.split("Estimate: 49 trials x ")[1].split(" ")[0]
    assert "-" in est  # a range, e.g. 3-5 s


def test_pretrain_dry_run_without_data_prints_both_lr_scalings() -> None:
    res = runner.invoke(app, ["pretrain", "imagenet-r50-1x", "--data", "/nonexistent/imagenet/train", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "ImageNet's 1,281,167 training images" in res.output and "total_steps: 31200" in res.output
    assert "lr if linear scaling: 4.8" in res.output and "lr if sqrt scaling: 19.2" in res.output
    res = runner.invoke(app, ["pretrain", "imagenet-r50-1x", "--data", "/nonexistent/x", "--dry-run",
                              "--set", "data.num_images=8192"])
    assert res.exit_code == 0 and "num_images: 8192" in res.output and "steps_per_epoch: 2" in res.output


def test_resume_of_a_finished_run_says_so_not_nan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import clrbench.launch as launch_mod
    from clrbench.pretraining.train import TrainSummary

    monkeypatch.setattr(launch_mod, "launch", lambda cfg, **kw: TrainSummary(
        tmp_path, tmp_path / "last.pt", 230, float("nan"), 0.1, None, already_finished=True))  # type: ignore[arg-type]
    res = runner.invoke(app, ["pretrain", "--resume"])
    assert res.exit_code == 0, res.output
    assert "already finished (230 steps)" in " ".join(res.output.split()) and "nan" not in res.output


def test_data_verify_has_no_none_in_the_classes_column(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "verify", "--tasks", "dtd", "--root", str(tmp_path), "--no-md5"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert "None" not in res.output and "-/47" in res.output


def test_eval_wandb_offline_and_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    enc = load_encoder(TINY)
    results = tmp_path / "results"
    write_record(results, _record(enc.checkpoint_id, enc.describe()))
    args = ["eval", "--checkpoint", TINY, "--tasks", "digits", "--results", str(results), "--wandb", "clrbench-test"]
    monkeypatch.chdir(tmp_path)
    has_wandb = importlib.util.find_spec("wandb") is not None  # optional: else only the sentence is checked
    res = runner.invoke(app, args, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    if has_wandb:
        assert res.exit_code == 0, res.output
        assert "Logged to Weights & Biases" in res.output and list((tmp_path / "wandb").glob("offline-run-*"))
    monkeypatch.setitem(sys.modules, "wandb", None)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "pip install wandb" in res.output and "Traceback" not in res.output

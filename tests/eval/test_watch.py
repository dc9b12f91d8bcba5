"""--watch: each new checkpoint of a run is pinned and evaluated once, until the run's last step;
records carry the run, step and epoch, and the leaderboard draws score-vs-epoch curves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.eval.watch import RunWatcher, checkpoint_progress, watch_run
from clrbench.records import read_records
from clrbench.weights.checkpoint import atomic_torch_save, encoder_metadata


def write_ckpt(run: Path, step: int, total: int = 3, keep: bool = False, seed: int = 0) -> None:
    """A minimal clrbench checkpoint of a tiny encoder, written as train.py writes them."""
    from clrbench.simclr.encoder import build_encoder

    torch.manual_seed(seed + step)
    module, dim = build_encoder("resnet18", 0.125, "cifar")
    state = {"format": "clrbench.checkpoint", "format_version": 1, "step": step, "epoch": step / 2,
             "derived": {"total_steps": total}, "config": {"run": {"name": run.name}},
             "encoder": encoder_metadata("resnet18", 0.125, "cifar", dim),
             "model": {f"encoder.{k}": v for k, v in module.state_dict().items()}}
    atomic_torch_save(state, run / "last.pt")
    if keep:
        atomic_torch_save(state, run / f"step_{step:07d}.pt")


def test_checkpoint_progress(tmp_path: Path) -> None:
    write_ckpt(tmp_path / "r18", 2, total=4)
    assert checkpoint_progress(str(tmp_path / "r18" / "last.pt")) == {"run": "r18", "step": 2, "epoch": 1.0,
                                                                     "total_steps": 4}
    assert checkpoint_progress("random:resnet18") == {}
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert checkpoint_progress(str(tmp_path / "junk.pt")) == {}


def test_watch_pins_each_new_step_once_and_stops_at_the_end(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r18"
    write_ckpt(run, 1, keep=True)  # step_0000001.pt and last.pt hold the same step: one evaluation
    steps_to_write = [2, 3]
    seen: list[list[tuple[str, int]]] = []

    def evaluate(paths: list[Path]) -> None:
        seen.append([(p.name, checkpoint_progress(str(p))["step"]) for p in paths])

    def sleep(_: float) -> None:  # the run moves on while the watcher waits
        if steps_to_write:
            write_ckpt(run, steps_to_write.pop(0))

    watcher = watch_run(run, tmp_path / "snap", evaluate, poll_s=1.0, sleep=sleep)
    assert watcher.finished
    assert seen == [[("step_0000001.pt", 1)], [("step_0000002.pt", 2)], [("step_0000003.pt", 3)]]
    # the pins keep their version after last.pt moved on
    assert checkpoint_progress(str(tmp_path / "snap" / "r18" / "step_0000001.pt"))["step"] == 1
    assert not list((tmp_path / "snap" / "r18").glob(".pin-*"))


def test_watch_idle_timeout_and_missing_folder(tmp_path: Path) -> None:
    run = tmp_path / "r"
    write_ckpt(run, 1, total=10)
    calls: list[int] = []
    watcher = watch_run(run, tmp_path / "snap", lambda ps: calls.append(len(ps)), poll_s=5, max_idle_s=10,
                        sleep=lambda s: None)
    assert calls == [1] and not watcher.finished
    from clrbench.weights.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not a run folder"):
        RunWatcher(tmp_path / "nope", tmp_path / "snap").poll()


@pytest.mark.slow
def test_eval_watch_end_to_end_curve_table_and_plot(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r18"
    write_ckpt(run, 1, total=2, keep=True)
    write_ckpt(run, 2, total=2)
    res = tmp_path / "res"
    out = CliRunner().invoke(app, ["eval", "--watch", str(run), "--tasks", "digits", "--results", str(res),
                                   "--cache-dir", str(tmp_path / "cache"), "--poll", "0.01"], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "score vs epoch: r18 (linear)" in out.output and "final checkpoint is evaluated" in out.output
    recs = sorted(read_records(res), key=lambda r: r.checkpoint["step"])
    assert [(r.checkpoint["run"], r.checkpoint["step"], r.checkpoint["epoch"]) for r in recs] == [
        ("r18", 1, 0.5), ("r18", 2, 1.0)]
    assert recs[0].checkpoint_id.startswith("r18-step_0000001-")
    lb = CliRunner().invoke(app, ["leaderboard", "--results", str(res), "--plot", str(tmp_path / "b.png")],
                            env={"COLUMNS": "160"})
    assert lb.exit_code == 0, lb.output
    assert (tmp_path / "b.png").stat().st_size > 0 and (tmp_path / "b-curve.png").stat().st_size > 0
    # several checkpoints in one command: a glob (already recorded via the watch) and a random init
    again = CliRunner().invoke(app, ["eval", "--checkpoint", str(run / "step_*.pt"), "--checkpoint",
                                     "random:resnet18,width=0.125,stem=cifar", "--tasks", "digits", "--results",
                                     str(res), "--cache-dir", str(tmp_path / "cache")], env={"COLUMNS": "160"})
    assert again.exit_code == 0, again.output
    assert "1 job(s) already recorded" in again.output
    assert len(read_records(res)) == 3

"""The command line as a user runs it: help is instant, bad input is one sentence + exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clrbench.cli import app

runner = CliRunner()


def test_help_does_not_import_torch() -> None:
    code = "import sys; from clrbench.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "pretrain" in res.output and "eval" in res.output


@pytest.mark.slow
def test_an_eval_with_nothing_to_do_does_not_import_torch(tmp_path: Path) -> None:
    """A rerun of a finished eval reads records and the identity memo only (issue 12: no-op < 2 s)."""
    args = ["eval", "-c", "random:resnet18,width=0.125,stem=cifar", "--tasks", "digits",
            "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]
    assert runner.invoke(app, args).exit_code == 0
    code = ("import sys; from typer.testing import CliRunner; from clrbench.cli import app; "
            f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "digits" in out.stdout  # the board is still printed


def test_dry_run_prints_derived_values() -> None:
    res = runner.invoke(app, ["pretrain", "--dry-run", "--batch-size", "512", "--set", "optim.epochs=2"])
    assert res.exit_code == 0, res.output
    assert "batch_size_global: 512" in res.output and "lr: 2.0" in res.output and "total_steps:" in res.output


def _one_sentence(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    return res.output


def test_bad_recipe_key_and_type() -> None:
    out = _one_sentence(runner.invoke(app, ["pretrain", "--set", "optim.lr=1", "--dry-run"]))
    assert "optim.lr" in out
    out = _one_sentence(runner.invoke(app, ["pretrain", "--set", "optim.epochs=many", "--dry-run"]))
    assert "optim.epochs" in out


def test_missing_and_empty_data_folder(tmp_path: Path) -> None:
    # A dry run resolves without the data (issue 14), using the recipe's data.num_images ...
    res = runner.invoke(app, ["pretrain", "--data", str(tmp_path / "nope"), "--set", "data.source=folder", "--dry-run"])
    assert res.exit_code == 0 and "does not exist" in res.output and "data.num_images=12000" in res.output
    # ... and says what it needs when nothing gives the size.
    out = _one_sentence(runner.invoke(app, ["pretrain", "cifar10-r18", "--data", str(tmp_path / "nope"), "--set",
                                            "data.source=folder", "--set", "run.name=mine", "--dry-run"]))
    assert "does not exist" in out and "data.num_images=N" in out
    out = _one_sentence(runner.invoke(app, ["pretrain", "--data", str(tmp_path), "--dry-run"]))
    assert "holds no images" in out


def test_impossible_batch_size() -> None:
    out = _one_sentence(runner.invoke(app, ["pretrain", "--batch-size", "100000", "--dry-run"]))
    assert "larger than" in out


def test_eval_bad_inputs(tmp_path: Path) -> None:
    out = _one_sentence(
        runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "x.pt"), "--results", str(tmp_path)])
    )
    assert "No checkpoint at" in out
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    out = _one_sentence(runner.invoke(app, ["eval", "--checkpoint", str(junk), "--results", str(tmp_path)]))
    assert "not a readable checkpoint" in out
    out = _one_sentence(runner.invoke(app, ["eval", "--checkpoint", "random:resnet18,width=0.125",
                                            "--tasks", "digitz", "--results", str(tmp_path)]))
    assert "Did you mean 'digits'" in out


def test_unwritable_results_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = _one_sentence(runner.invoke(app, ["eval", "--checkpoint", "random:resnet18,width=0.125",
                                            "--results", str(blocker / "sub")]))
    assert "cannot write to the results folder" in out


@pytest.mark.parametrize("cmd", [["tasks", "ls"], ["tasks", "validate"], ["tasks", "show", "digits"]])
def test_tasks_commands(cmd: list[str]) -> None:
    res = runner.invoke(app, cmd)
    assert res.exit_code == 0, res.output

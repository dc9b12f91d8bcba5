"""Bad input is one sentence and a non-zero exit, checked where it is parsed (issue 13).

Only cases that fail before any training or feature extraction: each runs in well under a
second through the real command line (Typer's test runner).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.records import Record, write_record


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


@pytest.mark.parametrize(("override", "field"), [
    ("data.num_images=0", "data.num_images"), ("data.num_images=-5", "data.num_images"),
    ("run.checkpoint_every=-5", "run.checkpoint_every"), ("run.log_every=0", "run.log_every"),
    ("run.device=gpu", "run.device"), ("run.name=../x", "run.name"), ("data.num_workers=-1", "data.num_workers"),
    ("optim.warmup_epochs=-1", "optim.warmup_epochs"), ("optim.lr_base=0", "optim.lr_base"),
    ("optim.weight_decay=-0.0001", "optim.weight_decay"), ("model.arch=resnet7", "resnet7"),
])
def test_pretrain_values_are_checked_where_parsed(override: str, field: str) -> None:
    code, out = _run("pretrain", "--dry-run", "--set", override)
    assert code == 2 and field in out and "Traceback" not in out


@pytest.mark.parametrize(("spec", "words"), [
    ("random:resnet18,width=abc", "width must be a number"), ("random:resnet18,width=-3", "width"),
    ("random:", "needs an architecture"), ("random:resnet18,seed=x", "seed must be an integer"),
])
def test_random_specs_are_one_sentence(spec: str, words: str, tmp_path: Path) -> None:
    code, out = _run("eval", "--checkpoint", spec, "--results", str(tmp_path))
    assert code == 2 and words in out and "Traceback" not in out


def test_eval_flags_are_checked_before_any_work(tmp_path: Path) -> None:
    base = ["eval", "--checkpoint", "random:resnet18", "--results", str(tmp_path)]
    for extra, words in ((["--protocol", ""], "--protocol is empty"),
                         (["--tasks-dir", str(tmp_path / "none")], "not a folder of task cards"),
                         (["--poll", "0"], "--poll"),
                         (["--limit", "0"], "--limit must be >= 1"), (["--limit", "-3"], "--limit must be >= 1")):
        code, out = _run(*base, *extra)
        assert code == 2 and words in out, out
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        code, out = _run(*base, "--device", "cuda")
        assert code == 2 and "no CUDA device" in out


def test_a_raw_pickle_is_called_unsafe_not_corrupt(tmp_path: Path) -> None:
    class Bomb:
        def __reduce__(self):
            return (os.system, ("true",))

    (tmp_path / "bomb.pkl").write_bytes(pickle.dumps({"w": Bomb()}))
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"w": 1}))
    code, out = _run("eval", "--checkpoint", str(tmp_path / "bomb.pkl"), "--results", str(tmp_path))
    assert code == 2 and "unsafe" in out and "system" in out
    code, out = _run("eval", "--checkpoint", str(tmp_path / "plain.pkl"), "--results", str(tmp_path))
    assert code == 2 and "raw Python pickle" in out and "corrupt" not in out


def test_leaderboard_names_the_protocols_that_have_records(tmp_path: Path) -> None:
    write_record(tmp_path, Record("ck", "digits", "linear", "top1", "ok", 50.0, 1.0, 1, 1, {}, {}, [], {}, {},
                                  {}, "", {}, {}))
    code, out = _run("leaderboard", "--results", str(tmp_path), "--protocol", "svm")
    assert code == 2 and "protocols with records: linear" in out
    code, out = _run("leaderboard", "--results", str(tmp_path), "--plot", str(tmp_path / "b.xyz"))
    assert code == 2 and ".png" in out


def test_filesystem_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    code, out = _run("export", "--checkpoint", "random:resnet18,width=0.0625", "--out",
                     str(tmp_path / "afile" / "enc.safetensors"))
    assert code == 2 and "afile" in out and "in the way" in out and "Traceback" not in out
    (tmp_path / "dir.safetensors").mkdir()
    code, out = _run("export", "--checkpoint", "random:resnet18,width=0.0625", "--out",
                     str(tmp_path / "dir.safetensors"))
    assert code == 2 and "dir.safetensors" in out and "Traceback" not in out

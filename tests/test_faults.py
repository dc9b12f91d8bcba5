"""Fault injection: kills, full disks, damaged files and rival processes lose no result and
fail in one sentence (issue 13; README "When things go wrong").

A killed Ray worker is covered beside the executor:
tests/eval/test_executor.py::test_ray_retries_a_dead_worker_and_records_a_raising_job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.config import load_pretrain_config
from clrbench.locks import LockError, folder_lock
from clrbench.pretraining.resume import ResumeError
from clrbench.pretraining.train import train_loop
from clrbench.records import (
    Record,
    failed_path,
    read_record,
    read_records,
    record_path,
    write_record,
)
from clrbench.weights.checkpoint import CheckpointError, load_clrbench

pytestmark = pytest.mark.faults

TINY = ["model.width=0.125", "model.head_dim=16", "data.num_images=128", "optim.batch_size_global=32",
        "optim.warmup_epochs=1", "run.log_every=1", "augment.image_size=16", "run.precision=fp32",
        "run.online_probe=false"]
REPO = Path(__file__).resolve().parents[1]


def _cfg(out: Path, *extra: str):
    return load_pretrain_config("quickstart", [*TINY, f"run.out={out}", *extra])


def _sets(out: Path, *extra: str) -> list[str]:
    return [x for a in [*TINY, f"run.out={out}", *extra] for x in ("--set", a)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """In-process training with the subprocesses' one thread: bit-identity needs the same
    reduction order, and earlier tests may have left torch with another thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


def _rec(task: str, status: str = "ok", value: float | None = 80.0, error: str | None = None) -> Record:
    return Record("ck", task, "linear", "top1", status, value if status == "ok" else None, 1.0, 1, 1, {}, {},
                  [], {}, {}, {}, "", {}, {}, error=error)


# ----------------------------------------------------------------------------- pretraining


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run checkpointed every 2 steps: the reference for kills and damage."""
    out = tmp_path_factory.mktemp("runs")
    with _one_thread():
        train_loop(_cfg(out, "optim.steps=4", "run.checkpoint_every=2", "run.name=ref"))
    return out


def test_sigkill_mid_pretrain_then_resume_is_bit_identical(finished_run: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "clrbench", "pretrain", "quickstart",
           *_sets(tmp_path, "optim.steps=4", "run.checkpoint_every=2", "run.name=k")]
    proc = subprocess.Popen(cmd, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "k" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_clrbench(tmp_path / "k" / "last.pt")["step"] in (2, 4)
    with _one_thread():
        train_loop(_cfg(tmp_path, "optim.steps=4", "run.checkpoint_every=2", "run.name=k"), resume=True)
    a, b = load_clrbench(finished_run / "ref" / "last.pt")["model"], load_clrbench(tmp_path / "k" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the killed run's lines past its checkpoint were dropped


def test_killed_before_first_checkpoint_leaves_no_duplicate_metrics(tmp_path: Path) -> None:
    run = tmp_path / "early"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')  # as a run killed at step 2 leaves it
    train_loop(_cfg(tmp_path, "optim.steps=2", "run.name=early"))
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_resume_refuses_math_changes_and_leaves_a_finished_run_alone(finished_run: Path) -> None:
    ref = finished_run / "ref"
    before = {p.name: p.read_bytes() for p in ref.iterdir() if p.is_file()}
    for change in ("loss.temperature=0.25", "model.head_dim=8", "run.seed=3"):
        with pytest.raises(ResumeError, match=change.split("=")[0]):
            train_loop(_cfg(finished_run, "optim.steps=4", "run.name=ref", change), resume=True)
    # Runtime fields may change; the run is finished, so nothing runs and nothing is rewritten.
    summary = train_loop(_cfg(finished_run, "optim.steps=4", "run.name=ref", "run.log_every=5"), resume=True)
    assert summary.already_finished and summary.steps == 4
    assert {p.name: p.read_bytes() for p in ref.iterdir() if p.is_file()} == before
    code, out = _cli("pretrain", *_sets(finished_run, "optim.steps=4", "run.name=ref"), "--resume")
    assert code == 0 and "already finished" in out and "nan" not in out
    code, out = _cli("pretrain", *_sets(finished_run, "optim.steps=4", "run.name=ref",
                                        "loss.temperature=0.25"), "--resume")
    assert code == 2 and "loss.temperature" in out and "Traceback" not in out


def test_two_pretrains_on_one_run_folder(tmp_path: Path) -> None:
    """A second process gets one sentence naming the holder's pid; the folder is untouched."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from clrbench.locks import folder_lock
        with folder_lock(Path({str(tmp_path / 'busy')!r})):
            print('held', flush=True)
            time.sleep(60)
    """)], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=str(holder.pid)):
            train_loop(_cfg(tmp_path, "optim.steps=1", "run.name=busy"))
        code, out = _cli("pretrain", *_sets(tmp_path, "optim.steps=1", "run.name=busy"))
        assert code == 2 and "in use by process" in out and "Traceback" not in out
        assert not (tmp_path / "busy" / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path / "busy"):  # the OS dropped the dead holder's lock
        pass


def test_disk_full_during_pretraining_is_one_sentence_and_keeps_the_checkpoint(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    import clrbench.weights.checkpoint as ck

    real, calls = torch.save, {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: half written, then the disk is full
            f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", save)
    code, out = _cli("pretrain", *_sets(tmp_path, "optim.steps=4", "run.checkpoint_every=2", "run.name=full"))
    assert code == 2 and "disk is full" in out and "last.pt" in out and "Traceback" not in out
    assert load_clrbench(tmp_path / "full" / "last.pt")["step"] == 2
    assert [p.name for p in (tmp_path / "full").iterdir() if p.name.endswith(".tmp")] == []


# ----------------------------------------------------------------------------- damaged files


def test_corrupted_checkpoint_is_refused_and_never_exported(finished_run: Path, tmp_path: Path) -> None:
    good = finished_run / "ref" / "last.pt"
    code, out = _cli("export", "--checkpoint", str(good), "--out", str(tmp_path / "enc.safetensors"))
    assert code == 0, out
    exported = (tmp_path / "enc.safetensors").read_bytes()
    bad = tmp_path / "last.pt"
    blob = bytearray(good.read_bytes())
    at = len(blob) // 2
    blob[at : at + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"damaged|not a readable"):
        load_clrbench(bad)
    for frac in (0.25, 0.75):  # wherever the bytes land (weights, optimizer state), it is refused
        blob = bytearray(good.read_bytes())
        at = int(len(blob) * frac)
        blob[at : at + 4096] = bytes(4096)
        (tmp_path / "z.pt").write_bytes(bytes(blob))
        with pytest.raises(CheckpointError, match=r"damaged|not a readable"):
            load_clrbench(tmp_path / "z.pt")
    code, out = _cli("export", "--checkpoint", str(bad), "--out", str(tmp_path / "enc.safetensors"))
    assert code == 2 and "Traceback" not in out
    assert (tmp_path / "enc.safetensors").read_bytes() == exported  # the good export is untouched


def test_non_finite_weights_are_refused_by_name(finished_run: Path, tmp_path: Path) -> None:
    from clrbench.weights.checkpoint import CHECKSUM_KEY, atomic_torch_save, tensors_sha256

    ckpt = load_clrbench(finished_run / "ref" / "last.pt")
    ckpt["model"]["encoder.conv1.weight"][0, 0, 0, 0] = float("nan")
    ckpt[CHECKSUM_KEY] = tensors_sha256(ckpt)  # saved that way: the checksum matches
    atomic_torch_save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"non-finite.*encoder.conv1.weight"):
        load_clrbench(tmp_path / "nan.pt")


def test_truncated_cache_entry_is_recomputed_and_force_recomputes(tmp_path: Path) -> None:
    from clrbench.data.cards import Preprocessing
    from clrbench.data.images import ArrayImages
    from clrbench.eval.features import features_for
    from clrbench.weights.adapters import load_encoder

    enc = load_encoder("random:resnet18,width=0.0625,stem=cifar")
    images = ArrayImages(np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8),
                         np.arange(6) % 2, 2)
    pre = Preprocessing(resize=16, crop=16, interpolation="bilinear")

    def get(force: bool = False):
        return features_for(enc, images, "k", tmp_path, pre, 4, "float32", force=force)

    first = np.array(get().features)
    assert get().cached
    entry = tmp_path / "features" / "k.npy"
    entry.write_bytes(entry.read_bytes()[:-40])  # truncated
    again = get()
    assert not again.cached and np.array_equal(np.array(again.features), first)
    assert get().cached and not get(force=True).cached


# ----------------------------------------------------------------------------- records and evals


def test_failed_recompute_keeps_the_ok_record_and_the_board_says_so(tmp_path: Path) -> None:
    from clrbench.leaderboard.board import board_for_results

    write_record(tmp_path, _rec("digits", value=80.33))
    side = write_record(tmp_path, _rec("digits", "failed", error="PermissionError: cache"))
    path = record_path(tmp_path, "ck", "digits", "linear")
    assert side == failed_path(path) and read_record(path).value == 80.33
    (board,) = board_for_results(tmp_path, references=[])
    assert board.rows[0].cells["digits"].value == 80.33
    assert any("recompute failed" in n for n in board.notes)
    write_record(tmp_path, _rec("digits", value=81.0))  # a later success clears the failure
    assert not side.exists() and read_record(path).value == 81.0


def test_a_corrupt_record_is_skipped_with_one_warning(tmp_path: Path, caplog) -> None:
    write_record(tmp_path, _rec("digits"))
    bad = record_path(tmp_path, "ck", "shapes", "linear")
    bad.write_text("{ torn")
    with pytest.raises(Exception, match="shapes__linear"):
        read_records(tmp_path)
    assert [r.task for r in read_records(tmp_path, lenient=True)] == ["digits"]
    assert any("shapes__linear" in r.message for r in caplog.records)


_EVAL_SCRIPT = """
import os, sys, time
from pathlib import Path
from clrbench.eval.executor import run_jobs
from clrbench.records import Record, write_record

class Job:
    def __init__(self, name): self.name = name
    @property
    def key(self): return ("ck", self.name, "linear")

def run(job):
    with open(Path(sys.argv[1]) / f"{job.name}.runs", "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(float(sys.argv[3]) if job.name == sys.argv[2] else 0.3)
    return Record("ck", job.name, "linear", "top1", "ok", 50.0, 1.0, 1, 1, {}, {}, [], {}, {}, {}, "",
                  {}, {}, tags={"pid": os.getpid()})

# Both drivers "plan" together (as two evals started at once do): the barrier keeps a slow
# import from letting the first finish a job before the second has looked at the folder.
ready = Path(sys.argv[1]) / f"{os.getpid()}.ready"
ready.touch()
since = time.time()
deadline = since + 60
while len(list(Path(sys.argv[1]).glob("*.ready"))) < int(sys.argv[4]) and time.time() < deadline:
    time.sleep(0.01)
run_jobs([Job(f"t{i}") for i in range(6)], sys.argv[1], run=run, write=write_record, since=since)
"""


def _eval_proc(results: Path, slow: str = "", slow_s: float = 0.0, drivers: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _EVAL_SCRIPT, str(results), slow, str(slow_s), str(drivers)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_evals_on_one_results_folder_share_the_jobs(tmp_path: Path) -> None:
    a, b = _eval_proc(tmp_path, drivers=2), _eval_proc(tmp_path, drivers=2)
    assert a.wait(120) == 0 and b.wait(120) == 0, (a.stderr.read(), b.stderr.read())
    runs = {p.stem: p.read_text().split() for p in tmp_path.glob("*.runs")}
    assert sorted(runs) == [f"t{i}" for i in range(6)]
    assert all(len(pids) == 1 for pids in runs.values()), runs  # no job ran twice
    assert len(read_records(tmp_path)) == 6


def test_sigkill_mid_eval_leaves_whole_records_and_a_rerun_finishes(tmp_path: Path) -> None:
    proc = _eval_proc(tmp_path, slow="t2", slow_s=60)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "t2.runs").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [r.task for r in read_records(tmp_path)] == ["t0", "t1"]  # whole records only
    rerun = _eval_proc(tmp_path)  # t2's claim died with its holder: the rerun takes it
    assert rerun.wait(120) == 0, rerun.stderr.read()
    assert len(read_records(tmp_path)) == 6

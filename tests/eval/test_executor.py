"""Executor: local and Ray runs write the same records; faults (a dead worker, a raising job, a
killed driver) cost only the jobs they hit.

Ray tests are marked ``ray`` and share one local 2-CPU cluster per module (a few seconds to
start). The killed-driver test spawns the CLI twice and is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from executor_helpers import ToyJob, run_toy

from clrbench.eval.executor import ExecutorError, job_resources, run_jobs, thread_limits
from clrbench.eval.jobs import EvalJob
from clrbench.eval.plan import plan_jobs
from clrbench.records import read_records

TINY = "random:resnet18,width=0.125,stem=cifar"


def _events() -> tuple[list[tuple[str, str]], Any]:
    seen: list[tuple[str, str]] = []
    return seen, lambda ev: seen.append((ev["job"].key[1], ev["state"]))


def test_local_runs_any_job_type_records_failures_and_annotates(tmp_path: Path) -> None:
    jobs = [ToyJob("a"), ToyJob("b", mode="raise"), ToyJob("c")]
    seen, on_event = _events()
    recs = run_jobs(jobs, tmp_path, on_event=on_event, run=run_toy,
                    annotate=lambda job, rec: replace(rec, tags={"who": job.name}))
    assert [r.status for r in recs] == ["ok", "failed", "ok"]
    assert recs[1].error == "RuntimeError: b always fails" and recs[1].value is None
    assert seen[:3] == [("a", "queued"), ("b", "queued"), ("c", "queued")]
    assert seen[3:] == [("a", "running"), ("a", "done"), ("b", "running"), ("b", "failed"),
                        ("c", "running"), ("c", "done")]
    on_disk = {r.task: r for r in read_records(tmp_path)}
    assert set(on_disk) == {"a", "b", "c"} and on_disk["c"].tags == {"who": "c"}


def test_unknown_executor_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="use local or ray"):
        run_jobs([ToyJob("a")], tmp_path, executor="dask", run=run_toy)


def test_resources_come_from_the_protocol_file_or_the_job() -> None:
    job = EvalJob(TINY, "x", "digits", "linear")
    assert job_resources(job) == {"num_cpus": 1.0}  # linear.yaml: resources: {num_cpus: 1}
    trial = EvalJob(TINY, "x", "digits", "linear", device="cuda", options={"resources": {"num_gpus": 1, "num_cpus": 2}})
    assert job_resources(trial) == {"num_cpus": 2.0, "num_gpus": 1.0}
    # finetune-short.yaml asks for {num_gpus: 1, num_cpus: 1}; a CPU job keeps only the CPUs
    assert job_resources(EvalJob(TINY, "x", "digits", "finetune-short", device="cuda"))["num_gpus"] == 1.0
    assert job_resources(EvalJob(TINY, "x", "digits", "finetune-short")) == {"num_cpus": 1.0}
    assert job_resources(ToyJob("a", cpus=2)) == {"num_cpus": 2.0}
    assert job_resources(object()) == {"num_cpus": 1.0}


def test_thread_limits_set_and_restore() -> None:
    import torch
    from threadpoolctl import threadpool_info

    before, env = torch.get_num_threads(), os.environ.get("CLRBENCH_CPUS")
    with thread_limits(1):
        assert torch.get_num_threads() == 1 and os.environ["CLRBENCH_CPUS"] == "1"
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert torch.get_num_threads() == before and os.environ.get("CLRBENCH_CPUS") == env


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])  # workers import the helpers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _values(results: Path) -> dict[str, tuple[Any, ...]]:
    return {r.task: (r.value, r.hparams, r.val_curve, r.predictions, r.split_sizes) for r in read_records(results)}


@pytest.mark.ray
def test_ray_writes_the_same_records_as_local(ray_cluster: None, tmp_path: Path) -> None:
    out = {}
    for ex in ("local", "ray"):
        results = tmp_path / ex
        todo, _ = plan_jobs([TINY], "digits,shapes", ["linear"], results, cache_dir=str(tmp_path / f"cache-{ex}"))
        with thread_limits(1):  # the Ray tasks ask for one CPU each, so one thread
            recs = run_jobs(todo, results, executor=ex)
        assert [r.status for r in recs] == ["ok", "ok"], [r.error for r in recs]
        out[ex] = _values(results)
    assert set(out["ray"]) == {"digits", "shapes"}
    assert out["ray"] == out["local"]


@pytest.mark.ray
def test_ray_retries_a_dead_worker_and_records_a_raising_job(ray_cluster: None, tmp_path: Path) -> None:
    marker = tmp_path / "died"
    jobs = [ToyJob("ok1"), ToyJob("dies", mode="die_once", marker=str(marker)), ToyJob("raises", mode="raise"),
            ToyJob("ok2")]
    seen, on_event = _events()
    recs = {r.task: r for r in run_jobs(jobs, tmp_path, executor="ray", run=run_toy, on_event=on_event)}
    assert marker.exists()  # the first attempt did kill its worker
    assert recs["dies"].status == "ok"  # ... and Ray ran it again
    assert recs["raises"].status == "failed" and recs["raises"].error == "RuntimeError: raises always fails"
    assert recs["ok1"].status == recs["ok2"].status == "ok"
    assert {r.task: r.status for r in read_records(tmp_path)} == {k: r.status for k, r in recs.items()}
    assert sorted(s for _, s in seen).count("running") == 4


@pytest.mark.ray
def test_ray_sets_threads_per_task_and_fails_infeasible_requests(ray_cluster: None, tmp_path: Path) -> None:
    jobs = [ToyJob("two", cpus=2), ToyJob("one", cpus=1), ToyJob("huge", cpus=64)]
    recs = {r.task: r for r in run_jobs(jobs, tmp_path, executor="ray", run=run_toy)}
    assert recs["two"].tags["torch_threads"] == 2 and recs["one"].tags["torch_threads"] == 1
    assert recs["two"].tags["cpus"] == "2" and recs["one"].tags["cpus"] == "1"
    assert recs["huge"].status == "failed" and "num_cpus" in (recs["huge"].error or "")


# ----------------------------------------------------------------------------- killed driver


def _eval_cmd(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "clrbench", "eval", "--checkpoint", TINY, "--tasks", "quick",
            "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")]


@pytest.mark.slow
def test_killed_driver_rerun_runs_only_the_missing_jobs(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    records = tmp_path / "res" / "records"
    proc = subprocess.Popen(_eval_cmd(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(records.glob("*/*.json")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    first = {p: p.read_bytes() for p in records.glob("*/*.json")}
    assert 1 <= len(first) < 4, "the driver must die mid-suite"
    for data in first.values():
        json.loads(data)  # whole records only
    done = subprocess.run(_eval_cmd(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(first)} job(s) already recorded" in done.stderr
    assert all(p.read_bytes() == b for p, b in first.items())  # not rerun, not rewritten
    final = sorted(p.name for p in records.glob("*/*.json"))
    assert final == ["digits__linear.json", "scenes__linear.json", "shapes__linear.json", "textures__linear.json"]
    assert len(read_records(tmp_path / "res")) == 4

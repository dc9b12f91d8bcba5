"""Launchers: torchrun with 2 processes and Ray Train with 2 workers run the same loop.

Both spawn real processes (gloo on CPU): marked ``dist`` and ``ray``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clrbench.weights.checkpoint import load_clrbench

TINY = ["model.width=0.125", "model.head_dim=16", "data.num_images=256", "optim.batch_size_global=32",
        "optim.warmup_epochs=1", "run.log_every=1", "augment.image_size=16", "run.precision=fp32"]


def _cmd(tmp_path: Path, name: str, *extra: str) -> list[str]:
    sets = [x for a in [*TINY, f"run.out={tmp_path}", f"run.name={name}"] for x in ("--set", a)]
    return [sys.executable, "-m", "clrbench", "pretrain", "quickstart", *sets, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


@pytest.mark.dist
@pytest.mark.slow
def test_torchrun_two_processes_a_few_steps(tmp_path: Path) -> None:
    res = subprocess.run(_cmd(tmp_path, "tr", "--steps", "3", "--launcher", "torchrun", "--nproc", "2"),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = load_clrbench(tmp_path / "tr" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert ckpt["derived"]["batch_size_per_device"] == 16
    lines = (tmp_path / "tr" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]  # rank 0 alone writes the log


@pytest.mark.dist
def test_batch_not_divisible_by_world_size(tmp_path: Path) -> None:
    res = subprocess.run(_cmd(tmp_path, "bad", "--steps", "1", "--set", "optim.batch_size_global=33",
                              "--launcher", "torchrun", "--nproc", "2"),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode != 0
    assert "not divisible by the world size 2" in res.stderr


def _worker_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "RayTrainWorker"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_train_two_workers_survive_a_killed_worker(tmp_path: Path) -> None:
    """2 CPU workers; one is SIGKILLed mid-run; the trainer restarts from the last checkpoint."""
    cmd = _cmd(tmp_path, "ray", "--steps", "12", "--set", "run.checkpoint_every=3", "--launcher", "ray",
               "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    metrics = tmp_path / "ray" / "metrics.jsonl"
    killed = False
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        if not killed and steps >= 5 and (tmp_path / "ray" / "last.pt").exists():
            pids = _worker_pids()
            if pids:
                os.kill(pids[-1], signal.SIGKILL)
                killed = True
        time.sleep(0.1)
    proc.wait(timeout=300)
    reader.join(timeout=5)
    assert killed, "no Ray Train worker was found to kill"
    assert proc.returncode == 0, "".join(output)[-4000:]
    ckpt = load_clrbench(tmp_path / "ray" / "last.pt")
    assert ckpt["step"] == 12 and ckpt["world_size"] == 2


def test_unreachable_ray_address_fails_in_seconds() -> None:
    """ray.init retries a dead address for minutes; the launcher answers at once, in one sentence."""
    import socket

    from clrbench.launch import LaunchError, check_ray_address

    with socket.socket() as s:  # a port nobody listens on: bind, read it, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LaunchError, match="No Ray cluster answers"):
        check_ray_address(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(LaunchError, match="not HOST:PORT"):
        check_ray_address("nonsense")
    check_ray_address("auto")  # Ray's own look-up: not ours to check

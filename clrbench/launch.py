"""Run the one training loop in this process, under torchrun, or on Ray Train.

The loop (:func:`clrbench.pretraining.train.train_loop`) is the same function under all three;
this module is the only place that knows how processes are started.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from clrbench.config import PretrainConfig, to_dict
from clrbench.errors import UserError


class LaunchError(UserError, RuntimeError):
    """Processes could not be started or did not finish; one clear sentence."""


def launch(cfg: PretrainConfig, launcher: str = "local", resume: bool = False, nproc: int = 2,
           workers: int = 2, gpus_per_worker: float = 0, address: str | None = None,
           reporter_factory: Callable[[], Any] | None = None) -> Any:
    """Train with the chosen launcher; returns the TrainSummary of rank 0 (None for torchrun)."""
    if launcher == "local":
        return _local(cfg, resume, reporter_factory)
    if launcher == "torchrun":
        return _torchrun(cfg, resume, nproc)
    if launcher == "ray":
        return _ray(cfg, resume=resume, workers=workers, gpus_per_worker=gpus_per_worker, address=address)
    raise LaunchError(f"Unknown launcher {launcher!r}; use local, torchrun or ray.")


def _local(cfg: PretrainConfig, resume: bool, reporter_factory: Callable[[], Any] | None) -> Any:
    """In this process; under torchrun (WORLD_SIZE set) it joins the process group first."""
    from clrbench import dist
    from clrbench.log import setup_logging
    from clrbench.pretraining.train import train_loop

    started = dist.init_from_env()
    setup_logging(dist.rank())
    reporter = reporter_factory() if (reporter_factory and dist.is_main()) else None
    try:
        return train_loop(cfg, reporter=reporter, resume=resume)
    finally:
        if reporter is not None and hasattr(reporter, "close"):
            reporter.close()
        if started:
            dist.destroy()


def _torchrun(cfg: PretrainConfig, resume: bool, nproc: int) -> None:
    """N processes on this node: ``torchrun --nproc-per-node N -m clrbench pretrain CFG``."""
    if nproc < 1:
        raise LaunchError(f"--nproc must be >= 1, got {nproc}.")
    # Check here what every child would refuse, so the user reads it once, not N times above a
    # torchrun traceback.
    preflight(cfg, resume, nproc)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(to_dict(cfg), f)
        recipe = f.name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "clrbench", "pretrain", recipe]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        rc = subprocess.run(cmd, env=env).returncode
    finally:
        Path(recipe).unlink(missing_ok=True)
    if rc != 0:
        raise LaunchError(f"torchrun exited with status {rc}; the messages above say why.")
    return None


def preflight(cfg: PretrainConfig, resume: bool, world: int) -> None:
    """In the driver, before any process starts: the batch splits over ``world`` and fits the
    data, the run folder is free (not held by another process), and an existing run is resumed
    only when asked and only with its own settings."""
    from clrbench.config import derive
    from clrbench.data.pretrain_source import open_source
    from clrbench.locks import check_free
    from clrbench.pretraining.train import TrainingError, check_resumable
    from clrbench.weights.checkpoint import load_clrbench

    d = derive(cfg, len(open_source(cfg.data)), world)
    run_dir = Path(cfg.run.out) / cfg.run.name
    check_free(run_dir)
    last = run_dir / "last.pt"
    if last.exists() and not resume:
        raise TrainingError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out.")
    if last.exists():
        check_resumable(load_clrbench(last), cfg, d, run_dir)


def _ray_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: the same train_loop, checkpoints mirrored to Ray."""
    import shutil

    import ray.train
    import torch

    from clrbench import dist
    from clrbench.config import PretrainConfig, from_dict
    from clrbench.log import setup_logging
    from clrbench.pretraining.train import train_loop

    torch.set_num_threads(max(1, int(config["threads"])))  # Ray reuses processes: set it here
    cfg: PretrainConfig = from_dict(PretrainConfig, config["cfg"])
    setup_logging(dist.rank())
    run_dir = Path(cfg.run.out) / cfg.run.name
    restored = ray.train.get_checkpoint()
    if restored is not None and dist.is_main():
        # A restart after a failure: bring back the latest checkpoint Ray Train holds.
        with restored.as_directory() as d:
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(d) / "last.pt", run_dir / ".ray-restore.pt")
            (run_dir / ".ray-restore.pt").replace(run_dir / "last.pt")
    dist.barrier()

    def report(step: int, path: Path | None) -> None:
        ckpt = None
        if path is not None:
            # Only last.pt travels to Ray's storage; the run folder keeps the rest.
            tmp = Path(tempfile.mkdtemp(prefix="clrbench-ray-"))
            shutil.copyfile(path, tmp / "last.pt")
            ckpt = ray.train.Checkpoint.from_directory(str(tmp))
        ray.train.report({"step": step}, checkpoint=ckpt)

    # The driver has refused a non-resumed run over an existing one, so a last.pt found here was
    # written by an earlier attempt of this fit: continue it (a worker died and Ray restarted us).
    train_loop(cfg, resume=True, on_checkpoint=report)


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, with one sentence, when ``HOST:PORT`` does not answer.

    ray.init retries an unreachable GCS for minutes before giving up; a TCP connect with a
    short timeout tells the user at once. ``None`` / ``auto`` / ``local`` are Ray's own look-ups
    and answer quickly by themselves.
    """
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise LaunchError(f"Ray address {address!r} is not HOST:PORT (or auto).")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise LaunchError(f"No Ray cluster answers at {address} ({e.strerror or e}); start one with "
                          "`ray start --head` there, or drop --address to start a local one.") from None


def _ray(cfg: PretrainConfig, resume: bool, workers: int, gpus_per_worker: float,
         address: str | None) -> Any:
    """Ray Train's TorchTrainer over ``workers`` processes; a dead worker restarts from the last checkpoint."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise LaunchError("--launcher ray needs Ray Train: pip install 'ray[train]'.") from None
    if workers < 1:
        raise LaunchError(f"--workers must be >= 1, got {workers}.")
    if cfg.optim.batch_size_global % workers:
        raise LaunchError(f"optim.batch_size_global={cfg.optim.batch_size_global} is not divisible by "
                          f"--workers {workers}.")
    preflight(cfg, resume, workers)
    if not ray.is_initialized():
        check_ray_address(address)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise LaunchError(f"Cannot reach the Ray cluster at {address!r}: {e}") from None
    use_gpu = gpus_per_worker > 0
    cpus = max(1, int(ray.cluster_resources().get("CPU", workers) // workers))
    resources = {"CPU": cpus, **({"GPU": gpus_per_worker} if use_gpu else {})}
    run_dir = (Path(cfg.run.out) / cfg.run.name).resolve()
    if (run_dir / "last.pt").exists() and not resume:
        raise LaunchError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out.")
    storage = run_dir / "ray"
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"cfg": to_dict(_absolute_out(cfg)), "threads": cpus},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=120),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name="train", storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=2)),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray wraps the worker's error; one sentence for the user
        raise LaunchError(f"Ray Train failed after its retries: {str(e).splitlines()[-1][:300]}") from None
    return _summary_from_run(run_dir)


def _absolute_out(cfg: PretrainConfig) -> PretrainConfig:
    """Workers may start in another directory: give them the absolute run folder."""
    import dataclasses

    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=str(Path(cfg.run.out).resolve())))


def _summary_from_run(run_dir: Path) -> Any:
    import json

    from clrbench.config import Derived
    from clrbench.pretraining.train import TrainSummary
    from clrbench.weights.checkpoint import load_clrbench

    ckpt = load_clrbench(run_dir / "last.pt")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {"loss": float("nan")}
    return TrainSummary(run_dir, run_dir / "last.pt", int(ckpt["step"]), float(last.get("loss") or "nan"),
                        0.0, Derived(**ckpt["derived"]))

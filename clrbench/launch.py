"""Run the one training loop in this process, under torchrun, or on Ray Train.

The loop (:func:`clrbench.simclr.train.train_loop`) is the same function under all three;
this module is the only place that knows how processes are started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from clrbench.config import PretrainConfig, to_dict


class LaunchError(RuntimeError):
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
    from clrbench.simclr.train import train_loop

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

"""Toy jobs for the executor tests, importable by name on Ray workers (PYTHONPATH points here)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from clrbench.records import Record


@dataclass(frozen=True)
class ToyJob:
    """A job of no work: ``mode`` ok, raise (always), die_once (kills its worker on the first try)."""

    name: str
    mode: str = "ok"
    marker: str = ""  # die_once: the file whose absence means "first attempt"
    cpus: float = 1.0

    @property
    def key(self) -> tuple[str, str, str]:
        return ("toy", self.name, "linear")

    def resources(self) -> dict[str, float]:
        return {"num_cpus": self.cpus}


def run_toy(job: ToyJob) -> Record:
    """The toy job's record; its tags say the thread counts the task ran with."""
    import torch

    if job.mode == "raise":
        raise RuntimeError(f"{job.name} always fails")
    if job.mode == "die_once" and not Path(job.marker).exists():
        Path(job.marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-job
    return Record("toy", job.name, "linear", "top1", "ok", 50.0, 1.0, 1, 1, {}, {}, [], {}, {}, {}, "", {}, {},
                  tags={"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
                        "cpus": os.environ.get("CLRBENCH_CPUS"), "pid": os.getpid()})

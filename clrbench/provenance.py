"""Where and with what a result was computed: the one provenance of checkpoints and records.

Every record carries :func:`provenance`; every checkpoint :func:`version_info`. Both read the
git state of the clrbench source once per process (:func:`git_state`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def provenance() -> dict[str, Any]:
    """Where and with what a record was computed; never raises.

    torch facts (threads, CUDA device) are read only if torch is already imported: every
    evaluation job imports it anyway, and importing it here would cost seconds elsewhere.

    Returns:
        clrbench version, git SHA and dirty flag (None outside a git checkout), python,
        torch, torchvision, numpy and scikit-learn versions, hostname, CPU model, torch
        threads, CUDA device name (None without one) and the UTC date in ISO 8601.
    """
    sha, dirty = git_state()
    threads, cuda = _torch_state()
    return {
        **_static_provenance(),
        "git_sha": sha,
        "git_dirty": dirty,
        "torch_threads": threads,
        "cuda_device": cuda,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@functools.lru_cache(maxsize=1)
def _static_provenance() -> dict[str, Any]:
    from clrbench import __version__

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "clrbench": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "torchvision": version("torchvision"),
        "numpy": version("numpy"),
        "sklearn": version("scikit-learn"),
        "hostname": socket.gethostname(),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of one git command in ``cwd``, or None on any failure (no git, not a checkout)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of a live checkout
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    # Once per process: three git subprocesses per record were most of the harness's per-job
    # cost, and the code a process runs is the code it imported, so the state at first use
    # is the one that describes it.
    pkg = Path(__file__).resolve().parent
    # The package must be tracked by the checkout: an installed copy inside some other
    # repository (a venv in a project) must not report that project's SHA.
    if _git(["ls-files", "--error-unmatch", "__init__.py"], pkg) is None:
        return None, None
    sha = _git(["rev-parse", "HEAD"], pkg)
    status = _git(["status", "--porcelain", "--untracked-files=no"], pkg)
    return sha, (None if status is None else bool(status))


def _torch_state() -> tuple[int | None, str | None]:
    torch = sys.modules.get("torch")
    if torch is None:
        return None, None
    try:
        threads = int(torch.get_num_threads())
        cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # provenance must never fail a finished job
        return None, None
    return threads, cuda


def git_sha() -> str:
    """The commit of the clrbench source, '+dirty' if modified; '' outside a git checkout."""
    sha, dirty = git_state()
    return "" if sha is None else sha + ("+dirty" if dirty else "")


def version_info() -> dict[str, Any]:
    """What a checkpoint records of the code that wrote it."""
    import torch

    from clrbench import __version__

    return {"clrbench": __version__, "torch": str(torch.__version__), "git_sha": git_sha()}

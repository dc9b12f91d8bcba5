"""Shared fixtures; the environment is made offline before anything imports datasets or ray."""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Tests run tiny models whose ops are latency-bound: one OpenMP thread avoids the
# synchronisation cost (20 ms per tiny op measured on a busy 2-core machine, 7 us with one
# thread), and spawned test processes (gloo, Ray) do not oversubscribe the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly on machines without CUDA (CI never has one)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def local_ray() -> Iterator[None]:
    """A two-CPU local Ray cluster for one test, shut down after it (skips without ray)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()

"""Streaming feature rows onto a device, the fp16 storage rule and loader-worker sizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clrbench.eval.features import extraction_workers, storage_dtype, valid_rows
from clrbench.eval.rows import stack_rows


def test_stack_rows_equals_concatenate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(37, 5)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    b = rng.normal(size=(11, 5)).astype(np.float32)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    got = stack_rows([mm, b], torch.device("cpu"), torch.float32, chunk=8)
    want = np.concatenate([a.astype(np.float32), b])
    np.testing.assert_array_equal(got.numpy(), want)


def test_storage_dtype_and_valid_rows() -> None:
    assert storage_dtype(1_281_167, 2048, "bfloat16") is np.float16
    assert storage_dtype(50_000, 2048, "bfloat16") is np.float32
    assert storage_dtype(1_281_167, 2048, "float32") is np.float32  # an fp32 protocol keeps fp32
    x = np.arange(12.0).reshape(4, 3)
    assert valid_rows(x, np.ones(4, bool)) is x  # no copy when every image decoded
    np.testing.assert_array_equal(valid_rows(x, np.array([1, 0, 1, 1], bool)), x[[0, 2, 3]])


def test_extraction_workers_follow_the_job_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLRBENCH_CPUS", "8")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert extraction_workers(torch.device("cpu"), 100) == 6  # the cores the forward leaves free
    assert extraction_workers(torch.device("cuda"), 100) == 7  # all but the feeding process
    assert extraction_workers(torch.device("cuda"), 1) == 0  # one batch: nothing to overlap
    monkeypatch.setenv("CLRBENCH_CPUS", "2")
    assert extraction_workers(torch.device("cpu"), 100) == 0

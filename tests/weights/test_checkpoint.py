"""Checkpoints load without running code; writes are atomic; errors are one sentence."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from clrbench.weights.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    load,
    load_clrbench,
    sha256_state,
)

MARK = Path("/tmp/clrbench-pwned")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


def test_code_running_pickle_runs_nothing(tmp_path: Path) -> None:
    MARK.unlink(missing_ok=True)
    p = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refuses"):
        load(p)
    assert not MARK.exists()


def test_bad_files_get_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load(junk)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        load(tensor)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a clrbench checkpoint"):
        load_clrbench(foreign)
    with pytest.raises(CheckpointError, match="is a folder"):
        load(tmp_path)


def test_atomic_save_keeps_previous_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, p)

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        atomic_torch_save({"step": 2}, p)
    monkeypatch.undo()
    assert torch.load(p, weights_only=True) == {"step": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_state_hash_sees_every_byte() -> None:
    s = {"w": torch.ones(2, 2), "n": torch.tensor(3)}
    h = sha256_state(s)
    assert h == sha256_state({k: v.clone() for k, v in s.items()})
    s2 = {"w": torch.ones(2, 2), "n": torch.tensor(4)}
    assert h != sha256_state(s2)
    assert pickle.dumps(h)  # a plain string

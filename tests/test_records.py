"""Records: schema checks, JSON round trip, atomic writes, reading, has_record and provenance."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clrbench import provenance as provenance_mod
from clrbench.provenance import provenance
from clrbench.records import (
    Record,
    RecordError,
    has_record,
    read_record,
    read_records,
    record_path,
    write_record,
)


def make_record(**over: Any) -> Record:
    base: dict[str, Any] = dict(
        checkpoint_id="quickstart-3f2a9c1d", task="digits", protocol="linear", metric="top1", status="ok",
        value=91.25, stderr=0.4, task_version=1, protocol_version=1,
        checkpoint={"path": "runs/quickstart/last.pt", "sha256": "ab" * 32, "kind": "clrbench", "arch": "resnet18"},
        hparams={"lambda": 0.01}, val_curve=[[1e-6, 88.0], [1e-5, 90.5]],
        predictions={"y": [0, 1, 2, 3], "pred": [0, 1, 2, 2]},
        split_sizes={"train": 1008, "val": 250, "test": 539},
        expected_split_sizes={"train": 1008, "val": 250, "test": 539}, split_hash="deadbeef",
        timings={"features_s": 1.5, "probe_s": 0.25}, provenance={"clrbench": "0.1.0"},
    )
    base.update(over)
    return Record(**base)


def test_round_trip(tmp_path: Path) -> None:
    rec = make_record(tags={"study": "temperature", "point": "0.5"})
    path = write_record(tmp_path, rec)
    assert path == tmp_path / "records" / "quickstart-3f2a9c1d" / "digits__linear.json"
    assert read_record(path) == rec
    assert read_records(tmp_path) == [rec]


def test_json_is_sorted_indented_with_compact_predictions(tmp_path: Path) -> None:
    text = write_record(tmp_path, make_record()).read_text()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert text.startswith('{\n "checkpoint"')  # indent 1
    assert ' "predictions": {"pred":[0,1,2,2],"y":[0,1,2,3]},\n' in text


def test_numpy_values_and_non_finite_floats_are_stored_as_json(tmp_path: Path) -> None:
    rec = make_record(hparams={"lambda": np.float64(0.5), "k": np.int64(3)},
                      predictions={"y": np.arange(3), "pred": np.array([0, 1, 1])},
                      val_curve=[[0.1, float("nan")], [1.0, 50.0]])
    back = read_record(write_record(tmp_path, rec))
    assert back.hparams == {"lambda": 0.5, "k": 3}
    assert back.predictions == {"y": [0, 1, 2], "pred": [0, 1, 1]}
    assert back.val_curve == [[0.1, None], [1.0, 50.0]]


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_record(tmp_path, make_record())
    write_record(tmp_path, make_record(value=92.0))
    folder = tmp_path / "records" / "quickstart-3f2a9c1d"
    assert [p.name for p in folder.iterdir()] == ["digits__linear.json"]
    assert read_record(folder / "digits__linear.json").value == 92.0


def test_a_failure_mid_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_record(tmp_path, make_record(value=50.0))
    before = path.read_bytes()

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)  # the new bytes are written, not yet renamed
    with pytest.raises(OSError, match="No space"):
        write_record(tmp_path, make_record(value=99.0))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_torn_file_is_one_clear_error(tmp_path: Path) -> None:
    path = write_record(tmp_path, make_record())
    path.write_text(path.read_text()[:40])
    with pytest.raises(RecordError, match=r"digits__linear\.json is not a readable JSON record"):
        read_record(path)
    with pytest.raises(RecordError, match=r"digits__linear\.json"):
        read_records(tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("value"), "lacks value"),
    (lambda d: d.update(extra=1), "unknown field"),
    (lambda d: d.update(task_version="1"), "task_version should be int"),
    (lambda d: d.update(schema=99), "newer than this clrbench"),
    (lambda d: d.update(value=0.91 * 1000), "percent"),
])
def test_invalid_content_is_rejected(tmp_path: Path, edit: Any, message: str) -> None:
    data = make_record().to_dict()
    edit(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=message):
        read_record(path)


def test_status_and_value_must_agree() -> None:
    with pytest.raises(RecordError, match="carries no value"):
        make_record(status="failed", value=10.0)
    with pytest.raises(RecordError, match="value in percent"):
        make_record(value=None)
    with pytest.raises(RecordError, match="status must be"):
        make_record(status="done")
    failed = make_record(status="failed", value=None, stderr=None, metric="", error="DatasetError: no data")
    assert failed.error and failed.value is None


def test_read_records_skips_temporaries_and_rejects_misplaced_files(tmp_path: Path) -> None:
    assert read_records(tmp_path) == []
    path = write_record(tmp_path, make_record())
    (path.parent / ".digits__linear.json.abc.tmp").write_text("{")  # an in-flight write
    assert len(read_records(tmp_path)) == 1
    path.rename(path.with_name("cifar10__linear.json"))
    with pytest.raises(RecordError, match="move it to"):
        read_records(tmp_path)


def test_has_record_only_for_ok(tmp_path: Path) -> None:
    args = ("quickstart-3f2a9c1d", "digits", "linear")
    assert not has_record(tmp_path, *args)
    write_record(tmp_path, make_record(status="failed", value=None, error="boom"))
    assert not has_record(tmp_path, *args)  # failed jobs rerun
    write_record(tmp_path, make_record())
    assert has_record(tmp_path, *args)
    record_path(tmp_path, *args).write_text("{torn")
    assert not has_record(tmp_path, *args)  # a torn file is rerun and overwritten


@pytest.mark.parametrize("bad", [("../up", "digits", "linear"), ("ck", "a__b", "linear"), ("ck", "digits", "")])
def test_record_path_rejects_unsafe_names(tmp_path: Path, bad: tuple[str, str, str]) -> None:
    with pytest.raises(RecordError, match="cannot name a record file"):
        record_path(tmp_path, *bad)


def test_provenance_fields() -> None:
    prov = provenance()
    for key in ("clrbench", "git_sha", "git_dirty", "python", "torch", "torchvision", "numpy", "sklearn",
                "hostname", "cpu", "torch_threads", "cuda_device", "date"):
        assert key in prov
    assert prov["date"].endswith("+00:00")
    json.dumps(prov)  # JSON-ready


def test_provenance_never_fails_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance_mod.subprocess, "run", no_git)
    provenance_mod.git_state.cache_clear()  # computed once per process; recompute without git
    prov = provenance()
    provenance_mod.git_state.cache_clear()
    assert prov["git_sha"] is None and prov["git_dirty"] is None


def test_record_fields_follow_the_contract() -> None:
    names = [f.name for f in dataclasses.fields(Record)]
    assert names[:4] == ["checkpoint_id", "task", "protocol", "metric"]
    assert names[-3:] == ["error", "tags", "schema"]
    assert os.path.basename(record_path("r", "c", "t", "p")) == "t__p.json"


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; a shared results folder needs what open() would give."""
    from clrbench.atomic import write_bytes

    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "r.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644

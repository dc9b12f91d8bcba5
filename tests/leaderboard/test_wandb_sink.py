"""`clrbench eval --wandb PROJECT`: one run with the boards and records; wandb is optional."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clrbench.leaderboard import board as lb
from clrbench.leaderboard.wandb_sink import WandbMissingError, log_eval, require_wandb
from clrbench.records import Record


def _records() -> list[Record]:
    return [Record(cid, t, "linear", "top1", "ok", v, 0.5, 1, 1, {"path": cid}, {"lambda": 0.1}, [], {}, {}, {}, "s",
                   {}, {}) for cid, t, v in (("a", "cifar10", 60.0), ("a", "dtd", 70.0), ("b", "cifar10", 80.0))]


class _FakeWandb:
    """The calls log_eval makes, recorded."""

    def __init__(self) -> None:
        self.inits: list[dict[str, Any]] = []
        self.logged: list[dict[str, Any]] = []
        self.finished = False

    def Table(self, columns: list[str], data: list[list[Any]]) -> Any:  # wandb's name
        return SimpleNamespace(columns=columns, data=data)

    def init(self, **kw: Any) -> Any:
        self.inits.append(kw)
        fake = self

        class Run:
            summary: dict[str, Any] = {}  # noqa: RUF012 - a stand-in for wandb's run
            url = "https://wandb.example/run"

            def log(self, d: dict[str, Any]) -> None:
                fake.logged.append(d)

            def finish(self) -> None:
                fake.finished = True

        self.run = Run()
        return self.run


def test_log_eval_with_a_stand_in_module() -> None:
    recs = _records()
    fake = _FakeWandb()
    where = log_eval("proj", [lb.build_board(recs, [], "linear")], recs, config={"tasks": "quick"}, wandb=fake)
    assert where == "https://wandb.example/run" and fake.finished
    assert fake.inits[0]["project"] == "proj" and fake.inits[0]["config"] == {"tasks": "quick"}
    board = fake.logged[0]["board/linear"]
    assert board.columns[:4] == ["model", "kind", "cifar10", "dtd"]
    assert sorted(r[0] for r in board.data) == ["a", "b"] and fake.logged[0]["records"].data[0][7] == '{"lambda": 0.1}'
    assert fake.run.summary["linear/cifar10/b"] == 80.0


def test_missing_wandb_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(WandbMissingError, match="pip install wandb"):
        require_wandb()


def test_offline_run_with_the_real_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    recs = _records()
    where = log_eval("clrbench-test", [lb.build_board(recs, [], "linear")], recs, mode="offline")
    assert Path(where).exists() or "offline" in where
    assert list((tmp_path / "wandb").glob("offline-run-*"))

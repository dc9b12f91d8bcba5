"""finetune-asha: the fine-tune grid searched by ASHA on Ray Tune (clrbench.eval.finetune.asha).

Without Ray: the protocol file, a trial run to a rung and resumed, rung replay, the rung
table, selection and the record schema. With Ray (marker ``ray``, one short search on a
stub, no training): the rung schedule against a hand-computed ASHA run, and resuming an
interrupted search from Tune's experiment state.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clrbench.config import ConfigError
from clrbench.data.images import ArrayImages
from clrbench.eval.finetune import asha
from clrbench.eval.finetune import grid as grid_mod
from clrbench.eval.finetune import trainer as ft
from clrbench.eval.finetune.images import ImageSizes
from clrbench.eval.protocols import FinetuneAshaProtocol, load_protocol
from clrbench.records import Record, read_records, write_record
from clrbench.weights.adapters import load_encoder

RANDOM = "random:resnet18,width=0.125,stem=cifar"


def test_asha_protocol_keeps_the_papers_grid_and_steps() -> None:
    paper, fast = load_protocol("finetune"), load_protocol("finetune-asha")
    assert isinstance(fast, FinetuneAshaProtocol) and fast.kind == "finetune-asha"
    assert (fast.lrs, fast.wds, fast.steps, fast.batch_size) == (paper.lrs, paper.wds, paper.steps, paper.batch_size)
    assert fast.rungs == (1250, 5000, 20000) and fast.reduction_factor == 4
    assert len(asha.launch_order(fast)) == 56 and sorted(asha.launch_order(fast)) == grid_mod.grid(fast)
    short = load_protocol("finetune-asha-short")
    assert short.rungs[-1] == short.steps and short.resources == {"num_cpus": 1.0}
    with pytest.raises(ConfigError, match="geometric"):
        FinetuneAshaProtocol("x", 1, steps=100, rungs=(10, 30, 100))
    with pytest.raises(ConfigError, match="geometric"):
        FinetuneAshaProtocol("x", 1, steps=100, rungs=(25, 100), reduction_factor=2)


def _spec(**kw: Any) -> ft.TrialSpec:
    base = dict(lr=0.05, wd=1e-4, weight_decay=1e-4 / 0.05, seed=3, steps=6, batch_size=16, momentum=0.9,
                schedule="cosine", bn_momentum=0.1, sizes=ImageSizes(16, 16, 16), crop_scale=(0.25, 1.0),
                precision="auto", checkpoint_every=100, num_classes=3, multilabel=False)
    return ft.TrialSpec(**{**base, **kw})


def test_a_trial_run_rung_by_rung_is_the_full_length_trial(tmp_path: Path) -> None:
    """until=rung then a later until continues the same run: same weights as one straight run."""
    rng = np.random.default_rng(0)
    images = ArrayImages(rng.integers(0, 255, (40, 20, 24, 3), dtype=np.uint8), np.arange(40) % 3, 3)
    enc, spec = load_encoder(RANDOM), _spec()
    ref, _ = ft.train_trial(enc, images, spec)
    ckpt = tmp_path / "trial.pt"
    _, first = ft.train_trial(enc, images, spec, checkpoint=ckpt, until=2)
    assert first.steps_done == 2 and torch.load(ckpt, weights_only=True)["step"] == 2
    net, out = ft.train_trial(enc, images, spec, checkpoint=ckpt, until=6)
    assert out.resumed_from == 2 and out.steps_done == 6
    for (k, a), b in zip(ref.state_dict().items(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def _search(tmp_path: Path, points: list[tuple[int, int]], rungs: tuple[int, ...] = (1, 2, 4), rf: int = 2,
            **kw: Any) -> asha.Search:
    return asha.Search(tuple(points), rungs, rf, str(tmp_path), {"num_cpus": 1.0}, **kw)


def test_a_restarted_trial_replays_its_finished_rungs(tmp_path: Path) -> None:
    calls: list[tuple[tuple[int, int], int]] = []

    def stub(point: tuple[int, int], until: int) -> dict[str, Any]:
        calls.append((point, until))
        return {"val": 50.0 + until, "status": "ok", "seconds": 0.1}

    s = _search(tmp_path, [(0, 0)])
    reported: list[dict[str, Any]] = []
    asha.run_trial((0, 0), s, stub, reported.append)
    assert calls == [((0, 0), 1), ((0, 0), 2), ((0, 0), 4)]
    assert [r["steps"] for r in reported] == [1, 2, 4] and reported[-1]["val"] == reported[-1]["score"] == 54.0
    again: list[dict[str, Any]] = []
    asha.run_trial((0, 0), s, stub, again.append)  # a restart: nothing retrained, the same reports
    assert len(calls) == 3 and again == reported
    path = asha.rows_path(tmp_path, (0, 0))
    path.write_text(json.dumps(json.loads(path.read_text())[:1]))  # killed after its first rung
    asha.run_trial((0, 0), s, stub, again.append)
    assert calls[3:] == [((0, 0), 2), ((0, 0), 4)]


def test_a_diverged_trial_reports_the_floor_and_ends(tmp_path: Path) -> None:
    def stub(point: tuple[int, int], until: int) -> dict[str, Any]:
        return {"val": None if until == 2 else 30.0, "status": "diverged" if until == 2 else "ok", "seconds": 0.0}

    reported: list[dict[str, Any]] = []
    asha.run_trial((1, 0), _search(tmp_path, [(1, 0)]), stub, reported.append)
    assert reported == [{"val": 30.0, "score": 30.0, "steps": 1}, {"val": 0.0, "score": 0.0, "steps": 2}]


def test_asha_ranks_val_ties_by_training_loss() -> None:
    tied = [{"status": "ok", "val": 10.0, "final_loss": 2.30}, {"status": "ok", "val": 10.0, "final_loss": 2.29}]
    assert asha.score(tied[1]) > asha.score(tied[0])  # same val: the lower loss ranks higher
    assert asha.score({"status": "ok", "val": 10.01, "final_loss": 50.0}) > asha.score(tied[1])  # val first
    assert asha.score({"status": "diverged", "val": None}) == 0.0


def _fill(tmp_path: Path, last: dict[tuple[int, int], tuple[int, float | None]]) -> asha.Search:
    """Rung files as a search would leave them: each trial's rows up to its last rung."""
    s = _search(tmp_path, list(last))
    for point, (steps, val) in last.items():
        def stub(p: tuple[int, int], until: int, val: float | None = val, steps: int = steps) -> dict[str, Any]:
            if until > steps:
                raise StopIteration  # ASHA stopped the trial at its last rung
            ok = val is not None or until < steps
            return {"val": (val if val is not None else 1.0), "status": "ok", "seconds": 1.0} if ok else \
                {"val": None, "status": "diverged", "seconds": 1.0}

        with contextlib.suppress(StopIteration):
            asha.run_trial(point, s, stub, lambda m: None)
    return s


def test_rung_table_stopped_flags_steps_and_selection(tmp_path: Path) -> None:
    s = _fill(tmp_path, {(1, 1): (4, 70.0), (0, 1): (1, 60.0), (1, 0): (4, 70.0), (2, 0): (2, None),
                         (0, 0): (2, 65.0)})
    table = asha.rung_table(s)
    assert [(r["trial"], r["steps"]) for r in table][:4] == [("lr1-wd1", 1), ("lr1-wd1", 2), ("lr1-wd1", 4),
                                                             ("lr0-wd1", 1)]
    stopped = {r["trial"]: r["steps"] for r in table if r["stopped"]}
    assert stopped == {"lr0-wd1": 1, "lr0-wd0": 2}  # the diverged trial ended, it was not stopped
    assert [r["status"] for r in table if r["trial"] == "lr2-wd0"] == ["ok", "diverged"]
    assert asha.trial_steps(table) == 4 + 1 + 4 + 2 + 2  # of 5 x 4 = 20 for the full grid
    # Full-length trials in grid order: the tie 70 = 70 goes to the earlier grid point (1, 0),
    # as finetune's select does.
    assert asha.finalists(table, 4) == [(1, 0), (1, 1)]
    trials = [grid_mod.TrialResult("c", "t", "p", lr=float(i), wd=float(j), seed=0, status="ok", value=70.0,
                                   steps=4, seconds=0.0, final_loss=None, resumed_from=0, path="")
              for i, j in asha.finalists(table, 4)]
    assert grid_mod.select(trials) is trials[0]


def test_the_record_carries_the_rung_table(tmp_path: Path) -> None:
    s = _fill(tmp_path / "search", {(0, 0): (4, 70.0), (0, 1): (1, 60.0)})
    s = replace(s, points=(*s.points, (1, 1)))  # a trial that failed before its first rung
    table = asha.rung_table(s, errored={(1, 1)})
    base = Record(checkpoint_id="c", task="digits", protocol="finetune-asha-short", metric="top1", status="ok",
                  value=71.0, stderr=1.0, task_version=1, protocol_version=1, checkpoint={}, hparams={"lr": 0.1},
                  val_curve=[], predictions={}, split_sizes={}, expected_split_sizes={}, split_hash="h",
                  timings={"total_s": 1.0}, provenance={})
    rec = asha.annotate(base, s, table, grid_steps=12)
    assert rec.timings["trial_steps"] == 5 and rec.timings["trial_steps_ratio"] == round(5 / 12, 4)
    assert rec.tags["search"]["scheduler"] == "asha" and rec.tags["search"]["stopped"] == 1
    write_record(tmp_path / "res", rec)
    back = read_records(tmp_path / "res")[0]
    keys = {"trial", "point", "launch", "steps", "val", "status", "seconds", "stopped"}
    assert back.val_curve == rec.val_curve and all(set(r) == keys for r in back.val_curve)
    assert [r["status"] for r in back.val_curve if r["trial"] == "lr1-wd1"] == ["failed"]
    assert replace(back, provenance={}) == replace(rec, provenance={})


def _asha_reference(values: list[float], rungs: tuple[int, ...], rf: int) -> list[int]:
    """Hand-written ASHA, one trial at a time: the furthest rung each trial reaches. A trial
    stops at a rung when its value is below the (1 - 1/rf) quantile of the values recorded
    there before it (Li et al. 2020, Algorithm 2)."""
    seen: dict[int, list[float]] = {r: [] for r in rungs}
    reached = []
    for v in values:
        for r in rungs:
            before = seen[r]
            seen[r] = [*before, v]
            if r == rungs[-1] or (before and v < np.percentile(before, 100 * (1 - 1 / rf))):
                reached.append(r)
                break
    return reached


@pytest.mark.ray
def test_asha_on_ray_tune_stops_what_the_reference_stops_and_resumes(tmp_path: Path) -> None:
    import ray

    values = [5.0, 3.0, 8.0, 1.0, 6.0, 4.0]  # val of the trial launched k-th, at every rung
    points = [(k // 2, k % 2) for k in range(6)]
    # By hand (rf 2: the median of earlier scores): 5 (first: on), 3 < 5 off at 1, 8 on, 1 off,
    # 6 passes rung 1 (median 4) but not rung 2 (median of 5, 8 = 6.5), 4 < 5 off at 1.
    assert _asha_reference(values, (1, 2, 4), 2) == [4, 1, 4, 1, 2, 1]
    marks = tmp_path / "calls"
    marks.mkdir()

    def stub(point: tuple[int, int], until: int) -> dict[str, Any]:
        from pathlib import Path as P

        with open(P(str(marks)) / "calls.txt", "a") as f:  # what each run trained, in order
            f.write(f"{point[0]}-{point[1]}-{until}\n")
        k = point[0] * 2 + point[1]
        if k == 5 and not (P(str(marks)) / "failed-once").exists():
            (P(str(marks)) / "failed-once").touch()
            raise RuntimeError("preempted")  # the search is interrupted at its last trial
        return {"val": values[k], "status": "ok", "seconds": 0.0}

    s = _search(tmp_path / "search", points, max_concurrent=1, max_failures=0)
    try:
        first = asha.run_search(s, stub)
        assert [r["status"] for r in first if r["trial"] == "lr2-wd1"] == ["failed"]
        before = (marks / "calls.txt").read_text().splitlines()
        second = asha.run_search(s, stub)  # the rerun restores Tune's experiment
    finally:
        ray.shutdown()
    furthest = {r["trial"]: r["steps"] for r in second}
    # The resumed trial is judged against the rungs the first run recorded (4 < 5: stopped), as
    # in an uninterrupted search; a scheduler restored empty would have promoted it to the end.
    assert [furthest[f"lr{i}-wd{j}"] for i, j in points] == [4, 1, 4, 1, 2, 1]
    assert sum(1 for r in second if r["stopped"]) == 4
    assert asha.finalists(second, 4) == [(0, 0), (1, 0)]  # best on val: (1, 0), val 8
    after = (marks / "calls.txt").read_text().splitlines()
    assert after[len(before):] == ["2-1-1"]  # only the interrupted trial ran again, and ASHA stopped it

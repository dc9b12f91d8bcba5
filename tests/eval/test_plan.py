"""The evaluation plan: jobs planned once, recorded jobs skipped, cached jobs cheap."""

from __future__ import annotations

from pathlib import Path

import pytest

from clrbench.eval.jobs import EvalError
from clrbench.eval.plan import EvalOptions, check_writable, expand_checkpoints, plan_eval

TINY = "random:resnet18,width=0.125,stem=cifar"


def test_a_cached_job_reads_neither_images_nor_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = EvalOptions(cache_dir=str(tmp_path / "cache"))
    first = plan_eval([TINY], "digits", ["linear"], tmp_path / "a", opts)
    (cold,) = first.execute()
    assert cold.status == "ok" and not cold.timings["features_cached"]

    import clrbench.data.splits as splits
    import clrbench.weights.adapters as adapters

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached job loaded images or weights")

    monkeypatch.setattr(splits, "load_task", forbidden)
    monkeypatch.setattr(adapters, "load_encoder", forbidden)
    again = plan_eval([TINY], "digits", ["linear"], tmp_path / "b", opts)  # a new results folder: no record
    assert len(again.todo) == 1
    (warm,) = again.execute()
    assert warm.status == "ok" and warm.timings["features_cached"]
    assert (warm.value, warm.hparams, warm.predictions, warm.split_hash, warm.checkpoint["sha256"]) == \
        (cold.value, cold.hparams, cold.predictions, cold.split_hash, cold.checkpoint["sha256"])


def test_recorded_jobs_are_planned_as_done(tmp_path: Path) -> None:
    opts = EvalOptions(cache_dir=str(tmp_path / "cache"))
    plan_eval([TINY], "digits", ["linear"], tmp_path, opts).execute()
    plan = plan_eval([TINY], "digits", ["linear"], tmp_path, opts)
    assert plan.todo == [] and len(plan.done) == 1 and plan.checkpoint_ids == [plan.done[0].checkpoint_id]
    forced = plan_eval([TINY], "digits", ["linear"], tmp_path, EvalOptions(cache_dir=opts.cache_dir, force=True))
    assert len(forced.todo) == 1


def test_globs_and_results_folder_are_checked_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "b.pt").write_bytes(b"")
    (tmp_path / "a.pt").write_bytes(b"")
    assert expand_checkpoints([str(tmp_path / "*.pt"), TINY, TINY]) == [
        str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), TINY]
    with pytest.raises(EvalError, match="no checkpoint matches"):
        expand_checkpoints([str(tmp_path / "*.pth")])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EvalError, match="cannot write to the results folder"):
        check_writable(blocker / "results")

"""Few-shot probe (clrbench.eval.fewshot): the draws, the folds, and the record of a whole job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from clrbench.cli import app
from clrbench.eval.fewshot import choose_lambda, draw_shots, folds_of
from clrbench.records import read_records

TINY = "random:resnet18,width=0.125,stem=cifar"


def test_draws_are_k_per_class_seeded_and_differ_between_seeds() -> None:
    y = np.repeat(np.arange(4), [10, 10, 10, 2])  # class 3 has fewer than k images: all of them
    a, b, c = draw_shots(y, 5, 0), draw_shots(y, 5, 0), draw_shots(y, 5, 1)
    assert np.bincount(y[a]).tolist() == [5, 5, 5, 2] and (a == b).all() and not np.array_equal(a, c)
    multi = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    picked = multi[draw_shots(multi, 1, 3)]
    assert (picked.sum(0) >= 1).all()  # every class has at least one positive among the shots


def test_folds_are_stratified_and_lambda_ties_go_large() -> None:
    y = np.repeat(np.arange(3), 5)
    fold = folds_of(y, 5, 0)
    for f in range(5):  # one image of each class per fold
        assert sorted(y[fold == f].tolist()) == [0, 1, 2]
    assert choose_lambda([(0.1, 50.0), (1.0, 60.0), (10.0, 60.0)]) == 10.0
    assert choose_lambda([(0.1, float("nan")), (1.0, 40.0)]) == 1.0  # not fitted in every fold
    assert choose_lambda([(0.1, float("nan"))]) is None


def _tiny_protocol(tmp_path: Path) -> Path:
    base = yaml.safe_load((Path(__file__).parents[2] / "clrbench/assets/tasks/protocols/fewshot.yaml").read_text())
    base.update(name="fewshot-tiny", k=3, draws=2, lambda_min_exp=-3.0, lambda_step_exp=1.0, lambda_num=6)
    path = tmp_path / "fewshot-tiny.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_linear_knn_fewshot_records_and_one_board_each(tmp_path: Path) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    protocols = f"linear,knn,{_tiny_protocol(tmp_path)}"
    out = CliRunner().invoke(app, ["eval", "--checkpoint", TINY, "--tasks", "digits", "--protocol", protocols,
                                   "--results", str(results), "--cache-dir", str(cache)], terminal_width=200)
    assert out.exit_code == 0, out.output
    for name in ("linear", "knn", "fewshot-tiny"):
        assert f"leaderboard: {name}" in out.output
    recs = {r.protocol: r for r in read_records(results)}
    assert set(recs) == {"linear", "knn", "fewshot-tiny"}
    knn, few = recs["knn"], recs["fewshot-tiny"]
    assert knn.timings["features_cached"] and few.timings["features_cached"]  # the linear job's features
    assert knn.hparams["k"] == 20 and len(knn.predictions["pred"]) == knn.split_sizes["test"]
    scores = few.tags["draw_scores"]
    assert len(scores) == 2 and abs(few.value - np.mean(scores)) < 1e-3
    assert abs(few.stderr - np.std(scores, ddof=1) / np.sqrt(2)) < 1e-3 and few.hparams["std"] == few.tags["std"]
    assert few.split_sizes["train"] == 30 and few.expected_split_sizes["train"] == 30
    only = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--protocol", "knn,linear"],
                              terminal_width=200)
    assert "leaderboard: knn" in only.output and "leaderboard: linear" in only.output
    assert "fewshot-tiny" not in only.output
    native = CliRunner().invoke(app, ["eval", "--checkpoint", TINY, "--tasks", "digits", "--protocol", "knn",
                                      "--resolution", "native", "--results", str(results), "--cache-dir", str(cache)])
    assert native.exit_code == 0, native.output
    rec = {r.protocol: r for r in read_records(results)}["knn@32px"]  # digits' card is 32 px: same features
    assert rec.timings["features_cached"] and rec.value == knn.value

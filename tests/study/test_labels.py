"""The label-efficiency study (S-v2 Fig. 1): its protocols per budget, its cost, its table and
picture, and one tiny study end to end through the CLI (teacher shared, resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clrbench.config import ConfigError, load_pretrain_config
from clrbench.eval.protocols import load_protocol
from clrbench.records import read_record, read_records, record_path
from clrbench.study import labels
from clrbench.study.budget import parse_budget
from clrbench.study.plots import plot_label_efficiency
from clrbench.study.results import Outcome, label_table
from clrbench.study.runner import plan_study


def test_paper_budget_uses_the_shipped_protocols_and_distils_below_100(tmp_path: Path) -> None:
    specs = labels.protocol_specs([1, 10, 100], list(labels.METHODS), labels.eval_budget("paper"), tmp_path)
    assert [(m, p, name, spec or teacher) for m, p, name, spec, teacher in specs] == [
        ("linear", 1, "linear-1pct", "linear-1pct"), ("finetune", 1, "semi-1pct", "semi-1pct"),
        ("distill", 1, "distill-semi-1pct", "semi-1pct"), ("linear", 10, "linear-10pct", "linear-10pct"),
        ("finetune", 10, "semi-10pct", "semi-10pct"), ("distill", 10, "distill-semi-10pct", "semi-10pct"),
        ("linear", 100, "linear", "linear"), ("finetune", 100, "semi-100pct", "semi-100pct")]
    assert not (tmp_path / "protocols").exists()
    full = load_protocol("semi-100pct")  # S-v2 sec 3: from the head's input with all labels, 30 epochs
    assert full.fraction == 1.0 and full.feature_layer == "encoder" and full.epochs == 30


def test_laptop_budget_derives_named_protocol_files(tmp_path: Path) -> None:
    specs = labels.protocol_specs([1, 5, 100], ["finetune", "linear"], labels.eval_budget("laptop"), tmp_path)
    by = {name: spec for _, _, name, spec, _ in specs}
    assert set(by) == {"linear-1pct", "semi-1pct-laptop", "linear-5pct", "semi-5pct-laptop", "linear",
                       "semi-100pct-laptop"}
    one, five, full = (load_protocol(by[n]) for n in ("semi-1pct-laptop", "semi-5pct-laptop", "semi-100pct-laptop"))
    assert (one.epochs, one.lr_bases, one.batch_size, one.feature_layer) == (60.0, (0.005, 0.05), 64, "auto")
    assert (five.fraction, five.epochs) == (0.05, 30.0)  # 5% takes the nearest budgeted fraction's (10%: 30)
    assert (full.epochs, full.feature_layer) == (10.0, "encoder")
    assert load_protocol(by["linear-5pct"]).label_fraction == 0.05
    again = labels.protocol_specs([1, 5, 100], ["finetune", "linear"], labels.eval_budget("laptop"), tmp_path)
    assert again == specs  # same files, same names: a rerun plans the same records


def test_cpu_budgets_keep_the_laptop_evaluation_lengths() -> None:
    assert labels.eval_budget("500steps").name == labels.eval_budget("laptop").name == "laptop"
    assert labels.eval_budget("paper").lr_bases is None and labels.eval_budget("recipe").distill_epochs == 400
    assert labels.eval_budget("smoke").distill_epochs == 1


@pytest.mark.parametrize(("text", "match"), [("0", "positive"), ("150", "at most 100"), ("1,1", "twice"),
                                             ("ten", "not a number")])
def test_bad_fractions_are_one_sentence(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        labels.parse_fractions(text)


def test_methods_are_checked_and_kept_in_table_order() -> None:
    assert labels.parse_methods("distill,linear") == ["linear", "distill"]
    with pytest.raises(ConfigError, match="Did you mean 'finetune'"):
        labels.parse_methods("fine-tune")


def test_widths_carry_their_parameter_counts() -> None:
    trials = labels.width_grid([0.5, 0.25], load_pretrain_config("quickstart-v2"))
    assert [t.key for t in trials] == ["w0.5", "w0.25"] and trials[0].overrides == ("model.width=0.5",)
    # ResNet-18 parameters grow with the square of the width (up to the stem and the BN biases)
    assert 3.8 < trials[0].point["params"] / trials[1].point["params"] < 4.0


def _plan(tmp_path: Path, methods: tuple[str, ...] = labels.METHODS, fractions: tuple[float, ...] = (1, 10, 100)
          ) -> Any:
    budget = labels.eval_budget("smoke")
    cfg = load_pretrain_config("quickstart-v2")

    def expand(trials: list[Any], tasks: list[str], ctx: Any) -> list[Any]:
        return labels.expand_jobs(trials, tasks, ctx, list(fractions), list(methods), budget, "pretrained")

    return plan_study(labels.STUDY, labels.width_grid([0.125], cfg), recipe="quickstart-v2", overrides=[],
                      budget=parse_budget("smoke", labels.STUDY), tasks="digits", out=tmp_path / "studies",
                      cache_dir=str(tmp_path / "cache"), expand=expand, run=labels.run_label_job, baseline=False)


def test_jobs_come_in_waves_and_the_cost_counts_each_fine_tune_once(tmp_path: Path) -> None:
    from clrbench.study.cost import TrialCost

    plan = _plan(tmp_path)
    assert [j.method for j in plan.jobs] == ["linear"] * 3 + ["finetune"] * 3 + ["distill"] * 2
    assert plan.jobs[3].key == (plan.jobs[0].checkpoint_id, "digits", "semi-1pct-smoke")
    assert plan.jobs[-1].protocol == "distill-semi-10pct-smoke" and plan.baseline_id == ""
    key = plan.trials[0].key
    plan.costs[key], plan.per_image[key] = TrialCost(0.0, 0.0, 2, 0.1), (1.0, 0.0)  # 1 s per trained image
    labels.add_training_costs(plan)
    # digits: 1,008 train images, 10 classes; smoke: one lr, one epoch. Fine-tunes on 10
    # (1%, one per class), 101 and 1,008 images, plus two distillations over the 1,008.
    assert plan.costs[key].eval_s == 10 + 101 + 1008 + 2 * 1008
    only_distill = _plan(tmp_path / "d", methods=("distill",), fractions=(10,))
    only_distill.costs[key], only_distill.per_image[key] = TrialCost(0.0, 0.0, 2, 0.1), (1.0, 0.0)
    labels.add_training_costs(only_distill)
    assert only_distill.costs[key].eval_s == 101 + 1008  # its teacher's fine-tune is counted too


def _outcome(width: float, params: int, protocol: str, score: float | None) -> Outcome:
    from clrbench.study.grids import Trial

    trial = Trial(labels.STUDY, f"w{width:g}", {"width": width, "params": params}, ())
    return Outcome(trial, protocol, "ok" if score is not None else "failed", score, {"digits": score}, None, {}, 1.0)


POINTS = {"linear-1pct": {"method": "linear", "label_percent": 1.0},
          "semi-1pct": {"method": "finetune", "label_percent": 1.0},
          "semi-100pct": {"method": "finetune", "label_percent": 100.0},
          "distill-semi-1pct": {"method": "distill", "label_percent": 1.0}}


def test_table_gives_each_fraction_the_gain_of_the_widest_encoder(tmp_path: Path) -> None:
    outcomes = [_outcome(1.0, 11_000_000, "semi-1pct", 60.0), _outcome(0.25, 700_000, "semi-1pct", 40.0),
                _outcome(1.0, 11_000_000, "semi-100pct", 90.0), _outcome(0.25, 700_000, "semi-100pct", 85.5),
                _outcome(0.25, 700_000, "linear-1pct", 30.0), _outcome(1.0, 11_000_000, "linear-1pct", None),
                _outcome(0.25, 700_000, "distill-semi-1pct", 41.0),
                _outcome(1.0, 11_000_000, "distill-semi-1pct", 62.5)]
    table = label_table(outcomes, POINTS)
    assert table.header == ("labels used", "w0.25 (0.7M)", "w1 (11M)", "gain", "S-v2 gain")
    rows = [[c.text for c in row] for row in table.rows]
    assert rows == [["linear 1%", "30.0", "failed", "", ""],
                    ["fine-tune 1%", "40.0", "60.0", "+20.0", "+8.4"],  # S-v2 Table 1: R50 2x 66.3 - 1x 57.9
                    ["fine-tune 100%", "85.5", "90.0", "+4.5", "+2.8"],
                    ["distilled 1%", "41.0", "62.5", "+21.5", ""]]
    assert "bigger encoders gain more when labels are few" in table.caption
    png = plot_label_efficiency(outcomes, POINTS, tmp_path / "le.png", "test")
    assert png.stat().st_size > 10_000


@pytest.mark.slow
def test_cli_tiny_study_shares_the_teacher_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clrbench.eval.finetune.trainer as trainer
    from clrbench.cli import app

    trained: list[str] = []
    real = trainer.train_trial

    def counted(*args: Any, **kwargs: Any) -> Any:
        trained.append(str(args[4]))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_trial", counted)
    args = ["study", "label-efficiency", "--widths", "0.125", "--fractions", "10,100", "--budget", "smoke",
            "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, args, terminal_width=200)
    assert res.exit_code == 0, res.output
    assert len(trained) == 2  # semi-10pct and semi-100pct once each; the distill job reused the first
    results = tmp_path / "label-efficiency" / "results"
    recs = {r.protocol: r for r in read_records(results)}
    assert set(recs) == {"linear-10pct", "linear", "semi-10pct-smoke", "semi-100pct-smoke", "distill-semi-10pct-smoke"}
    distilled = recs["distill-semi-10pct-smoke"]
    assert distilled.tags["distill"]["teacher_test"] == recs["semi-10pct-smoke"].value
    assert distilled.tags["distill"]["alpha"] == 0.0 and distilled.tags["student_init"] == "pretrained"
    assert distilled.checkpoint_id == recs["linear"].checkpoint_id  # keyed by the trial's run
    on_disk = read_record(record_path(results, distilled.checkpoint_id, "digits", distilled.protocol))
    assert on_disk.value == distilled.value
    assert recs["semi-10pct-smoke"].tags["label_percent"] == 10.0 and recs["linear"].tags["method"] == "linear"
    assert (tmp_path / "label-efficiency" / "label-efficiency.png").exists()
    assert "fine-tune 10%" in (tmp_path / "label-efficiency" / "label-efficiency.md").read_text()
    rerun = CliRunner().invoke(app, args, terminal_width=200)
    assert rerun.exit_code == 0 and "1 done, 0 to run" in rerun.output and len(trained) == 2


@pytest.mark.parametrize(("given", "match"), [(["--fractions", "200"], "at most 100"),
                                              (["--methods", "probe"], "Unknown method"),
                                              (["--student-init", "imagenet"], "pretrained or random"),
                                              (["--widths", "0"], "positive"),
                                              (["--methods", "distill", "--fractions", "100"], "nothing to run")])
def test_cli_bad_options_are_one_sentence(tmp_path: Path, given: list[str], match: str) -> None:
    from clrbench.cli import app

    res = CliRunner().invoke(app, ["study", "label-efficiency", *given, "--budget", "smoke", "--out", str(tmp_path),
                                   "--dry-run"], terminal_width=200)
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output
    assert not (tmp_path / "label-efficiency" / "results").exists()


@pytest.mark.ray
def test_ray_runs_the_label_jobs_with_one_teacher(tmp_path: Path, local_ray: None) -> None:
    from clrbench.study.runner import execute

    plan = _plan(tmp_path, fractions=(10,))
    records = execute(plan, executor="ray", workers=2)
    by = {r.protocol: r for r in records}
    assert set(by) == {"linear-10pct", "semi-10pct-smoke", "distill-semi-10pct-smoke"}
    assert all(r.status == "ok" for r in records) and _plan(tmp_path, fractions=(10,)).todo == []
    # the fine-tune job and the distill job's teacher are one network, stored once
    teacher = by["distill-semi-10pct-smoke"].tags["distill"]["teacher_model"]
    assert teacher == by["semi-10pct-smoke"].tags["model"]["path"]
    assert len(list((tmp_path / "cache" / "semi").rglob("trial-lr0.json"))) == 1

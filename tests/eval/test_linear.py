"""Linear probe on a label fraction (linear-1pct / linear-10pct, beside S-v2's semi protocols):
the same labelled images as the semi draw, no refit on train+val, checked against scikit-learn."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from clrbench.config import ConfigError
from clrbench.data.subsets import labelled_subset, subset_digest
from clrbench.eval.feature_sets import feature_splits
from clrbench.eval.jobs import EvalJob, load_job_task
from clrbench.eval.linear import run_linear
from clrbench.eval.protocols import LinearProtocol, load_protocol

TINY = "random:resnet18,width=0.125,stem=cifar"


def test_label_fraction_probe_fits_the_semi_subset_only(tmp_path: Path) -> None:
    job = EvalJob(TINY, "tiny", "digits", "linear-10pct", cache_dir=str(tmp_path / "cache"))
    rec = run_linear(job)
    fs = feature_splits(job, load_protocol("linear-10pct"))  # cached by the job
    sub = labelled_subset(fs.y["train"], fraction=0.1, seed=0)
    _, data = load_job_task(job)
    assert np.array_equal(sub, labelled_subset(data.train.targets, fraction=0.1, seed=0))  # semi-10pct's images
    assert rec.tags["labelled"] == len(sub) == 100 and rec.tags["subset_hash"] == subset_digest(fs.split_hash, sub)
    assert rec.split_sizes["train"] == len(fs.y["train"])  # the split, not the subset: the subset is in the tags
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegression(C=1 / rec.hparams["lambda"], tol=1e-8, max_iter=10_000)
        ref.fit(fs.x["train"][sub], fs.y["train"][sub])
    expected = 100 * float((ref.predict(fs.x["test"]) == fs.y["test"]).mean())
    assert abs(rec.value - expected) <= 100 * 3 / len(fs.y["test"])  # within 3 test images (probe tol 1e-4)
    full = run_linear(EvalJob(TINY, "tiny", "digits", "linear", cache_dir=str(tmp_path / "cache")))
    assert full.tags.get("labelled") is None and full.value > rec.value


def test_label_fraction_must_be_a_share() -> None:
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="label_fraction must be in"):
            LinearProtocol("x", 1, "linear", label_fraction=bad)
    assert load_protocol("linear-1pct").label_fraction == 0.01

"""Native resolution: the encoder's training resolution, protocol variants NAME@<R>px, the board."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from clrbench.config import ConfigError
from clrbench.data.cards import Preprocessing
from clrbench.eval.plan import plan_jobs
from clrbench.eval.protocols import load_protocol
from clrbench.eval.runners import run_job
from clrbench.eval.variants import NativeResolutionError, resolve_native, scaled_preprocessing
from clrbench.leaderboard.board import board_for_results
from clrbench.records import write_record
from clrbench.simclr.encoder import build_encoder
from clrbench.weights.adapters import load_encoder
from clrbench.weights.checkpoint import encoder_metadata

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from fixtures import build_all

TINY = "random:resnet18,width=0.125,stem=cifar"


def test_scaling_rule_and_names() -> None:
    card = Preprocessing(224, 224)
    assert scaled_preprocessing(card, 32) == Preprocessing(32, 32)
    assert scaled_preprocessing(Preprocessing(256, 224), 112) == Preprocessing(128, 112)
    assert scaled_preprocessing(Preprocessing(32, 32), 32) == Preprocessing(32, 32)
    assert scaled_preprocessing(card, None) is card
    assert load_protocol("knn@32px").name == "knn@32px" and load_protocol("fewshot-10@64").k == 10
    assert resolve_native("linear@native", {"resolution": 32}) == "linear@32px"
    assert resolve_native("linear@96", {}) == "linear@96px" and resolve_native("knn", {}) == "knn"
    with pytest.raises(NativeResolutionError, match="no training resolution"):
        resolve_native("linear@native", {"resolution": None}, "x.pt")
    with pytest.raises(ConfigError, match="depends on the encoder"):
        load_protocol("linear@native")


def test_training_resolution_in_metadata(tmp_path: Path) -> None:
    assert load_encoder(TINY).meta["resolution"] == 32
    assert load_encoder("random:resnet18,width=0.125").meta["resolution"] == 224
    module, dim = build_encoder("resnet18", 0.125, "cifar")
    model = {f"encoder.{k}": v for k, v in module.state_dict().items()}
    old = {"format": "clrbench.checkpoint", "format_version": 1, "model": model,
           "encoder": {k: v for k, v in encoder_metadata("resnet18", 0.125, "cifar", dim).items() if k != "resolution"},
           "config": {"augment": {"image_size": 24}}}
    torch.save(old, tmp_path / "old.pt")  # written before the field existed: the recipe's size
    assert load_encoder(str(tmp_path / "old.pt")).meta["resolution"] == 24
    new = {**old, "encoder": encoder_metadata("resnet18", 0.125, "cifar", dim, resolution=40)}
    torch.save(new, tmp_path / "new.pt")
    assert load_encoder(str(tmp_path / "new.pt")).meta["resolution"] == 40


@pytest.mark.parametrize("task", ["digits", "cifar10"])
def test_native_resolution_records_its_pixels_and_gets_its_own_board(tmp_path: Path, task: str) -> None:
    root = tmp_path / "data"
    tasks_dir = None
    if task == "cifar10":  # the card's real loader on a fixture in CIFAR's on-disk format
        build_all(root, ["cifar10"])
        tasks_dir = str(root / "tasks")
    results = tmp_path / "results"
    kw = {"data_root": str(root), "cache_dir": str(tmp_path / "cache"), "tasks_dir": tasks_dir}
    # cifar10's card evaluates at 224 px: only the native job runs here (224 px is slow on a CPU).
    protocols = ["linear", "linear@native"] if task == "digits" else ["linear@native"]
    todo, _ = plan_jobs([TINY], task, protocols, results, **kw)
    assert [j.protocol for j in todo] == [p.replace("@native", "@32px") for p in protocols]
    recs = {r.protocol: r for r in (run_job(j) for j in todo)}
    for r in recs.values():
        write_record(results, r)
    assert recs["linear@32px"].tags["resolution"] == {"px": 32, "resize": 32, "crop": 32,
                                                      "rule": "scaled to the protocol's resolution"}
    if task == "cifar10":  # the fixture's 20 test images, read by the card's real loader
        assert recs["linear@32px"].split_sizes["test"] == 20
    boards = {b.protocol: b for b in board_for_results(results)}
    assert set(boards) == {r.protocol for r in recs.values()}  # never one column for two resolutions
    if task == "digits":  # the card's own 32 px: the same pixels, but still its own column
        assert recs["linear"].tags["resolution"]["px"] == 32 and recs["linear"].value == recs["linear@32px"].value

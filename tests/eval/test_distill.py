"""Distillation (S-v2 eq. 2-3): the loss against a naive loop, and no label read at alpha 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from clrbench.data.images import ArrayImages, LabeledImages
from clrbench.eval.distill import DistillSpec, distill_loss, lr_at, train_student
from clrbench.eval.distill_job import student_spec
from clrbench.weights.adapters import load_encoder


def test_distill_loss_matches_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g) * 3, torch.randn(4, 5, generator=g) * 3
    for tau in (0.5, 1.0, 2.0):
        total = 0.0
        for i in range(4):
            zt = sum(math.exp(float(t[i, k]) / tau) for k in range(5))
            zs = sum(math.exp(float(s[i, k]) / tau) for k in range(5))
            for y in range(5):
                p_t = math.exp(float(t[i, y]) / tau) / zt
                total -= p_t * math.log(math.exp(float(s[i, y]) / tau) / zs)
        assert float(distill_loss(s, t, tau)) == pytest.approx(total / 4, rel=1e-5)
    # identical logits: the loss is the teacher's entropy, and its gradient w.r.t. s vanishes
    s2 = t.clone().requires_grad_(True)
    distill_loss(s2, t, 1.0).backward()
    assert float(s2.grad.abs().max()) < 1e-6


class NoLabels(LabeledImages):
    """Images whose labels raise on any access: what the student sees at alpha 0."""

    def __init__(self, arr: np.ndarray) -> None:  # no super().__init__: it would store targets
        self.arr, self.num_classes, self.ignore = arr, 3, None

    def __len__(self) -> int:
        return len(self.arr)

    @property
    def targets(self) -> np.ndarray:  # type: ignore[override]
        raise AssertionError("the student read a label")

    @property
    def ids(self) -> list[str]:  # type: ignore[override]
        raise AssertionError("the student read image ids")

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.arr[i])


def _spec(alpha: float, steps: int = 3) -> DistillSpec:
    return DistillSpec(steps=steps, batch_size=8, lr=0.5, warmup_steps=1, weight_decay=1e-4, momentum=0.9,
                       temperature=1.0, alpha=alpha, train_crop=16, crop_scale=(0.5, 1.0), precision="fp32", seed=0)


def test_student_never_reads_a_label_at_alpha_zero() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8)
    enc = load_encoder("random:resnet18,width=0.0625,stem=cifar")
    logits = rng.normal(size=(12, 3)).astype(np.float32)
    before = {k: v.clone() for k, v in enc.module.state_dict().items()}
    net, stats = train_student(enc.module, enc.meta["feature_dim"], enc.meta, NoLabels(arr), logits, _spec(0.0))
    assert stats["steps"] == 3 and math.isfinite(stats["final_loss"])
    assert any(not torch.equal(before[k], v) for k, v in net.encoder.state_dict().items())  # it learned
    assert all(torch.equal(before[k], v) for k, v in enc.module.state_dict().items())  # a copy did
    # alpha > 0 uses the labelled subset, and only that
    labelled = ArrayImages(arr[:6], np.array([0, 1, 2, 0, 1, 2]), 3)
    _, stats = train_student(enc.module, enc.meta["feature_dim"], enc.meta, NoLabels(arr), logits, _spec(0.5),
                             labelled)
    assert math.isfinite(stats["final_loss"])


def test_warmup_then_cosine_and_student_specs() -> None:
    spec = _spec(0.0, steps=11)
    assert lr_at(0, spec) == pytest.approx(0.5) and lr_at(6, spec) == pytest.approx(0.25)  # half-way through the cosine
    assert lr_at(10, spec) < lr_at(9, spec) < lr_at(1, spec) == pytest.approx(0.5)
    assert student_spec("resnet18,width=0.25") == "random:resnet18,width=0.25"
    assert student_spec("random:resnet18") == "random:resnet18"

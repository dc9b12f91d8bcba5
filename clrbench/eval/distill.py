"""Distillation with unlabelled examples (SimCLRv2 sec 2, "Self-training / knowledge distillation
via unlabeled examples"): the loss, the unlabelled image stream and the student's training loop.

The fine-tuned teacher's class distribution, softened by a temperature tau, is the target of
the student's, on the task's train images *without their labels* (S-v2 eq. 2):

    L_distill = - sum_i sum_y P_T(y | x_i; tau) log P_S(y | x_i; tau),  P(y | x; tau) = softmax(logits / tau)

and, when labels are used too, ``alpha`` x the usual cross-entropy on the labelled subset the
teacher was fine-tuned on (S-v2 eq. 3 combines the two; clrbench weights only the supervised
term, L = L_distill + alpha L_sup, so alpha = 0 is pure distillation, the paper's default).
The teacher's logits are computed once per image, on the test-time view (resize + centre
crop), and cached (:mod:`clrbench.eval.distill_job`); the student sees random crops + flips
(S-v2 sec 3: only random crop and horizontal flip for fine-tuning and distillation). That
fixed target per image is a simplification: S-v2 runs the teacher on the student's own
augmented view at every step.

At alpha = 0 nothing here reads ``images.targets``: :class:`UnlabelledStream` yields image
indices, never labels, and the labelled stream is not even built.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clrbench.data.images import LabeledImages
from clrbench.device import autocast_for
from clrbench.eval.finetune.images import StepBatches, TrainStream


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of -sum_y softmax(t / tau)_y log softmax(s / tau)_y (S-v2 eq. 2).

    Args:
        student_logits: (B, C); teacher_logits: (B, C) (no gradient flows into them).
    """
    target = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    return -(target * F.log_softmax(student_logits.float() / temperature, dim=1)).sum(1).mean()


@dataclass(frozen=True)
class DistillSpec:
    """Everything that determines one student's training."""

    steps: int
    batch_size: int
    lr: float  # peak, after scaling
    warmup_steps: int
    weight_decay: float
    momentum: float
    temperature: float
    alpha: float
    train_crop: int
    crop_scale: tuple[float, float]
    precision: str
    seed: int


class UnlabelledStream(TrainStream):
    """The fine-tune's augmented training images (same crops, same flips), addressed by
    (step, slot, index); items are (x (3, S, S) uint8, the image index). Only ``load_image`` is
    called on the images: no label is ever read."""

    def __init__(self, images: LabeledImages, size: int, scale: tuple[float, float], seed: int) -> None:
        self.images, self.size, self.scale, self.seed = images, size, scale, seed

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        return self.view(key), key[2]


class Student(nn.Module):
    """Student encoder (B, 3, S, S) -> (B, d), then a linear classifier -> (B, C)."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def lr_at(step: int, spec: DistillSpec) -> float:
    """Linear warmup then cosine decay to 0, as pretraining (S-v2 sec 3)."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    done = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * 0.5 * (1.0 + math.cos(math.pi * done))


def _optimizer(net: Student, spec: DistillSpec) -> torch.optim.Optimizer:
    """LARS with weight decay, BN / biases / classifier excluded from decay and adaptation (GR)."""
    from clrbench.simclr.lars import LARS, param_groups

    adapted, excluded = param_groups(net, spec.weight_decay)
    classifier = {id(p) for p in net.head.parameters()}
    excluded["params"] = excluded["params"] + [p for p in adapted["params"] if id(p) in classifier]
    adapted["params"] = [p for p in adapted["params"] if id(p) not in classifier]
    return LARS([adapted, excluded], lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


def _loader(stream: torch.utils.data.Dataset, n: int, spec: DistillSpec, seed: int) -> Any:
    batches = StepBatches(n, spec.batch_size, spec.steps, seed)
    return torch.utils.data.DataLoader(stream, batch_sampler=batches, num_workers=0)


def train_student(encoder: nn.Module, feature_dim: int, meta: dict[str, Any], images: LabeledImages,
                  teacher_logits: np.ndarray, spec: DistillSpec, labelled: LabeledImages | None = None,
                  device: str | torch.device = "cpu") -> tuple[Student, dict[str, Any]]:
    """Train a copy of ``encoder`` + a new classifier to match ``teacher_logits`` on ``images``.

    Args:
        teacher_logits: (len(images), C), row i the teacher's logits for image i.
        labelled: the labelled subset, read only when ``spec.alpha > 0``.

    Returns:
        The student (eval mode) and {"steps", "seconds", "final_loss"}.
    """
    from clrbench.eval.finetune.trainer import input_scaler

    dev = torch.device(device)
    torch.manual_seed(spec.seed)
    net = Student(copy.deepcopy(encoder), feature_dim, teacher_logits.shape[1]).to(dev).train()
    opt = _optimizer(net, spec)
    # Contiguous (NCHW) inputs: the backward of a 4-channel (width 1/16) channels_last conv
    # corrupted the heap on CPU (torch 2.x), and a small student is what distillation is for.
    to_input = input_scaler(meta, dev)

    def scale(x: torch.Tensor) -> torch.Tensor:
        return to_input(x).contiguous()

    targets = torch.from_numpy(np.ascontiguousarray(teacher_logits, dtype=np.float32))
    unl = _loader(UnlabelledStream(images, spec.train_crop, spec.crop_scale, spec.seed), len(images), spec, spec.seed)
    sup = None
    if spec.alpha > 0:
        if labelled is None:
            raise ValueError("alpha > 0 needs the labelled subset.")
        sup = iter(_loader(TrainStream(labelled, spec.train_crop, spec.crop_scale, spec.seed + 1),
                           len(labelled), spec, spec.seed + 1))
    t0 = time.time()
    losses: list[float] = []
    for step, (x, idx) in enumerate(unl):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, spec)
        with autocast_for(dev, spec.precision):
            out = net(scale(x))
        loss = distill_loss(out, targets[idx].to(dev), spec.temperature)
        if sup is not None:
            xl, yl = next(sup)
            with autocast_for(dev, spec.precision):
                out_l = net(scale(xl))
            loss = loss + spec.alpha * F.cross_entropy(out_l.float(), yl.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses = [*losses[-9:], float(loss.detach())]
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the distillation loss became {losses[-1]} at step {step}; lower the lr.")
    return net.eval(), {"steps": spec.steps, "seconds": round(time.time() - t0, 3),
                        "final_loss": float(np.mean(losses)) if losses else None}

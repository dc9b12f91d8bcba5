"""Fine-tune one encoder with one (lr, wd) pair on one device: the trial of SimCLR B.8.1.

The whole network is initialised from the checkpoint and a new linear head is put on the
pooled features (S-v1 B.8.1, following Kornblith et al. 2019, "Do Better ImageNet Models
Transfer Better?"; protocol.md §2.2). SGD with Nesterov momentum, a cosine learning-rate
decay (not stated in S-v1; K19 and ssl-transfer use it), weight decay wd / lr so that the
per-step shrinkage lr * (wd / lr) equals the grid value, and BN momentum min(10/s, 0.1).
Multi-label cards (VOC2007) train sigmoid outputs with binary cross-entropy.

A trial that produces a non-finite loss stops and reports ``diverged``; a long trial saves
an atomic, ``weights_only``-loadable checkpoint every ``checkpoint_every`` steps and resumes
from it. The grid, selection and record are in :mod:`clrbench.eval.finetune.grid`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clrbench.data.images import LabeledImages
from clrbench.device import autocast_for
from clrbench.eval.finetune.images import (
    EvalImages,
    ImageSizes,
    StepBatches,
    TrainStream,
    eval_loader,
    train_loader,
)
from clrbench.weights.adapters import Encoder
from clrbench.weights.adapters.core import input_normaliser
from clrbench.weights.checkpoint import CheckpointError, atomic_torch_save, load

_DIVERGENCE_CHECK_EVERY = 10  # steps between host syncs on the loss (each costs a GPU stall)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """s of S-v1 B.8.1: ceil(n / B), e.g. Flowers 1,020 / 256 -> 4, Food 68,175 / 256 -> 267."""
    return max(1, math.ceil(n_train / batch_size))


def bn_momentum(n_train: int, batch_size: int, rule: str = "simclr") -> float:
    """PyTorch ``BatchNorm.momentum`` for fine-tuning on ``n_train`` images.

    S-v1 B.8.1 sets TF's moving-average *decay* to max(1 - 10/s, 0.9), s = steps per epoch.
    PyTorch's momentum is the weight of the *new* batch statistic, i.e. 1 - decay, so the
    rule becomes min(10/s, 0.1) (protocol.md §2.2, §6.7). ``torch_default`` keeps 0.1.
    """
    if rule == "torch_default":
        return 0.1
    return min(10.0 / steps_per_epoch(n_train, batch_size), 0.1)


def sgd_weight_decay(wd: float, lr: float, divided_by_lr: bool = True) -> float:
    """The ``weight_decay`` handed to SGD: wd / lr (S-v1 B.8.1), so lr * decay = wd per step."""
    return wd / lr if divided_by_lr else wd


def lr_at(step: int, total: int, base: float, schedule: str) -> float:
    """Learning rate of ``step`` (0-based): cosine decay from ``base`` to 0, or constant."""
    if schedule == "constant":
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one fine-tune run (hashed into its checkpoint)."""

    lr: float
    wd: float  # grid value (per-step shrinkage); SGD gets sgd_weight_decay(wd, lr)
    weight_decay: float  # what SGD receives
    seed: int
    steps: int
    batch_size: int
    momentum: float
    schedule: Literal["cosine", "constant"]
    bn_momentum: float
    sizes: ImageSizes
    crop_scale: tuple[float, float]
    precision: Literal["auto", "bf16", "fp32"]
    checkpoint_every: int
    num_classes: int
    multilabel: bool


@dataclass
class TrialOutcome:
    status: Literal["ok", "diverged"]
    steps_done: int  # steps trained in all, including those before a resume
    seconds: float  # wall time of this call (training only)
    final_loss: float | None  # mean training loss of the last 10 steps; None if diverged
    resumed_from: int  # 0, or the step a checkpoint was found at


class FinetuneNet(nn.Module):
    """Encoder (B, 3, S, S) -> pooled h (B, d), then a new linear head h -> logits (B, C).

    The head starts at zero, as GR's fine-tuning and linear-eval heads do
    (``zero_init_logits_layer``), so the first steps do not push random gradients into the
    pretrained encoder.
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build_net(encoder: Encoder, spec: TrialSpec, device: torch.device) -> FinetuneNet:
    """A fresh copy of the checkpoint's encoder + zero head, BN momentum set, channels_last."""
    net = FinetuneNet(copy.deepcopy(encoder.module), int(encoder.meta["feature_dim"]), spec.num_classes)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = spec.bn_momentum
    return net.to(device).to(memory_format=torch.channels_last).train()


def input_scaler(meta: dict[str, Any], device: torch.device) -> Any:
    """uint8 (B, 3, S, S) -> float inputs in the encoder's range and normalisation (its metadata),
    channels_last, through the same :func:`~clrbench.weights.adapters.core.input_normaliser` as
    feature extraction."""
    normalise = input_normaliser(meta, device)

    def scale(x: torch.Tensor) -> torch.Tensor:
        x = normalise(x.to(device, non_blocking=True).float().mul_(1.0 / 255.0))
        return x.contiguous(memory_format=torch.channels_last)

    return scale


def compute_dtype(device: str | torch.device, precision: str) -> str:
    """What ``autocast_for(device, precision)`` computes in: ``bf16`` or ``fp32`` (for records)."""
    dev = torch.device(device)
    if precision == "fp32" or (dev.type == "cuda" and not torch.cuda.is_bf16_supported()):
        return "fp32"
    return "bf16"


def loss_of(logits: torch.Tensor, target: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Softmax cross-entropy; multi-label: mean BCE over the entries that count.

    Args:
        logits: (B, C).
        target: (B,) int64, or (B, 2C) float multi-hot labels then a 0/1 keep mask.
    """
    logits = logits.float()
    if not multilabel:
        return F.cross_entropy(logits, target)
    c = logits.shape[1]
    y, keep = target[:, :c], target[:, c:]
    per_entry = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (per_entry * keep).sum() / keep.sum().clamp_min(1.0)


def _resume(path: Path | None, spec: TrialSpec, net: nn.Module, opt: torch.optim.Optimizer) -> int:
    if path is None or not path.exists():
        return 0
    state = load(path)
    if state.get("spec") != _spec_dict(spec):
        raise CheckpointError(f"{path} belongs to another fine-tune trial; delete it to start afresh.")
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"])


def _spec_dict(spec: TrialSpec) -> dict[str, Any]:
    d = asdict(spec)
    d.pop("checkpoint_every")  # how often we save does not change the result
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _save(path: Path | None, spec: TrialSpec, net: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    if path is not None:
        atomic_torch_save({"format": "clrbench.finetune-trial", "spec": _spec_dict(spec), "step": step,
                           "model": net.state_dict(), "optimizer": opt.state_dict()}, path)


def train_trial(encoder: Encoder, images: LabeledImages, spec: TrialSpec, device: str | torch.device = "cpu",
                checkpoint: Path | None = None,
                optimizer: Callable[[nn.Module, TrialSpec], torch.optim.Optimizer] | None = None,
                until: int | None = None) -> tuple[FinetuneNet, TrialOutcome]:
    """Fine-tune a copy of ``encoder`` on ``images`` for ``spec.steps`` steps.

    Resumes from ``checkpoint`` when it exists (same spec) and saves it every
    ``spec.checkpoint_every`` steps and at the end, so a finished run can be reloaded.
    ``until`` stops after that many steps (an ASHA rung) with the checkpoint saved there; the
    lr schedule and the batches stay those of the whole ``spec.steps`` run, so calling again
    with a later ``until`` continues the same run.

    ``optimizer`` builds the optimiser from (net, spec) instead of SGD with Nesterov momentum
    (the semi-supervised protocols use LARS, S-v2 sec 3).

    Returns:
        The trained network (train mode) and the outcome; ``diverged`` as soon as the loss is
        NaN or infinite (checked every few steps), with the weights as they were then.
    """
    dev = torch.device(device)
    net = build_net(encoder, spec, dev)  # deterministic: a copy of the encoder + a zero head
    opt = optimizer(net, spec) if optimizer is not None else torch.optim.SGD(
        net.parameters(), lr=spec.lr, momentum=spec.momentum, nesterov=True, weight_decay=spec.weight_decay)
    start = _resume(checkpoint, spec, net, opt)
    stop = spec.steps if until is None else min(until, spec.steps)
    scale = input_scaler(encoder.meta, dev)
    batches = StepBatches(len(images), spec.batch_size, stop, spec.seed, start)
    stream = TrainStream(images, spec.sizes.train_crop, spec.crop_scale, spec.seed)
    t0, recent = time.time(), torch.zeros((), device=dev)
    losses: list[torch.Tensor] = []
    step = start
    for step, (x, y) in enumerate(train_loader(stream, batches, dev), start=start):
        loss = fine_tune_step(net, opt, scale(x), y.to(dev, non_blocking=True),
                              lr_at(step, spec.steps, spec.lr, spec.schedule), spec, dev)
        losses = [*losses[-9:], loss.detach()]
        if (step + 1) % _DIVERGENCE_CHECK_EVERY == 0 or step + 1 == stop:
            recent = torch.stack(losses).mean()
            if not torch.isfinite(recent):
                return net, TrialOutcome("diverged", step + 1, time.time() - t0, None, start)
        if (step + 1) % spec.checkpoint_every == 0 and step + 1 < stop:
            _save(checkpoint, spec, net, opt, step + 1)
    done = max(stop, start)
    if done > start:
        _save(checkpoint, spec, net, opt, done)
    final = float(recent) if losses else None
    return net, TrialOutcome("ok", done, time.time() - t0, final, start)


def fine_tune_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float,
                   spec: TrialSpec, device: torch.device) -> torch.Tensor:
    """One SGD step on a batch x (B, 3, S, S) float, y (B,) or (B, 2C); returns the loss (no sync)."""
    for group in opt.param_groups:
        group["lr"] = lr
    with autocast_for(device, spec.precision):
        logits = net(x)
    loss = loss_of(logits, y, spec.multilabel)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


@torch.no_grad()
def predict(net: nn.Module, encoder: Encoder, images: LabeledImages, sizes: ImageSizes, spec: TrialSpec,
            device: str | torch.device = "cpu", batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits of every image at test-time preprocessing, BN in inference mode.

    Returns:
        scores: (n, C) float32 logits; valid: (n,) bool, False for undecodable images.
    """
    dev = torch.device(device)
    net.eval()
    scale = input_scaler(encoder.meta, dev)
    scores, valid = [], []
    for x, ok in eval_loader(EvalImages(images, sizes), batch_size, dev):
        with autocast_for(dev, spec.precision):
            scores.append(net(scale(x)).float().cpu().numpy())
        valid.append(ok.numpy())
    net.train()
    return np.concatenate(scores), np.concatenate(valid).astype(bool)

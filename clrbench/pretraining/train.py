"""The SimCLR training loop, written once for N processes (N = 1 on one CPU or GPU).

Per step (S-v1 Algorithm 1; protocol.md §4): two augmented views of this rank's shard of
the global batch -> one forward of the concatenated 2n views (so BN sees both) -> NT-Xent over
the global 2N batch -> LARS step at the warmup + cosine learning rate. The loop knows nothing
of how processes were started (``clrbench.launch``) and prints nothing (a ``reporter``
callback receives the metrics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from clrbench import dist
from clrbench.atomic import write_text
from clrbench.config import Derived, PretrainConfig, derive, to_dict
from clrbench.data.images import ArrayImages, LabeledImages
from clrbench.data.pretrain_source import open_source
from clrbench.device import autocast_for, pick_device
from clrbench.errors import UserError
from clrbench.locks import folder_lock
from clrbench.log import MetricsWriter, logger
from clrbench.pretraining.resume import check_resumable
from clrbench.pretraining.stream import epoch_order, file_batches, local_indices
from clrbench.simclr.global_bn import convert_global_bn
from clrbench.simclr.model import OnlineProbe, SimCLR
from clrbench.weights.checkpoint import (
    atomic_torch_save,
    encoder_metadata,
    head_metadata,
    training_checkpoint,
)
from clrbench.weights.checkpoint import load_clrbench as load_checkpoint

Reporter = Callable[[dict[str, Any]], None]


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (a NaN loss, a mismatched resume); one clear sentence."""


@dataclass
class TrainSummary:
    run_dir: Path
    checkpoint: Path
    steps: int
    loss: float
    seconds: float
    derived: Derived
    already_finished: bool = False  # resumed a run that had reached its last step: nothing ran


def warmup_lr(step: int, d: Derived) -> float:
    from clrbench.simclr.schedule import warmup_cosine

    return warmup_cosine(step, d.total_steps, d.warmup_steps, d.lr)


def build_optimizer(cfg: PretrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    from clrbench.simclr.lars import LARS, param_groups

    groups = param_groups(model, cfg.optim.weight_decay)
    if cfg.optim.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay,
                    eta=cfg.optim.eta)
    # Plain SGD: excluded params (BN, biases) get no weight decay here either.
    for g in groups:
        g["weight_decay"] = 0.0 if g.get("lars_exclude") else cfg.optim.weight_decay
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.optim.momentum, nesterov=True)


class _Batches:
    """Yields (view_a, view_b, labels, corrupt) for each step from ``start`` on, whatever the source."""

    def __init__(self, cfg: PretrainConfig, source: LabeledImages, d: Derived, device: torch.device) -> None:
        from clrbench.simclr.augment import TwoViewAugment, choose_backend

        self.cfg, self.source, self.d, self.device = cfg, source, d, device
        self.in_memory = isinstance(source, ArrayImages)
        if isinstance(source, ArrayImages) and choose_backend(cfg.augment, fixed_size=True) == "kornia":
            self.augment = TwoViewAugment(cfg.augment).to(device)
            self.images = torch.from_numpy(source.images).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8 view
        elif self.in_memory:
            raise TrainingError("augment.backend torchvision is not supported for in-memory sources; use auto.")
        self.labels = torch.from_numpy(np.asarray(source.targets)).long() if source.labeled else None

    def __call__(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]]:
        spe, seed = self.d.steps_per_epoch, self.cfg.run.seed
        step = start
        while step < self.d.total_steps:
            epoch, s0 = divmod(step, spe)
            end = min(spe, s0 + self.d.total_steps - step)
            if self.in_memory:
                order = epoch_order(len(self.source), seed, epoch)
                for s in range(s0, end):
                    idx = torch.from_numpy(local_indices(order, s, self.d.batch_size_global, dist.rank(),
                                                         self.d.world_size))
                    x = self.images[idx].to(self.device, non_blocking=True)
                    # The random draws of a step depend on (seed, step, rank) only: resumable.
                    with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                        torch.manual_seed(hash((seed, epoch * spe + s, dist.rank())) & 0x7FFFFFFF)
                        a, b = self.augment(x)
                    labels = self.labels[idx] if self.labels is not None else None
                    yield a, b, labels, 0
            else:
                it = file_batches(self.source, self.cfg.augment, seed, epoch, s0, end,
                                  self.d.batch_size_global, dist.rank(), self.d.world_size,
                                  self.cfg.data.num_workers)
                for a, b, labels, corrupt in it:
                    keep = labels if self.source.labeled else None
                    yield a.to(self.device), b.to(self.device), keep, corrupt
            step += end - s0


def _state(cfg: PretrainConfig, model: torch.nn.Module, probe: torch.nn.Module | None,
           opt: torch.optim.Optimizer, probe_opt: torch.optim.Optimizer | None, step: int,
           d: Derived, feature_dim: int) -> dict[str, Any]:
    return training_checkpoint(
        model=model.state_dict(), probe=None if probe is None else probe.state_dict(), optimizer=opt.state_dict(),
        probe_optimizer=None if probe_opt is None else probe_opt.state_dict(), step=step,
        steps_per_epoch=d.steps_per_epoch, world_size=d.world_size, config=to_dict(cfg), derived=dict(vars(d)),
        encoder=encoder_metadata(cfg.model.arch, cfg.model.width, cfg.model.stem, feature_dim,
                                 resolution=cfg.augment.image_size),
        # The projection head travels with the encoder (its weights are the model's head.*), so
        # S-v2 fine-tuning and probes can start from one of its layers (clrbench.weights.layers).
        head=head_metadata(cfg.model.head, feature_dim, cfg.model.head_dim, cfg.model.head_hidden_dim),
    )


def _save(run_dir: Path, state: dict[str, Any], keep: bool) -> Path:
    last = run_dir / "last.pt"
    atomic_torch_save(state, last)
    if keep:
        atomic_torch_save(state, run_dir / f"step_{state['step']:07d}.pt")
    return last


def _resume(ckpt: dict[str, Any], model, probe, opt, probe_opt, d: Derived) -> int:
    if ckpt["world_size"] != d.world_size and ckpt["derived"]["batch_size_global"] != d.batch_size_global:
        raise TrainingError("The checkpoint's global batch differs from this run's; resume with the same batch size.")
    if ckpt["derived"]["total_steps"] != d.total_steps:
        raise TrainingError(
            f"The checkpoint was trained for {ckpt['derived']['total_steps']} steps, this run asks for "
            f"{d.total_steps}; resume with the same schedule (epochs, steps, batch size)."
        )
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if probe is not None and ckpt.get("probe") is not None:
        probe.load_state_dict(ckpt["probe"])
        probe_opt.load_state_dict(ckpt["probe_optimizer"])
    return int(ckpt["step"])


def train_loop(cfg: PretrainConfig, reporter: Reporter | None = None, resume: bool = False,
               on_checkpoint: Callable[[int, Path | None], None] | None = None) -> TrainSummary:
    """Train SimCLR as configured; checkpoints and metrics go to ``run.out/run.name``.

    Args:
        reporter: receives each metrics row on rank 0 (the CLI draws a progress bar).
        resume: continue from ``last.pt`` of the run folder when there is one.
        on_checkpoint: called on every rank after each checkpoint with (step, path on
            rank 0 else None); the Ray launcher forwards it to Ray Train's checkpoint API.

    Raises:
        TrainingError: a NaN/inf loss (the last good checkpoint is kept) or a bad resume.
    """
    run_dir = Path(cfg.run.out) / cfg.run.name
    # One process writes a run folder at a time (rank 0 holds the lock for its group).
    with folder_lock(run_dir, "run folder", enabled=dist.is_main()):
        return _train(cfg, run_dir, reporter, resume, on_checkpoint)


def _train(cfg: PretrainConfig, run_dir: Path, reporter: Reporter | None, resume: bool,
           on_checkpoint: Callable[[int, Path | None], None] | None) -> TrainSummary:
    t0 = time.time()
    device = pick_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    source = open_source(cfg.data)
    d = derive(cfg, len(source), dist.world_size())
    last_path = run_dir / "last.pt"
    if last_path.exists() and not resume:
        raise TrainingError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out.")
    ckpt = load_checkpoint(last_path) if resume and last_path.exists() else None
    if ckpt is not None:
        check_resumable(ckpt, cfg, d, run_dir)
        if int(ckpt["step"]) >= d.total_steps:  # finished: touch nothing, not even config.yaml
            return TrainSummary(run_dir, last_path, int(ckpt["step"]), float("nan"), 0.0, d,
                                already_finished=True)
    model = SimCLR(cfg.model)
    if cfg.model.global_bn or (cfg.model.global_bn is None and d.world_size > 1):
        model = convert_global_bn(model)
    model.to(device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    probe = probe_opt = None
    if cfg.run.online_probe and source.labeled:
        probe = OnlineProbe(model.feature_dim, source.num_classes).to(device)
        probe_opt = torch.optim.Adam(probe.parameters(), lr=1e-3)
    opt = build_optimizer(cfg, model, d.lr)
    start = 0
    metrics = MetricsWriter(run_dir / "metrics.jsonl", enabled=dist.is_main())
    if ckpt is not None:
        start = _resume(ckpt, model, probe, opt, probe_opt, d)
        logger.info(f"Resuming {run_dir} from step {start}/{d.total_steps}.")
    del ckpt
    # Lines a killed run logged after its last checkpoint (or before its first) would repeat.
    metrics.truncate_after(start)
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    net = dist.wrap_ddp(model, device)
    batches = _Batches(cfg, source, d, device)
    ckpt_every = cfg.run.checkpoint_every or d.steps_per_epoch
    loss_value, corrupt_total = float("nan"), 0
    tick, seen = time.time(), 0
    for step, (a, b, labels, corrupt) in enumerate(batches(start), start=start):
        lr = warmup_lr(step, d)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, acc, probe_acc = _step(cfg, net, probe, opt, probe_opt, a, b, labels, device)
        corrupt_total += corrupt
        if not math.isfinite(loss):
            raise TrainingError(
                f"The loss became {loss} at step {step}; stopped. The last good checkpoint is "
                f"{last_path if last_path.exists() else 'none'}. Lower the learning rate (optim.lr_base) "
                "or use run.precision=fp32."
            )
        loss_value, seen = loss, seen + a.shape[0] * d.world_size
        done = step + 1
        if done % cfg.run.log_every == 0 or done == d.total_steps:
            row = {"step": done, "epoch": round(done / d.steps_per_epoch, 4), "loss": loss, "lr": lr,
                   "contrastive_acc": acc, "images_per_s": seen / max(time.time() - tick, 1e-9),
                   "probe_acc": probe_acc, "corrupt_images": corrupt_total}
            metrics.write(row)
            if reporter and dist.is_main():
                reporter({**row, "total_steps": d.total_steps})
            tick, seen = time.time(), 0
        if done % ckpt_every == 0 or done == d.total_steps:
            if dist.is_main():
                state = _state(cfg, model, probe, opt, probe_opt, done, d, model.feature_dim)
                keep = cfg.run.keep_every > 0 and done % cfg.run.keep_every == 0
                last_path = _save(run_dir, state, keep)
            dist.barrier()
            if on_checkpoint is not None:
                on_checkpoint(done, last_path if dist.is_main() else None)
    return TrainSummary(run_dir, last_path, d.total_steps, loss_value, time.time() - t0, d)


def _step(cfg, net, probe, opt, probe_opt, a, b, labels, device) -> tuple[float, float, float | None]:
    """One optimisation step; returns (loss, contrastive top-1, online-probe accuracy)."""
    from clrbench.simclr.loss import contrastive_logits

    x = torch.cat([a, b])
    if cfg.run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    n = a.shape[0]
    with autocast_for(device, cfg.run.precision):
        h, z = net(x)
    logits, target = contrastive_logits(z[:n].float(), z[n:].float(), cfg.loss.temperature,
                                        gather=dist.world_size() > 1, normalize=cfg.loss.normalize)
    loss = F.cross_entropy(logits, target)  # = nt_xent: mean over the local 2n anchors
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    acc = (logits.argmax(1) == target).float().mean().item()
    probe_acc = None
    if probe is not None and labels is not None:
        labels = labels.to(device)
        out = probe(h[:n])
        probe_loss = F.cross_entropy(out, labels)
        probe_opt.zero_grad(set_to_none=True)
        probe_loss.backward()
        for p in probe.parameters():  # the probe is not DDP-wrapped: average its gradients here
            if p.grad is not None and dist.world_size() > 1:
                p.grad.copy_(dist.all_reduce_mean(p.grad))
        probe_opt.step()
        probe_acc = (out.argmax(1) == labels).float().mean().item()
    return loss.item(), acc, probe_acc

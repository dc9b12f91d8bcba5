"""What the fine-tune protocols of an eval will cost, printed before they start.

``finetune`` trains every (lr, wd) pair for the protocol's steps (S-v1 B.8.1: 56 x 20,000
per task), then retrains the chosen pair on train+val; ``finetune-asha`` trains, in
expectation, n x r0 + (n / f) x (r1 - r0) + (n / f^2) x (r2 - r1) ... (successive halving with
reduction factor f over rungs r0 < r1 < ...). The seconds per step come from a timed probe
step of the job's own network (the checkpoint's encoder + head, SGD step, at the training
crop size, on the job's device), timed on a small batch and scaled to the protocol's batch,
as :mod:`clrbench.study.cost` does for pretraining. Val and test predictions add a forward
pass per image, at a third of a training step's per-image time. It is an estimate for one
device running trials one after another (data loading not in it), good to a factor of
about 1.5: enough to decide "now, or on a GPU".
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

CONFIRM_ABOVE_S = 3600.0  # past an hour, `clrbench eval` wants --yes (as `clrbench study` does)
FORWARD_FRACTION = 1 / 3  # inference time per image / training time per image (forward ~ 1/3 of f+b)


@dataclass(frozen=True)
class FinetuneCost:
    """Estimated cost of one fine-tune job: search trial-steps, final retrain and seconds."""

    checkpoint_id: str
    task: str
    protocol: str
    trials: int
    trial_steps: float  # training steps of the (lr, wd) search, all trials together
    final_steps: int  # the retrain on train+val
    eval_images: float  # images predicted (val at each trial's end or rung, test once)
    step_s: float  # measured seconds of one training step at the protocol's batch size
    seconds: float


def search_steps(proto: Any) -> tuple[float, float]:
    """(expected training steps of the search, expected val predictions) of a fine-tune protocol.

    Grid: every trial runs ``steps`` and predicts val once. ASHA: a fraction 1/f^k of the
    trials reaches rung k (the asynchronous version promotes a little more; the estimate
    ignores it), each predicting val at every rung it reaches.
    """
    n = len(proto.lrs) * len(proto.wds)
    rungs = getattr(proto, "rungs", None)
    if not rungs:
        return float(n * proto.steps), float(n)
    f = proto.reduction_factor
    steps = evals = 0.0
    prev = 0
    for k, r in enumerate(rungs):
        alive = n / f**k
        steps += alive * (r - prev)
        evals += alive
        prev = r
    return steps, evals


@functools.lru_cache(maxsize=16)
def step_seconds(checkpoint: str, num_classes: int, crop: int, batch_size: int, device: str, precision: str,
                 probe_batch: int = 16, repeats: int = 2) -> float:
    """Measured seconds of one fine-tune step of ``batch_size`` images at ``crop`` pixels.

    Times ``repeats`` SGD steps of the checkpoint's encoder + a linear head on a probe batch
    of min(probe_batch, batch_size) random images after one warm-up step, and scales by
    batch_size / probe batch (a step's cost is linear in the batch beyond a few images).
    """
    import torch

    from clrbench.eval.finetune.images import ImageSizes
    from clrbench.eval.finetune.trainer import TrialSpec, build_net, fine_tune_step
    from clrbench.weights.adapters import load_encoder

    dev = torch.device(device)
    b = max(2, min(probe_batch, batch_size))
    spec = TrialSpec(lr=0.01, wd=0.0, weight_decay=0.0, seed=0, steps=1, batch_size=b, momentum=0.9,
                     schedule="constant", bn_momentum=0.1, sizes=ImageSizes(crop, crop, crop), crop_scale=(0.08, 1.0),
                     precision=precision, checkpoint_every=1, num_classes=num_classes, multilabel=False)  # type: ignore[arg-type]
    net = build_net(load_encoder(checkpoint), spec, dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(b, 3, crop, crop, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (b,), device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    fine_tune_step(net, opt, x, y, 0.01, spec, dev)  # warm-up: kernels, allocator
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fine_tune_step(net, opt, x, y, 0.01, spec, dev)
    sync()
    return (time.perf_counter() - t0) / repeats * batch_size / b


def estimate_job(job: Any) -> FinetuneCost | None:
    """The cost of one eval job; None for a job that is not a whole fine-tune protocol."""
    from clrbench.data.cards import load_cards
    from clrbench.eval.finetune.grid import image_sizes
    from clrbench.eval.protocols import FinetuneProtocol, load_protocol

    proto = load_protocol(job.protocol)
    if not isinstance(proto, FinetuneProtocol) or "trial" in job.options:
        return None
    card = load_cards(job.tasks_dir)[job.task]
    sizes = image_sizes(proto, card)
    step_s = step_seconds(job.checkpoint, card.num_classes, sizes.train_crop, proto.batch_size, job.device,
                          proto.precision)
    steps, val_evals = search_steps(proto)
    n_val, n_test = card.expected_sizes.get("val", 0), card.expected_sizes.get("test", 0)
    eval_images = val_evals * n_val + n_test
    per_image = step_s / proto.batch_size * FORWARD_FRACTION * (sizes.test_crop / sizes.train_crop) ** 2
    seconds = (steps + proto.steps) * step_s + eval_images * per_image
    return FinetuneCost(job.checkpoint_id, card.name, proto.name, len(proto.lrs) * len(proto.wds), steps,
                        proto.steps, eval_images, step_s, seconds)


def estimate_jobs(jobs: list[Any]) -> list[FinetuneCost]:
    """The costs of the fine-tune jobs among ``jobs`` (others are left out)."""
    return [c for c in (estimate_job(j) for j in jobs) if c is not None]

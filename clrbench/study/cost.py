"""What a study will cost before it starts: trials x (pretraining + probes), measured here.

The pretraining time of a trial is its image count (steps x global batch) times the seconds
per image of one forward + backward pass of its model, timed on this machine on a small
batch; the probes add a forward pass over every image of each task plus the sweep. It is an
estimate (data loading and the LARS step are not in it), good to a factor of about 1.5, which
is what deciding "now or on a GPU" needs, and it is shown as that range.

Each pass is timed on its own and the *fastest* is kept (:func:`min_time`): other processes
on a shared machine only ever add time, so the minimum over repeats is the machine's own
speed, where a mean swung from 18 min to 14.9 h for one study under load (issue 14).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from clrbench.config import PretrainConfig, derive

PROBE_SWEEP_S = 1.0  # the 45-point lambda sweep on a few thousand features (measured: 0.1-0.5 s)
TRIAL_OVERHEAD_S = 3.0  # start-up, data generation, checkpoint writes
STEP_OVERHEAD = 1.15  # augmentation and the LARS step on top of forward + backward (measured)
ESTIMATE_SPREAD = 1.6  # high end of the range / low end: data loading, LARS, a busy machine
TIMED_PASSES = 5  # passes timed one by one; the fastest counts


@dataclass(frozen=True)
class TrialCost:
    """Estimated seconds of one trial; ``steps`` and ``lr`` are its derived values."""

    pretrain_s: float
    eval_s: float
    steps: int
    lr: float

    @property
    def total_s(self) -> float:
        """The low end of the estimate: the machine at its measured (unloaded) speed."""
        return self.pretrain_s + self.eval_s

    @property
    def range_s(self) -> tuple[float, float]:
        """(low, high) seconds: the measured speed, and that slowed by :data:`ESTIMATE_SPREAD`."""
        return self.total_s, self.total_s * ESTIMATE_SPREAD


def min_time(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """The fastest of ``repeats`` timed calls of ``fn`` (seconds): stable under machine load,
    which only ever slows a call down."""
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def count_images(cfg: PretrainConfig) -> int:
    """Images in the pretraining source (the embedded set without generating it)."""
    if cfg.data.source == "embedded":
        return cfg.data.num_images or 20000
    from clrbench.data.pretrain_source import open_source

    return len(open_source(cfg.data))


def seconds_per_image(cfg: PretrainConfig, batch: int | None = None, repeats: int = TIMED_PASSES,
                      clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """Measured seconds per image of (training forward + backward, inference forward).

    Times ``repeats`` passes over (2 x batch) views of ``cfg``'s model and view size, one by
    one after two warm-up passes (the first builds kernels), on the device the recipe would
    train on, and keeps the fastest (:func:`min_time`). ``batch`` defaults to 32 on a GPU
    (smaller ones measure kernel launches, not images) and 4 on a CPU, where per-image time
    hardly depends on it and short passes are less often interrupted by other processes.
    """
    import torch

    from clrbench.device import autocast_for, pick_device
    from clrbench.simclr.model import SimCLR

    device = pick_device(cfg.run.device)
    batch = batch or (32 if device.type == "cuda" else 4)
    model = SimCLR(cfg.model).to(device)
    s = cfg.augment.image_size
    x = torch.rand(2 * batch, 3, s, s, device=device)

    def one_pass(grad: bool) -> None:
        with torch.set_grad_enabled(grad), autocast_for(device, cfg.run.precision):
            _, z = model(x)
        if grad:
            z.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for grad in (True, False):
        model.train(grad)
        for _ in range(2):
            one_pass(grad)
        times.append(min_time(functools.partial(one_pass, grad), repeats, clock) / (2 * batch))
    return times[0], times[1]


def trial_cost(cfg: PretrainConfig, per_image: tuple[float, float], eval_images: int, n_evals: int,
               num_images: int) -> TrialCost:
    """Estimate one trial from its config and the measured per-image seconds.

    Args:
        per_image: (training, inference) seconds per view, from :func:`seconds_per_image`.
        eval_images: images over all splits of the tasks it is probed on.
        n_evals: probe sweeps it runs (tasks x layers).
        num_images: images in its pretraining source (:func:`count_images`).

    Raises:
        ConfigError: the config cannot train (batch larger than the data, ...).
    """
    d = derive(cfg, num_images)
    views = 2 * d.total_steps * d.batch_size_global
    pretrain = views * per_image[0] * STEP_OVERHEAD + TRIAL_OVERHEAD_S
    evals = eval_images * per_image[1] + n_evals * PROBE_SWEEP_S
    return TrialCost(pretrain, evals, d.total_steps, d.lr)


def format_range(low: float, high: float) -> str:
    """12-19 min, 1.2-1.9 h, 40 s-1 min: both ends in the unit of the high end where they share it."""
    a, b = format_seconds(low), format_seconds(high)
    if a.split()[-1] == b.split()[-1]:
        return f"{a.split()[0]}-{b}"
    return f"{a}-{b}"


def format_seconds(s: float) -> str:
    """3 s, 45 s, 12 min, 2.5 h."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"

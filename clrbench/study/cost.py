"""What a study will cost before it starts: trials x (pretraining + probes), measured here.

The pretraining time of a trial is its image count (steps x global batch) times the seconds
per image of one forward + backward pass of its model, timed on this machine on a small
batch; the probes add a forward pass over every image of each task plus the sweep. It is an
estimate (a shared machine, data loading and the LARS step are not in it), good to a factor
of about 1.5, which is what deciding "now or on a GPU" needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from clrbench.config import PretrainConfig, derive

PROBE_SWEEP_S = 1.0  # the 45-point lambda sweep on a few thousand features (measured: 0.1-0.5 s)
TRIAL_OVERHEAD_S = 3.0  # start-up, data generation, checkpoint writes
STEP_OVERHEAD = 1.15  # augmentation and the LARS step on top of forward + backward (measured)


@dataclass(frozen=True)
class TrialCost:
    """Estimated seconds of one trial; ``steps`` and ``lr`` are its derived values."""

    pretrain_s: float
    eval_s: float
    steps: int
    lr: float

    @property
    def total_s(self) -> float:
        return self.pretrain_s + self.eval_s


def count_images(cfg: PretrainConfig) -> int:
    """Images in the pretraining source (the embedded set without generating it)."""
    if cfg.data.source == "embedded":
        return cfg.data.num_images or 20000
    from clrbench.data.pretrain_source import open_source

    return len(open_source(cfg.data))


def seconds_per_image(cfg: PretrainConfig, batch: int = 32, repeats: int = 2) -> tuple[float, float]:
    """Measured seconds per image of (training forward + backward, inference forward).

    Times ``repeats`` passes over (2 x batch) views of ``cfg``'s model and view size after
    two warm-up passes (the first builds kernels), on the device the recipe would train on.
    """
    import torch

    from clrbench.device import autocast_for, pick_device
    from clrbench.simclr.model import SimCLR

    device = pick_device(cfg.run.device)
    model = SimCLR(cfg.model).to(device)
    s = cfg.augment.image_size
    x = torch.rand(2 * batch, 3, s, s, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for grad in (True, False):
        model.train(grad)
        for i in range(repeats + 2):
            if i == 2:
                sync()
                t0 = time.perf_counter()
            with torch.set_grad_enabled(grad), autocast_for(device, cfg.run.precision):
                _, z = model(x)
            if grad:
                z.float().square().mean().backward()
        sync()
        times.append((time.perf_counter() - t0) / (repeats * 2 * batch))
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


def format_seconds(s: float) -> str:
    """3 s, 45 s, 12 min, 2.5 h."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"

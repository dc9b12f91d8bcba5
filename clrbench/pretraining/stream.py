"""The sharded, resumable two-view batch stream of pretraining.

The images come from :func:`clrbench.data.pretrain_source.open_source`. Fixed-size in-memory
collections are indexed directly and augmented in batch on the training device (see
``clrbench.pretraining.train``); file and hub collections are decoded and augmented per
image in DataLoader workers (here). Either way the order of every epoch and the random
draws of every step derive from (seed, epoch, step), so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from clrbench.config import AugmentConfig
from clrbench.data.images import DatasetError, LabeledImages


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of one epoch; identical on every rank (a distributed sampler by hand)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def local_indices(order: np.ndarray, step: int, batch_size_global: int, rank: int, world: int) -> np.ndarray:
    """This rank's slice of the ``step``-th global batch of an epoch."""
    b = batch_size_global // world
    start = step * batch_size_global + rank * b
    return order[start : start + b]


class _TwoViewFiles(torch.utils.data.Dataset):
    """Decodes and augments one image per item; a corrupt file is replaced and counted."""

    def __init__(self, source: LabeledImages, cfg: AugmentConfig, seed: int) -> None:
        from clrbench.simclr.augment import TorchvisionTwoView

        self.source, self.augment, self.seed = source, TorchvisionTwoView(cfg), seed
        self.fallback_size = cfg.image_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        i, step = key
        label = int(self.source.targets[i]) if self.source.labeled else -1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, step, i)) & 0x7FFFFFFF)
            for attempt in range(len(self.source)):
                j = (i + attempt) % len(self.source)
                try:
                    a, b = self.augment(self.source.load_image(j))
                    return a, b, label, attempt
                except (OSError, ValueError, SyntaxError):
                    continue
        raise DatasetError("No image of the source could be decoded.")


def file_batches(
    source: LabeledImages, cfg: AugmentConfig, seed: int, epoch: int, start_step: int, steps: int,
    batch_size_global: int, rank: int, world: int, num_workers: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """Yield (view_a, view_b, labels, corrupt_count) for steps start_step..steps-1 of ``epoch``."""
    order = epoch_order(len(source), seed, epoch)
    global_step0 = epoch * 10_000_000
    batches = [
        [(int(i), global_step0 + s) for i in local_indices(order, s, batch_size_global, rank, world)]
        for s in range(start_step, steps)
    ]
    loader = torch.utils.data.DataLoader(
        _TwoViewFiles(source, cfg, seed), batch_sampler=batches, num_workers=num_workers,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )
    for a, b, labels, attempts in loader:
        yield a, b, labels, int((attempts > 0).sum())

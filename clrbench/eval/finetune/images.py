"""Images for fine-tuning: a seeded stream of augmented training batches, and test-time crops.

Training augmentation is the one of S-v1 B.8.1 (protocol.md §2.2): a random resized crop
(area fraction ``scale``, aspect ratio in [3/4, 4/3], bicubic) and a horizontal flip, nothing
else. Test-time images (val during selection, test at the end) are resized on the shorter
side (bicubic) and centre-cropped, with no randomness.

Every random draw of step ``t``, slot ``k`` comes from a generator seeded by
``(seed, t, k)``, and the order of images from a permutation seeded by ``(seed, epoch)``, so
a trial resumed at step ``t`` sees exactly the batches it would have seen without the
interruption, whatever the number of loader workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from clrbench.data.images import LabeledImages

_RATIO = (3 / 4, 4 / 3)  # aspect-ratio range of the crop (S-v1 App. A; torchvision default)
_UNREADABLE = (OSError, ValueError, SyntaxError)  # truncated or corrupt image files


@dataclass(frozen=True)
class ImageSizes:
    """Pixel sizes of one fine-tune run: the square training crop, and the test resize + crop."""

    train_crop: int
    test_resize: int
    test_crop: int


def crop_box(rng: np.random.Generator, height: int, width: int,
             scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """A random crop of area fraction in ``scale`` and aspect ratio in [3/4, 4/3].

    Up to 10 tries; the whole image (centre-cropped to the ratio range) if none fits, as in
    the Inception-style crop that S-v1 App. A describes.

    Returns:
        (top, left, crop height, crop width) in pixels.
    """
    area = height * width
    log_lo, log_hi = math.log(_RATIO[0]), math.log(_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    ratio = width / height
    if ratio < _RATIO[0]:
        w, h = width, round(width / _RATIO[0])
    elif ratio > _RATIO[1]:
        h, w = height, round(height * _RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class TrainStream(torch.utils.data.Dataset):
    """Augmented training images, addressed by (step, slot, image index).

    Items are (x, target): x is a (3, S, S) uint8 crop; target is the int64 class id, or for
    multi-label cards a (2C,) float tensor holding the multi-hot labels then a 0/1 mask of the
    entries that count (0 for VOC "difficult-only" entries, which the devkit ignores).
    """

    def __init__(self, images: LabeledImages, size: int, scale: tuple[float, float], seed: int) -> None:
        self.images, self.size, self.scale, self.seed = images, size, scale, seed
        self.multilabel = images.targets.ndim == 2

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view(key), self._target(key[2])

    def view(self, key: tuple[int, int, int]) -> torch.Tensor:
        """The (3, S, S) uint8 augmented crop of image ``key[2]``, drawn from (seed, step, slot)."""
        step, slot, i = key
        rng = np.random.default_rng([self.seed, step, slot])
        try:
            image = self.images.load_image(i)
            top, left, h, w = crop_box(rng, image.height, image.width, self.scale)
            # One PIL call crops and resizes (bicubic; PIL filters with the full kernel support
            # when shrinking, i.e. antialiased): cheaper per image than separate crop + resize.
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        except _UNREADABLE:  # counted as a black image rather than failing a 20,000-step run
            x = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return x

    def _target(self, i: int) -> torch.Tensor:
        y = self.images.targets[i]
        if not self.multilabel:
            return torch.tensor(int(y))
        keep = np.ones_like(y) if self.images.ignore is None else ~self.images.ignore[i]
        return torch.from_numpy(np.concatenate([y, keep]).astype(np.float32))


class StepBatches(torch.utils.data.Sampler[list[tuple[int, int, int]]]):
    """Batches of ``batch_size`` keys for steps ``start .. steps-1``.

    The image order is an endless concatenation of per-epoch permutations (seeded by
    (seed, epoch)), cut into consecutive batches, like TF's repeat + shuffle + batch: step t
    takes positions [t*B, (t+1)*B) of that stream. Needs only ``start`` to resume.
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int, start: int = 0) -> None:
        self.n, self.batch_size, self.steps, self.seed, self.start = n, min(batch_size, n), steps, seed, start

    def __len__(self) -> int:
        return self.steps - self.start

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 1_000_003, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        orders: dict[int, np.ndarray] = {}
        for step in range(self.start, self.steps):
            lo = step * self.batch_size
            keys = []
            for slot, pos in enumerate(range(lo, lo + self.batch_size)):
                epoch = pos // self.n
                if epoch not in orders:
                    orders[epoch] = self._order(epoch)
                    orders.pop(epoch - 2, None)  # a batch spans at most two epochs
                keys.append((step, slot, int(orders[epoch][pos % self.n])))
            yield keys


class EvalImages(torch.utils.data.Dataset):
    """Deterministic test-time images: bicubic resize of the shorter side, centre crop.

    Items are (x (3, crop, crop) uint8, readable flag).
    """

    def __init__(self, images: LabeledImages, sizes: ImageSizes) -> None:
        self.images, self.sizes = images, sizes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        crop = self.sizes.test_crop
        try:
            image: Image.Image = self.images.load_image(i)
            image = F.resize(image, [self.sizes.test_resize], interpolation=InterpolationMode.BICUBIC,
                             antialias=True)
            return F.pil_to_tensor(F.center_crop(image, [crop, crop])), True
        except _UNREADABLE:
            return torch.zeros(3, crop, crop, dtype=torch.uint8), False


def loader_workers(device: torch.device) -> int:
    """Decoding workers. On CPU, one, and only when a core is left over by the torch threads
    that train the model (it then overlaps augmentation with the step); beside a GPU, one per
    CPU thread this process may use (the executor limits it to the job's CPU request), up to 8."""
    threads = torch.get_num_threads()
    # The executor puts the job's CPU request in $CLRBENCH_CPUS: two trials side by side on a
    # 2-core Ray node must not each add a loader process (4 busy processes on 2 cores ran 2.3x slower).
    budget = int(os.environ.get("CLRBENCH_CPUS") or os.cpu_count() or 1)
    if device.type == "cpu":
        return 1 if budget > threads else 0
    return max(1, min(8, threads))


def train_loader(stream: TrainStream, batches: StepBatches, device: torch.device,
                 workers: int | None = None) -> torch.utils.data.DataLoader:
    """Batches (x (B, 3, S, S) uint8, target) in step order; ``workers`` overrides the default."""
    n = loader_workers(device) if workers is None else workers
    return torch.utils.data.DataLoader(stream, batch_sampler=batches, num_workers=n,
                                       pin_memory=device.type == "cuda", prefetch_factor=4 if n else None)


def eval_loader(images: EvalImages, batch_size: int, device: torch.device) -> torch.utils.data.DataLoader:
    """Batches (x (B, 3, crop, crop) uint8, readable (B,) bool) in dataset order."""
    n = loader_workers(device)
    return torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=n,
                                       pin_memory=device.type == "cuda")

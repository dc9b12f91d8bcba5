"""SUN397 restricted to one of the creators' ten partitions (partition 1 by default, S-v1 B.8.1).

torchvision's ``SUN397`` indexes every ``sun_*.jpg`` under ``SUN397/`` (108,754 images) and has no
split argument; the partition lists ``Partitions/Training_NN.txt`` / ``Testing_NN.txt`` (50 images
per class each, paths like ``/a/abbey/sun_x.jpg``) choose the images, in list order, so the
indices stored by the split files stay put. Source: protocol.md §1.3-§1.4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clrbench.data.images import LOADERS, DatasetError, LabeledImages
from clrbench.data.sources.base import (
    NamedFileImages,
    check_split,
    read_lines,
    require,
    torchvision_call,
)


def partition_file(split: str, partition: int) -> str:
    """``Partitions/Training_01.txt`` for split train, partition 1 (and so on)."""
    kind = "Training" if split == "train" else "Testing"
    return f"Partitions/{kind}_{partition:02d}.txt"


@LOADERS.register("sun397")
def load_sun397(root: Path | None, split: str, partition: int = 1) -> LabeledImages:
    """SUN397 ``train`` / ``test`` of one partition, 397 classes in ``ClassName.txt`` order."""
    from torchvision.datasets import SUN397

    check_split("sun397", split, ("train", "test"))
    if not 1 <= partition <= 10:
        raise DatasetError(f"sun397: partition must be 1..10, got {partition}.")
    rel = partition_file(split, partition)
    base = require(root, "sun397", (rel,))
    listed = base / rel
    if base.name != "SUN397":
        raise DatasetError(f"sun397: torchvision reads a folder named 'SUN397', not {base.name!r}.")
    ds = torchvision_call("sun397", lambda: SUN397(str(base.parent), download=False))
    # torchvision's label of a file is the class path between the letter folder and the name.
    label_of = {"/" + "/".join(Path(p).relative_to(base).parts): lab
                for p, lab in zip(ds._image_files, ds._labels, strict=True)}
    wanted = read_lines(listed)
    missing = [w for w in wanted if w not in label_of]
    if missing:
        raise DatasetError(
            f"sun397: {len(missing)} of the {len(wanted)} images listed in {listed} are not "
            f"under {base} (first: {missing[0]}); the partition list does not match the images."
        )
    paths = [base / w.lstrip("/") for w in wanted]
    targets = np.asarray([label_of[w] for w in wanted], dtype=np.int64)
    return NamedFileImages(paths, targets, list(ds.classes), root=base)

"""How many images a pretraining recipe trains on, for a dry run that has no data at hand.

``clrbench pretrain --dry-run`` resolves a recipe and prints its derived schedule (steps, lr)
before the data is copied to the machine that will train: so when the source is not there,
the size is ``data.num_images`` if set, else the published size of the dataset the recipe
names (ImageNet's 1,281,167 training images, CIFAR's 50,000), said in a note. A source that
is there but wrong (an empty folder) is still an error.
"""

from __future__ import annotations

from pathlib import Path

from clrbench.data.images import DatasetError

# Training-split sizes: ILSVRC-2012 train (Russakovsky et al. 2015); CIFAR (Krizhevsky 2009);
# STL-10 train + unlabeled (Coates et al. 2011), as data.source=stl10 reads it.
KNOWN_SIZES = {"imagenet": 1_281_167, "cifar10": 50_000, "cifar100": 50_000, "stl10": 105_000}
TITLES = {"imagenet": "ImageNet", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10"}


def _named_size(source: str, path: str | None, recipe_name: str) -> tuple[str, int] | None:
    if source in KNOWN_SIZES:
        return source, KNOWN_SIZES[source]
    text = f"{path or ''} {recipe_name}".lower()
    return next(((k, n) for k, n in KNOWN_SIZES.items() if k in text), None)


def images_for_dry_run(cfg: object) -> tuple[int, str | None]:
    """(image count, a note when it was not counted on disk) for ``cfg`` (a PretrainConfig).

    Raises:
        DatasetError: the source is there but unusable, or it is absent and its size is unknown
            (the message says to pass ``--set data.num_images=N``).
    """
    from clrbench.data.pretrain_source import open_source

    data = cfg.data  # type: ignore[attr-defined]
    try:
        return len(open_source(data)), None
    except DatasetError as e:
        if data.source == "folder" and data.path and Path(data.path).expanduser().is_dir():
            raise  # the folder is there but holds no images: a real problem, not a dry-run gap
        missing = str(e)
    if data.num_images is not None:
        return int(data.num_images), f"data not found ({missing}); sizes use data.num_images={data.num_images}."
    named = _named_size(data.source, data.path, cfg.run.name)  # type: ignore[attr-defined]
    if named is None:
        raise DatasetError(f"{missing} A dry run without the data needs its size: --set data.num_images=N.")
    key, n = named
    return n, (f"data not found ({missing}); sizes assume {TITLES[key]}'s {n:,} training images "
               "(--set data.num_images=N for another).")

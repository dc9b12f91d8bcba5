"""What a correctly installed copy of each transfer dataset looks like on disk.

One table, read by the loaders (to fail with the missing file's name) and by
``clrbench data verify`` (to list present and missing files). Paths are relative to the
dataset's folder under the data root (the card's ``source.root_dir``), as the official archives
and torchvision lay them out (protocol.md §1.3, §1.4).
"""

from __future__ import annotations

# Keyed by loader name; the default root_dir of each is the key of ROOT_DIRS.
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "food101": ("meta/train.json", "meta/test.json", "meta/classes.txt", "images"),
    "cifar10": (
        *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
    ),
    "cifar100": ("train", "test", "meta"),
    "birdsnap": ("species.txt", "images.txt", "test_images.txt"),
    "sun397": ("ClassName.txt", "Partitions/Training_01.txt", "Partitions/Testing_01.txt"),
    "cars": (
        "devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat",
        "cars_train", "cars_test",
    ),
    "aircraft": (
        "data/variants.txt", "data/images_variant_train.txt", "data/images_variant_val.txt",
        "data/images_variant_trainval.txt", "data/images_variant_test.txt", "data/images",
    ),
    "voc2007": (
        "VOC2007/Annotations", "VOC2007/JPEGImages", "VOC2007/ImageSets/Main/train.txt",
        "VOC2007/ImageSets/Main/val.txt", "VOC2007/ImageSets/Main/trainval.txt",
        "VOC2007/ImageSets/Main/test.txt",
    ),
    # torchvision's DTD keeps the archive's own dtd/ folder inside its base folder dtd/.
    "dtd": ("dtd/labels/train1.txt", "dtd/labels/val1.txt", "dtd/labels/test1.txt", "dtd/images"),
    "pets": ("annotations/trainval.txt", "annotations/test.txt", "images"),
    "caltech101": ("101_ObjectCategories/BACKGROUND_Google",),
    "flowers102": ("imagelabels.mat", "setid.mat", "jpg"),
    "imagenet": ("train", "val"),  # ILSVRC-2012 folders; val's labels: see sources/imagenet.py
}

# The folder under the data root each loader reads: the names torchvision uses, so a data root
# already filled by torchvision works unchanged.
ROOT_DIRS: dict[str, str] = {
    "food101": "food-101",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "birdsnap": "birdsnap",
    "sun397": "SUN397",
    "cars": "stanford_cars",
    "aircraft": "fgvc-aircraft-2013b",
    "voc2007": "VOCdevkit",
    "dtd": "dtd",
    "pets": "oxford-iiit-pet",
    "caltech101": "caltech101",
    "flowers102": "flowers-102",
    "imagenet": "imagenet",
}

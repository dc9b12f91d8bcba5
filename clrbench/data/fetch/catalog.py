"""Where each transfer dataset comes from: URLs, checksums, and the manual steps for dead links.

URLs and md5s are read from torchvision's dataset classes wherever it has them, so the links
torchvision repairs (VOC's new host, Caltech's move to data.caltech.edu) are picked up with it;
the rest are from the dataset pages. Sources whose host is gone or needs a login (Stanford Cars,
SUN397) get manual instructions only. Source: protocol.md §1.3-§1.6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Resource:
    """One file to fetch: extracted into ``into`` (relative to the data root) if an archive."""

    url: str
    filename: str
    md5: str | None
    into: str = ""
    extract: bool = True


@dataclass(frozen=True)
class Recipe:
    """How to obtain one dataset (keyed by loader name)."""

    resources: tuple[Resource, ...]
    manual: str  # what to fetch by hand and where to put it; {data} = the data root
    automatic: bool = True  # False: the source is dead or needs a login, print `manual` only
    md5: dict[str, str] = field(default_factory=dict)  # known md5 of files in the dataset folder
    after: str | None = None  # post-extraction step: "caltech" or "birdsnap"


# Sources that are dead or need a login: `download` prints their manual steps only.
MANUAL_ONLY = frozenset({"sun397", "cars", "imagenet"})

_VGG = "https://www.robots.ox.ac.uk/~vgg/data"

MANUAL = {
    "food101": "Download food-101.tar.gz (5 GB, md5 85eeb15f3717b99a5da872d97d918f87) from "
    "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ and extract it in {data}, giving "
    "{data}/food-101/meta/train.json; the HF copy ethz/food101 holds the same split.",
    "cifar10": "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it in {data}, giving {data}/cifar-10-batches-py/data_batch_1.",
    "cifar100": "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
    "and extract it in {data}, giving {data}/cifar-100-python/train.",
    "birdsnap": "Download birdsnap.tgz (metadata only) from "
    "http://thomasberg.org/datasets/birdsnap/1.1/birdsnap.tgz and extract it so that "
    "{data}/birdsnap/images.txt exists, then run `clrbench data download --tasks birdsnap --root "
    "{data}` again to fetch the images into {data}/birdsnap/download/images/ (rerun it to retry "
    "failures; fail.txt lists them).",
    "sun397": "The Princeton links are reported dead (pytorch/vision issue 9348). Obtain "
    "SUN397.tar.gz (37 GB, md5 8ca2778205c41d23104230ba66911c7a, formerly "
    "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz) and Partitions.zip (formerly "
    "http://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip) from a mirror; extract "
    "the first in {data} (giving {data}/SUN397/ClassName.txt) and unzip the second so that "
    "{data}/SUN397/Partitions/Training_01.txt and Testing_01.txt exist.",
    "cars": "The Stanford host is dead since 2023 (pytorch/vision issues 7545, 7681). Get the images "
    "from Kaggle (jessicali9530/stanford-cars-dataset, needs a login) and the devkit and "
    "cars_test_annos_withlabels.mat linked from pytorch/vision issue 7545, then lay them out as "
    "{data}/stanford_cars/cars_train/*.jpg, {data}/stanford_cars/cars_test/*.jpg (flatten Kaggle's "
    "nested cars_train/cars_train), {data}/stanford_cars/devkit/{{cars_meta.mat, "
    "cars_train_annos.mat}} and {data}/stanford_cars/cars_test_annos_withlabels.mat.",
    "aircraft": f"Download fgvc-aircraft-2013b.tar.gz (2.75 GB) from {_VGG}/fgvc-aircraft/ and "
    "extract it in {data}, giving {data}/fgvc-aircraft-2013b/data/variants.txt.",
    "voc2007": "Download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar (mirrors: "
    "pytorch/vision PR 9216 and issue 9269) and extract both in {data}, giving "
    "{data}/VOCdevkit/VOC2007/ImageSets/Main/test.txt.",
    "dtd": f"Download dtd-r1.0.1.tar.gz from {_VGG}/dtd/ and extract it in {{data}}/dtd, giving "
    "{data}/dtd/dtd/labels/train1.txt.",
    "pets": f"Download images.tar.gz and annotations.tar.gz from {_VGG}/pets/ and extract both in "
    "{data}/oxford-iiit-pet, giving {data}/oxford-iiit-pet/annotations/trainval.txt.",
    "caltech101": "Download caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02, unzip "
    "it and extract the 101_ObjectCategories.tar.gz inside into {data}/caltech101, giving "
    "{data}/caltech101/101_ObjectCategories/BACKGROUND_Google/ (102 class folders in all).",
    "imagenet": "ILSVRC-2012 needs an image-net.org login. Download ILSVRC2012_img_train.tar, "
    "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz; extract train into "
    "{data}/imagenet/train/<wnid>/ (one tar per class inside), val into {data}/imagenet/val/ and the "
    "devkit into {data}/imagenet/ (giving {data}/imagenet/ILSVRC2012_devkit_t12/data/meta.mat); val "
    "may also be in class folders, or flat with Kaggle's LOC_val_solution.csv in {data}/imagenet/.",
    "flowers102": f"Download 102flowers.tgz, imagelabels.mat and setid.mat from {_VGG}/flowers/102/ "
    "into {data}/flowers-102 and extract the tgz there, giving {data}/flowers-102/jpg/.",
}


def _cifar(cls: type, folder: str) -> Recipe:
    name = "cifar10" if folder.startswith("cifar-10-") else "cifar100"
    files = {f: m for f, m in cls.train_list + cls.test_list}  # type: ignore[attr-defined]
    files[cls.meta["filename"]] = cls.meta["md5"]  # type: ignore[attr-defined]
    res = Resource(cls.url, cls.filename, cls.tgz_md5)  # type: ignore[attr-defined]
    return Recipe((res,), MANUAL[name], md5=files)


@lru_cache(maxsize=1)
def recipes() -> dict[str, Recipe]:
    """Recipe per loader name (imports torchvision, so built on first use)."""
    from torchvision.datasets import (
        CIFAR10,
        CIFAR100,
        DTD,
        SUN397,
        FGVCAircraft,
        Flowers102,
        Food101,
        OxfordIIITPet,
    )
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    voc = [DATASET_YEAR_DICT[k] for k in ("2007", "2007-test")]
    flowers = Flowers102._file_dict
    return {
        "food101": Recipe((Resource(Food101._URL, "food-101.tar.gz", Food101._MD5),),
                          MANUAL["food101"]),
        "cifar10": _cifar(CIFAR10, "cifar-10-batches-py"),
        "cifar100": _cifar(CIFAR100, "cifar-100-python"),
        # A third-party loader gives md5 1788158175f6ae794aebf27bcd7a3f5d for the metadata
        # tarball; unverified, so not enforced. The images are md5-checked one by one.
        "birdsnap": Recipe(
            (Resource("http://thomasberg.org/datasets/birdsnap/1.1/birdsnap.tgz", "birdsnap.tgz",
                      None, into="birdsnap"),), MANUAL["birdsnap"], after="birdsnap"),
        "sun397": Recipe((Resource(SUN397._DATASET_URL, "SUN397.tar.gz", SUN397._DATASET_MD5),),
                         MANUAL["sun397"], automatic="sun397" not in MANUAL_ONLY),
        "cars": Recipe((), MANUAL["cars"], automatic=False),  # no URL left to try
        "imagenet": Recipe((), MANUAL["imagenet"], automatic=False),  # behind a login
        "aircraft": Recipe((Resource(FGVCAircraft._URL, "fgvc-aircraft-2013b.tar.gz", None),),
                           MANUAL["aircraft"]),
        "voc2007": Recipe(tuple(Resource(v["url"], v["filename"], v["md5"]) for v in voc),
                          MANUAL["voc2007"]),
        "dtd": Recipe((Resource(DTD._URL, "dtd-r1.0.1.tar.gz", DTD._MD5, into="dtd"),),
                      MANUAL["dtd"]),
        "pets": Recipe(tuple(Resource(u, u.rsplit("/", 1)[1], m, into="oxford-iiit-pet")
                             for u, m in OxfordIIITPet._RESOURCES), MANUAL["pets"]),
        # As torchvision 0.29's Caltech101.download (merged PR 9205), which has no class attribute.
        "caltech101": Recipe(
            (Resource("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                      "caltech-101.zip", "3138e1922a9193bfa496528edbbc45d0", into="caltech101"),),
            MANUAL["caltech101"], after="caltech"),
        "flowers102": Recipe(
            tuple(Resource(Flowers102._download_url_prefix + name, name, md5, into="flowers-102",
                           extract=name.endswith(".tgz")) for name, md5 in flowers.values()),
            MANUAL["flowers102"], md5={name: md5 for name, md5 in flowers.values()
                                       if name.endswith(".mat")}),
    }

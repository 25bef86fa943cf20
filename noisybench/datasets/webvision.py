"""``webvision``: (mini-)WebVision 1.0 (Li et al. 2017), tested on WebVision val and ILSVRC12 val.

As the field uses it (Chen & Gupta 2015; MentorNet, DivideMix, ELR): the Google images of
the first ``data.webvision_classes`` classes (50: mini-WebVision, 65,944 images) from
``info/train_filelist_google.txt``; the test set is WebVision's validation set of those
classes (``info/val_filelist.txt``, 50 a class); the ILSVRC12 validation images of the same
classes are a second test set (``extra_tests["ilsvrc12_val"]``), scored and recorded beside
it. Class i is line i of ``info/synsets.txt`` (the ILSVRC12 synsets in sorted-WNID order),
so an ILSVRC12 val folder is matched by WNID, never by the devkit's ILSVRC2012_ID (another
order). There is no validation split; the labels are the search queries' concepts, with
no true labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from noisybench.datasets.splits import DataSplits, register_dataset
from noisybench.datasets.files import check_images, numbered_lines, parse_label, require_files, require_root
from noisybench.datasets.images import photo_files
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec

ALL_CLASSES = 1000
INFO = ["info/train_filelist_google.txt", "info/val_filelist.txt", "info/synsets.txt"]
VAL_FOLDERS = ("val_images_256", "val_images")  # the resized release's, the full one's
MINI_COUNTS = {"train": 65944, "test": 2500, "ilsvrc12_val": 2500}  # for 50 classes
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LAYOUT = """expected layout for webvision:
  data.root = WebVision 1.0 with
    info/train_filelist_google.txt  'google/q0001/000000.jpg 0' per line (path under data.root, class 0-999)
    info/val_filelist.txt           'val000001.jpg 0' per line
    info/synsets.txt                1000 lines 'n01440764 tench, Tinca tinca': line i is class i
    google/...                      the training images, as listed
    val_images_256/<file> (or val_images/<file>)  the validation images
  data.imagenet_root = an ImageNet folder with val/<wnid>/<image> (torchvision's ImageNet layout,
    or ILSVRC12 val sorted by valprep.sh); val/<class id>/<image> (DivideMix's) is read too"""


def read_list(path: Path, classes: int) -> tuple[list[str], np.ndarray]:
    """(paths, labels) of a file list's lines whose class is among the first ``classes``."""
    paths, labels = [], []
    for number, text in numbered_lines(path):
        parts = text.split()
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected '<image path> <class>', got '{text}'")
        label = parse_label(parts[1], ALL_CLASSES, path, number)
        if label < classes:
            paths.append(parts[0])
            labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def read_synsets(path: Path) -> tuple[list[str], list[str]]:
    """(WNIDs, class names) by class id. A name used by two synsets (ILSVRC12 has two
    'crane' and two 'maillot') gets its WNID appended, so class names stay distinct."""
    wnids, names = [], []
    for number, text in numbered_lines(path):
        wnid, _, name = text.partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise DataError(f"{path}:{number}: expected '<wnid> <name>', got '{text}'")
        wnids.append(wnid)
        names.append(name.strip() or wnid)
    if len(wnids) != ALL_CLASSES:
        raise DataError(f"{path}: expected {ALL_CLASSES} synsets, found {len(wnids)}")
    seen = {name: names.count(name) for name in names}
    return wnids, [f"{name} ({wnid})" if seen[name] > 1 else name for wnid, name in zip(wnids, names)]


def imagenet_val(root: Path, wnids: list[str]) -> tuple[list[str], np.ndarray]:
    """ILSVRC12 val images of the given classes from ``root/val/<wnid>/`` (or ``val/<id>/``),
    sorted by name; a flat val folder (the tar as extracted) is refused with the fix."""
    folder = root / "val"
    if not folder.is_dir():
        raise DataError(f"webvision: data.imagenet_root={root} has no val/ folder\n{LAYOUT}")
    paths, labels, missing = [], [], []
    for label, wnid in enumerate(wnids):
        found = next((folder / name for name in (wnid, str(label)) if (folder / name).is_dir()), None)
        if found is None:
            missing.append(wnid)
            continue
        images = sorted(p for p in found.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        paths += [str(p) for p in images]
        labels += [label] * len(images)
    if missing:
        flat = any(p.name.startswith("ILSVRC2012_val_") for p in folder.iterdir())
        hint = (" (val/ holds the images flat, as ILSVRC2012_img_val.tar extracts: sort them into val/<wnid>/, "
                "e.g. with torchvision.datasets.ImageNet(root, split='val') or valprep.sh)") if flat else ""
        raise DataError(f"webvision: no ILSVRC12 val folder for {len(missing)} classes in {folder}, first: "
                        f"{', '.join(missing[:5])}{hint}")
    return paths, np.asarray(labels, dtype=np.int64)


def read_webvision(root: Path, classes: int) -> dict[str, Any]:
    require_files(root, INFO, "webvision", LAYOUT)
    wnids, names = read_synsets(root / "info/synsets.txt")
    train, train_labels = read_list(root / "info/train_filelist_google.txt", classes)
    val, val_labels = read_list(root / "info/val_filelist.txt", classes)
    val_folder = next((root / f for f in VAL_FOLDERS if (root / f).is_dir()), None)
    if val_folder is None:
        raise DataError(f"webvision: missing in {root}: {' or '.join(f + '/' for f in VAL_FOLDERS)}\n{LAYOUT}")
    empty = [name for name, rows in (("train_filelist_google.txt", train), ("val_filelist.txt", val)) if not rows]
    if empty:
        raise DataError(f"webvision: info/{', info/'.join(empty)} list no image of the first {classes} classes")
    return {"wnids": wnids[:classes], "names": names[:classes],
            "train": ([str(root / p) for p in train], train_labels),
            "test": ([str(val_folder / p) for p in val], val_labels)}


def count_warnings(classes: int, counts: dict[str, int]) -> list[str]:
    """Where a mini-WebVision copy's split sizes are not the published ones."""
    if classes != 50:
        return []
    return [f"{split}: {counts[split]:,} images, mini-WebVision has {expected:,}: an incomplete copy?"
            for split, expected in MINI_COUNTS.items() if split in counts and counts[split] != expected]


@register_dataset(
    "webvision",
    description="mini-WebVision: first 50 classes, Google images (65,944); tests WebVision val and ILSVRC12 val; "
                "data.root, data.imagenet_root",
    defaults={
        "model": {"name": "resnet50"},
        "epochs": 80,
        "batch_size": 32,
        "optimizer": {"lr": 0.01, "weight_decay": 5e-4},
        "lr_schedule": {"milestones": [40]},
    },
)
def build_webvision(config: dict[str, Any]) -> DataSplits:
    data = config["data"]
    root = require_root(data["root"], "data.root", "webvision", LAYOUT)
    classes = data["webvision_classes"]
    found = read_webvision(root, classes)
    (train, train_labels), (test, test_labels) = found["train"], found["test"]
    check_images(train, "train", "webvision")
    check_images(test, "test", "webvision")
    train_files = photo_files(config, train, train_labels, train=True)  # first: it resolves image_size=auto
    extra, counts = {}, {"train": len(train), "test": len(test)}
    warnings = []
    if data["imagenet_root"]:
        imagenet = require_root(data["imagenet_root"], "data.imagenet_root", "webvision", LAYOUT)
        paths, labels = imagenet_val(imagenet, found["wnids"])
        extra["ilsvrc12_val"] = photo_files(config, paths, labels, train=False)
        counts["ilsvrc12_val"] = len(paths)
    else:
        warnings.append("data.imagenet_root is not set: the ILSVRC12 val test set is not scored")
    return DataSplits(
        train=train_files,
        train_eval=photo_files(config, train, train_labels, train=False),
        val=None,
        test=photo_files(config, test, test_labels, train=False),
        class_names=found["names"],
        train_labels=train_labels,
        noise=NoiseSpec("real", float("nan")),
        warnings=warnings + count_warnings(classes, counts),
        extra_tests=extra,
    )

"""``food101n``: Food-101N (Lee et al. 2018) for training, Food-101's test split for testing.

Training set: every row of ``meta/imagelist.tsv`` (the folder is the noisy label), less
the verified-correct rows of ``meta/verified_val.tsv``, which form the clean validation
set. The test set is Food-101's ``meta/test.txt`` (25,250 images), never
``verified_val.tsv``. Rows of ``verified_train.tsv`` give the trusted subset (label 1)
and known-noisy samples (label 0); a verified key filed under another class in
``imagelist.tsv`` is counted, reported and left out of both. The clean set (setting
``clean``) is the trusted subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from noisybench.datasets.splits import UNKNOWN, DataSplits, IndexedSubset, register_dataset
from noisybench.datasets.files import check_images, numbered_lines, require_files, require_root
from noisybench.datasets.images import photo_files
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec

LAYOUT = """expected layout for food101n:
  data.root = Food-101N_release/ with
    meta/classes.txt           header line, then one class per line (apple_pie)
    meta/imagelist.tsv         header 'class_name/key', then apple_pie/<md5>.jpg
    meta/verified_train.tsv    header, then apple_pie/<md5>.jpg<TAB>1 (1 = label right, 0 = wrong)
    meta/verified_val.tsv      same format
    images/<class>/<md5>.jpg
  data.food101_root = food-101/ with
    meta/classes.txt, meta/test.txt (apple_pie/1011328), images/<class>/<id>.jpg"""
META = ["meta/classes.txt", "meta/imagelist.tsv", "meta/verified_train.tsv", "meta/verified_val.tsv"]


def split_key(text: str, classes: dict[str, int], path: Path, number: int) -> tuple[str, int]:
    """'apple_pie/abc.jpg' -> ('abc.jpg', class id)."""
    name, sep, file = text.partition("/")
    if not sep or not file:
        raise DataError(f"{path}:{number}: expected 'class_name/key', got '{text}'")
    if name not in classes:
        raise DataError(f"{path}:{number}: unknown class '{name}'")
    return file, classes[name]


def read_verified(path: Path, classes: dict[str, int]) -> list[tuple[str, int, int, int]]:
    """(file, class, verification 0/1, line) per row; the value is parsed, so '0' is 0."""
    rows = []
    for number, text in numbered_lines(path, skip_header=True):
        parts = text.split("\t")
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected 'class_name/key<TAB>verification_label', got '{text}'")
        file, label = split_key(parts[0].strip(), classes, path, number)
        value = parts[1].strip()
        if value not in ("0", "1"):
            raise DataError(f"{path}:{number}: verification label '{value}' is not 0 or 1")
        rows.append((file, label, int(value), number))
    return rows


def read_food101n(root: Path, food_root: Path) -> dict[str, Any]:
    require_files(root, META, "food101n", LAYOUT)
    require_files(food_root, ["meta/test.txt"], "food101n (data.food101_root)", LAYOUT)
    names = [text for _, text in numbered_lines(root / "meta/classes.txt", skip_header=True)]
    classes = {name: i for i, name in enumerate(names)}
    food_classes_file = food_root / "meta/classes.txt"
    if food_classes_file.is_file():
        food_names = {text for _, text in numbered_lines(food_classes_file)}
        if food_names != set(names):
            differ = sorted(food_names ^ set(names))
            raise DataError(f"class lists of Food-101N and Food-101 differ: {', '.join(differ[:10])}")
    image_list = root / "meta/imagelist.tsv"
    files, labels, position = [], [], {}
    for number, text in numbered_lines(image_list, skip_header=True):
        file, label = split_key(text, classes, image_list, number)
        position.setdefault(file, len(files))
        files.append(file)
        labels.append(label)
    labels = np.array(labels, dtype=np.int64)
    flags = np.full(len(files), UNKNOWN, dtype=np.int8)
    conflicts, absent, val = [], [], []
    for name in ("verified_train.tsv", "verified_val.tsv"):
        for file, label, value, number in read_verified(root / "meta" / name, classes):
            at = position.get(file)
            if at is None:
                absent.append(f"{name}:{number}")
            elif labels[at] != label:
                conflicts.append(f"{file} is {names[labels[at]]} in imagelist.tsv, {names[label]} in {name}:{number}")
            else:
                flags[at] = 1 - value
                if name == "verified_val.tsv" and value == 1:
                    val.append(at)
    test = food_root / "meta/test.txt"
    test_keys, test_labels = [], []
    for number, text in numbered_lines(test):
        file, label = split_key(text, classes, test, number)
        test_keys.append(f"{names[label]}/{file}.jpg")
        test_labels.append(label)
    warnings = []
    if conflicts:
        warnings.append(f"{len(conflicts)} verified keys are filed under another class and left unverified: "
                        + "; ".join(conflicts[:3]))
    if absent:
        warnings.append(f"{len(absent)} verified rows are not in imagelist.tsv: {', '.join(absent[:3])}")
    return {
        "names": names,
        "keys": [f"{names[c]}/{f}" for f, c in zip(files, labels)],
        "labels": labels,
        "flags": flags,
        "val": np.array(sorted(set(val)), dtype=np.int64),
        "test_keys": test_keys,
        "test_labels": np.array(test_labels, dtype=np.int64),
        "conflicts": len(conflicts),
        "warnings": warnings,
    }


@register_dataset(
    "food101n",
    description="Food-101N, 101 classes, ~310k noisy train, Food-101 test (25,250); data.root, data.food101_root",
    defaults={
        "model": {"name": "resnet50"},
        "epochs": 30,
        "batch_size": 128,
        "optimizer": {"lr": 0.002, "weight_decay": 5e-3},
        "lr_schedule": {"step_every": 10},
    },
)
def build_food101n(config: dict[str, Any]) -> DataSplits:
    data = config["data"]
    root = require_root(data["root"], "data.root", "food101n", LAYOUT)
    food_root = require_root(data["food101_root"], "data.food101_root", "food101n", LAYOUT)
    found = read_food101n(root, food_root)
    keys, labels, flags = found["keys"], found["labels"], found["flags"]
    is_val = np.zeros(len(keys), dtype=bool)
    is_val[found["val"]] = True
    train_at = np.flatnonzero(~is_val)
    paths = np.array([str(root / "images" / k) for k in keys], dtype=object)
    test_paths = [str(food_root / "images" / k) for k in found["test_keys"]]
    check_images(paths[train_at], "train", "food101n")
    check_images(test_paths, "test", "food101n")
    train_labels, train_flags = labels[train_at], flags[train_at]
    true = np.where(train_flags == 0, train_labels, UNKNOWN)
    trusted = np.flatnonzero(train_flags == 0)
    train = photo_files(config, paths[train_at], train_labels, train=True)
    return DataSplits(
        train=train,
        train_eval=photo_files(config, paths[train_at], train_labels, train=False),
        val=photo_files(config, paths[is_val], labels[is_val], train=False) if is_val.any() else None,
        test=photo_files(config, test_paths, found["test_labels"], train=False),
        class_names=found["names"],
        train_labels=train_labels,
        true_labels=true,
        noise_flags=train_flags,
        trusted=trusted,
        clean=IndexedSubset(train, trusted),
        noise=NoiseSpec("real", float("nan")),
        warnings=found["warnings"],
    )

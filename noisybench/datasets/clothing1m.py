"""``clothing1m``: Clothing1M (Xiao et al. 2015) read from its distributed files.

Training set: ``noisy_train_key_list.txt`` with labels from ``noisy_label_kv.txt``. Val and
test: ``clean_val_key_list.txt`` / ``clean_test_key_list.txt`` with labels from
``clean_label_kv.txt``. Clean set (setting ``clean``): ``clean_train_key_list.txt``. Noisy
training images that also have a clean label give the true labels for metrics; in the
``verify`` setting those whose two labels agree are the trusted subset. Keys are read
with or without their ``images/`` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from noisybench.datasets.splits import UNKNOWN, DataSplits, register_dataset
from noisybench.datasets.files import check_images, numbered_lines, parse_label, require_files, require_root
from noisybench.datasets.images import photo_files
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec

NUM_CLASSES = 14
FILES = {
    "names": "category_names_eng.txt",
    "noisy_kv": "noisy_label_kv.txt",
    "clean_kv": "clean_label_kv.txt",
    "noisy_train": "noisy_train_key_list.txt",
    "clean_train": "clean_train_key_list.txt",
    "clean_val": "clean_val_key_list.txt",
    "clean_test": "clean_test_key_list.txt",
}
LAYOUT = """expected layout of data.root for clothing1m:
  category_names_eng.txt      14 class names, line number = class id
  noisy_label_kv.txt          'images/2/46/50748838,3981129246.jpg 5' per line
  clean_label_kv.txt          same format
  noisy_train_key_list.txt    one key per line (also clean_train_, clean_val_, clean_test_key_list.txt)
  images/<d>/<dd>/<name>.jpg  the images, unpacked from images/0..9.tar"""
PAPER_COUNTS = {"clean_val": 14313, "clean_test": 10526}


def normalize_key(key: str) -> str:
    """'images/0/12/x.jpg', './images/0/12/x.jpg' and '0/12/x.jpg' are the same image."""
    key = key.strip()
    key = key[2:] if key.startswith("./") else key
    return key[len("images/"):] if key.startswith("images/") else key


def read_kv(path: Path) -> dict[str, int]:
    labels = {}
    for number, text in numbered_lines(path):
        parts = text.split()
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected 'KEY LABEL', got '{text}'")
        labels[normalize_key(parts[0])] = parse_label(parts[1], NUM_CLASSES, path, number)
    return labels


def read_keys(path: Path) -> list[str]:
    keys = []
    for number, text in numbered_lines(path):
        if len(text.split()) != 1:
            raise DataError(f"{path}:{number}: expected one key per line, got '{text}'")
        keys.append(normalize_key(text))
    return keys


def labels_for(keys: list[str], kv: dict[str, int], key_file: Path, kv_file: Path) -> np.ndarray:
    missing = [k for k in keys if k not in kv]
    if missing:
        raise DataError(
            f"{len(missing)} keys of {key_file.name} have no label in {kv_file.name}, first: {', '.join(missing[:5])}"
        )
    return np.array([kv[k] for k in keys], dtype=np.int64)


def read_clothing1m(root: Path) -> dict[str, Any]:
    """Everything the files say, before any image is opened."""
    require_files(root, list(FILES.values()), "clothing1m", LAYOUT)
    path = {name: root / file for name, file in FILES.items()}
    names = [text for _, text in numbered_lines(path["names"])]
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path['names']}: expected {NUM_CLASSES} class names, found {len(names)}")
    noisy_kv, clean_kv = read_kv(path["noisy_kv"]), read_kv(path["clean_kv"])
    keys = {split: read_keys(path[split]) for split in ("noisy_train", "clean_train", "clean_val", "clean_test")}
    empty = [FILES[split] for split in ("noisy_train", "clean_val", "clean_test") if not keys[split]]
    if empty:  # found now, not after an epoch of training
        raise DataError(f"clothing1m: {', '.join(empty)} in {root} list no keys")
    labels = {"noisy_train": labels_for(keys["noisy_train"], noisy_kv, path["noisy_train"], path["noisy_kv"])}
    for split in ("clean_train", "clean_val", "clean_test"):
        labels[split] = labels_for(keys[split], clean_kv, path[split], path["clean_kv"])
    true = np.array([clean_kv.get(k, UNKNOWN) for k in keys["noisy_train"]], dtype=np.int64)
    warnings = []
    if len(keys["clean_val"]) < len(keys["clean_test"]):
        warnings.append(
            f"clean_val_key_list.txt has {len(keys['clean_val'])} keys and clean_test_key_list.txt "
            f"{len(keys['clean_test'])}: the paper's val has {PAPER_COUNTS['clean_val']} and test "
            f"{PAPER_COUNTS['clean_test']}, so this copy may have them swapped"
        )
    return {"names": names, "keys": keys, "labels": labels, "true": true, "warnings": warnings}


@register_dataset(
    "clothing1m",
    description="Clothing1M, 14 classes, ~1M noisy train, 47,570 clean train, 14,313 val, 10,526 test; data.root",
    defaults={
        "model": {"name": "resnet50"},
        "epochs": 15,
        "batch_size": 128,
        "optimizer": {"lr": 0.002, "weight_decay": 5e-3},
        "lr_schedule": {"step_every": 5},
    },
)
def build_clothing1m(config: dict[str, Any]) -> DataSplits:
    root = require_root(config["data"]["root"], "data.root", "clothing1m", LAYOUT)
    found = read_clothing1m(root)
    keys, labels = found["keys"], found["labels"]
    paths = {split: [str(root / "images" / k) for k in split_keys] for split, split_keys in keys.items()}
    for split in ("noisy_train", "clean_val", "clean_test"):
        check_images(paths[split], split, "clothing1m")
    true = found["true"]
    noisy = labels["noisy_train"]
    return DataSplits(
        train=photo_files(config, paths["noisy_train"], noisy, train=True),
        train_eval=photo_files(config, paths["noisy_train"], noisy, train=False),
        val=photo_files(config, paths["clean_val"], labels["clean_val"], train=False),
        test=photo_files(config, paths["clean_test"], labels["clean_test"], train=False),
        class_names=found["names"],
        train_labels=noisy,
        true_labels=true,
        trusted=np.flatnonzero(true == noisy),
        clean=photo_files(config, paths["clean_train"], labels["clean_train"], train=True),
        noise=NoiseSpec("real", float("nan")),
        warnings=found["warnings"],
    )

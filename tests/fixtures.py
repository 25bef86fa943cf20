"""Writers of small dataset trees in the exact on-disk formats of the real datasets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLOTHING_NAMES = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket",
                  "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]


def write_jpeg(path: Path, label: int, size=(24, 20)) -> None:
    """A tiny JPEG whose colour depends on the class, so a model can learn it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    base = np.array([(37 * label) % 256, (91 * label) % 256, (151 * label) % 256], dtype=np.int16)
    pixels = np.clip(base + rng.integers(-20, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_corrupt(path: Path) -> None:
    """A file that starts like a JPEG and then stops."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def write_clothing1m(root: Path, per_class: int = 4, kv_prefix: bool = True, list_prefix: bool = False,
                     swap_val_test: bool = False, corrupt: bool = False, skip: tuple = ()) -> dict:
    """A Clothing1M tree: noisy train (per_class per class, 1 in 4 mislabelled), clean train,
    val, test; the first 2 noisy images of each class also have clean labels.

    Returns what the loader should find. ``skip`` leaves out files by name.
    """
    k = len(CLOTHING_NAMES)
    noisy_kv, clean_kv, lists = [], [], {n: [] for n in ("noisy_train", "clean_train", "clean_val", "clean_test")}
    truth = {"noisy": [], "true": []}
    counter = 0

    def new_key(label):
        nonlocal counter
        counter += 1
        key = f"{counter % 10}/{counter:02d}/{1000 + counter},{counter * 7}.jpg"
        write_jpeg(root / "images" / key, label)
        return key

    for c in range(k):
        for j in range(per_class):
            key = new_key(c)
            noisy = (c + 1) % k if j == per_class - 1 else c  # last one of each class mislabelled
            noisy_kv.append((key, noisy))
            lists["noisy_train"].append(key)
            truth["noisy"].append(noisy)
            if j < 2 or j == per_class - 1:
                clean_kv.append((key, c))
                truth["true"].append(c)
            else:
                truth["true"].append(-1)
    for split, count in (("clean_train", 1), ("clean_val", 2), ("clean_test", 1)):
        for c in range(k):
            for _ in range(count):
                key = new_key(c)
                clean_kv.append((key, c))
                lists[split].append(key)
    if swap_val_test:
        lists["clean_val"], lists["clean_test"] = lists["clean_test"], lists["clean_val"]
    if corrupt:
        write_corrupt(root / "images" / lists["noisy_train"][1])
    prefix_kv = "images/" if kv_prefix else ""
    prefix_list = "images/" if list_prefix else ""
    files = {
        "category_names_eng.txt": CLOTHING_NAMES,
        "noisy_label_kv.txt": [f"{prefix_kv}{key} {label}" for key, label in noisy_kv],
        "clean_label_kv.txt": [f"{prefix_kv}{key} {label}" for key, label in clean_kv],
        **{f"{split}_key_list.txt": [prefix_list + key for key in keys] for split, keys in lists.items()},
    }
    for name, lines in files.items():
        if name not in skip:
            write_lines(root / name, lines)
    return {"lists": lists, "noisy": np.array(truth["noisy"]), "true": np.array(truth["true"])}


FOOD_CLASSES = ["apple_pie", "baklava", "caesar_salad"]


def write_food101n(root: Path, food_root: Path, per_class: int = 6) -> dict:
    """Food-101N + Food-101 trees with the traps: header lines, '0' verification values,
    a key filed under another class in verified_train.tsv, and verified_val rows."""
    imagelist, verified_train, verified_val = [], [], []
    for c, name in enumerate(FOOD_CLASSES):
        for j in range(per_class):
            key = f"{name}/{c:02d}{j:02d}abcdef.jpg"
            write_jpeg(root / "images" / key, c if j < per_class - 1 else (c + 1) % 3)
            imagelist.append(key)
    # verified_train: rows 0..2 of each class: 1, 1, 0 ; row 3 of class 0 filed under baklava (conflict)
    for c, name in enumerate(FOOD_CLASSES):
        verified_train += [f"{name}/{c:02d}00abcdef.jpg\t1", f"{name}/{c:02d}01abcdef.jpg\t1",
                           f"{name}/{c:02d}05abcdef.jpg\t0"]
        verified_val += [f"{name}/{c:02d}04abcdef.jpg\t1"]
    verified_train.append("baklava/0003abcdef.jpg\t1")  # apple_pie in imagelist.tsv
    write_lines(root / "meta/classes.txt", ["class_name", *FOOD_CLASSES])
    write_lines(root / "meta/imagelist.tsv", ["class_name/key", *imagelist])
    write_lines(root / "meta/verified_train.tsv", ["class_name/key\tverification_label", *verified_train])
    write_lines(root / "meta/verified_val.tsv", ["class_name/key\tverification_label", *verified_val])
    test = []
    for c, name in enumerate(FOOD_CLASSES):
        for j in range(3):
            write_jpeg(food_root / "images" / name / f"{c}{j}77.jpg", c)
            test.append(f"{name}/{c}{j}77")
    write_lines(food_root / "meta/test.txt", test)
    write_lines(food_root / "meta/classes.txt", FOOD_CLASSES)
    write_lines(food_root / "meta/train.txt", [])
    return {"train": len(imagelist) - 3, "val": 3, "test": len(test), "trusted": 6, "known_noisy": 3}


def write_cifar10(root: Path, per_batch: int = 20, test: int = 40, seed: int = 0) -> np.ndarray:
    """torchvision's cifar-10-batches-py with 5 small batches; returns the training labels."""
    return write_cifar(root, "cifar10", per_batch, test, seed)


def write_cifar(root: Path, name: str, per_batch: int = 20, test: int = 40, seed: int = 0) -> np.ndarray:
    """torchvision's python format of CIFAR-10 (5 batches) or CIFAR-100 (train/test); returns training labels."""
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def batch(count):
        labels = np.arange(count) % classes
        data = ((labels[:, None] * 25) % 256 + rng.integers(0, 20, size=(count, 3072))).astype(np.uint8)
        return {"data": data, label_key: labels.tolist(), "batch_label": "fixture"}

    def dump(file, content):
        with open(folder / file, "wb") as handle:
            pickle.dump(content, handle)

    train_files = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    labels_all = []
    for file in train_files:
        content = batch(per_batch * 5 // len(train_files))
        labels_all.append(np.array(content[label_key]))
        dump(file, content)
    dump("test_batch" if name == "cifar10" else "test", batch(test))
    if name == "cifar10":
        dump("batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                              "horse", "ship", "truck"]})
    else:
        dump("meta", {"fine_label_names": [f"class{i:02d}" for i in range(100)], "coarse_label_names": []})
    return np.concatenate(labels_all)


def write_cifar10n(path: Path, clean: np.ndarray, seed: int = 0) -> dict:
    """A CIFAR-10_human.pt-shaped dict of numpy arrays, as the CIFAR-N release pickles it."""
    rng = np.random.default_rng(seed)
    worse = clean.copy()
    flip = rng.choice(len(clean), size=len(clean) * 2 // 5, replace=False)
    worse[flip] = (clean[flip] + 1) % 10
    content = {"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy(),
               "random_label1": worse.copy(), "random_label2": clean.copy(), "random_label3": worse.copy()}
    torch.save(content, path)
    return content

"""``cifar10`` and ``cifar100`` from torchvision's on-disk format, with synthetic or CIFAR-N noise.

The python-pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/`` under
``data.root``) are read directly; torchvision fetches them only if ``data.download=true``. ``noise=human:NAME`` takes the
training labels from the CIFAR-N file (``data.cifar_n_file``, default
``<data.root>/CIFAR-10_human.pt`` or ``CIFAR-100_human.pt``); its ``clean_label`` must
match the training set, so a file for another order of the images is refused.
``data.val_fraction`` of the training set (stratified) becomes a validation set with true
labels; CIFAR itself has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisybench.datasets.splits import DataSplits, register_dataset, stratified_split
from noisybench.datasets.images import normalization
from noisybench.datasets.memory import BatchAugment, MemoryImages
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec, parse_noise
from noisybench.untrusted import load_pickle, load_torch_arrays

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}
HUMAN_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}
HUMAN_KEYS = {
    "cifar10": {"aggre": "aggre_label", "worse": "worse_label", "random1": "random_label1",
                "random2": "random_label2", "random3": "random_label3"},
    "cifar100": {"noisy": "noisy_label"},
}
DEFAULTS = {
    "model": {"name": "resnet18"},
    "epochs": 100,
    "batch_size": 128,
    "optimizer": {"lr": 0.02, "weight_decay": 5e-4},
    "lr_schedule": {"step_every": 40},
}


def load_human_labels(name: str, config: dict[str, Any], label_set: str, clean: np.ndarray) -> np.ndarray:
    data = config["data"]
    path = Path(data["cifar_n_file"] or Path(data["root"]) / HUMAN_FILES[name]).expanduser()
    if not path.is_file():
        raise DataError(f"{name}: noise=human:{label_set} needs the CIFAR-N file; not found: {path} "
                        f"(set data.cifar_n_file=PATH to {HUMAN_FILES[name]})")
    if label_set not in HUMAN_KEYS[name]:
        raise DataError(f"{name}: no human:{label_set} labels; {name} has {', '.join(HUMAN_KEYS[name])}")
    content = load_torch_arrays(path)  # dicts of numpy arrays: nothing else is unpickled
    key = HUMAN_KEYS[name][label_set]
    if key not in content:
        raise DataError(f"{path}: has no '{key}' (keys: {', '.join(map(str, content))})")
    labels = np.asarray(content[key], dtype=np.int64)
    if len(labels) != len(clean):
        raise DataError(f"{path}: '{key}' has {len(labels)} labels, the training set {len(clean)} images")
    if "clean_label" in content and not np.array_equal(np.asarray(content["clean_label"]), clean):
        raise DataError(f"{path}: 'clean_label' does not match the {name} training set: a file for another image order?")
    return labels


def read_batches(folder: Path, files: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×32×32×3 uint8) and labels from CIFAR python batches."""
    images, labels = [], []
    for file in files:
        batch = load_pickle(folder / file)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_cifar(name: str, root: Path, download: bool) -> dict[str, Any]:
    folder_name, train_files, test_files, meta_file, names_key, label_key = LAYOUT[name]
    folder = root / folder_name
    wanted = [*train_files, *test_files, meta_file]
    if download and not all((folder / f).is_file() for f in wanted):
        from torchvision.datasets import CIFAR10, CIFAR100

        (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=True, download=True)
    missing = [f for f in wanted if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name}: missing in {folder}: {', '.join(missing)} "
                        f"(torchvision's python format; data.download=true fetches it)")
    classes = load_pickle(folder / meta_file)[names_key]
    train_images, train_labels = read_batches(folder, train_files, label_key)
    test_images, test_labels = read_batches(folder, test_files, label_key)
    return {"classes": list(classes), "train": (train_images, train_labels), "test": (test_images, test_labels)}


def build_cifar(name: str, config: dict[str, Any]) -> DataSplits:
    data = config["data"]
    if not data["root"]:
        raise DataError(f"{name}: set data.root=PATH to the folder holding torchvision's {name} files")
    found = read_cifar(name, Path(data["root"]).expanduser(), data["download"])
    images, clean = found["train"]
    test_images, test_labels = found["test"]
    spec = parse_noise(config["noise"])
    noisy, noise = clean, NoiseSpec("none", 0.0)
    if spec.type == "human":
        noisy = load_human_labels(name, config, spec.label_set, clean)
        noise = NoiseSpec("human", float(np.mean(noisy != clean)), spec.label_set)
    mean, std = normalization(config, STATS[name])
    kept, held = stratified_split(clean, data["val_fraction"], data["split_seed"])
    chw = torch.from_numpy(images).permute(0, 3, 1, 2)  # a view: N×C×H×W uint8
    train = chw[torch.as_tensor(kept)]  # one copy, shared by the augmented and the plain view

    return DataSplits(
        train=MemoryImages(train, noisy[kept], mean, std, BatchAugment(padding=4, flip=True)),  # pad-4 crop, flip
        train_eval=MemoryImages(train, noisy[kept], mean, std),
        val=MemoryImages(chw[torch.as_tensor(held)], clean[held], mean, std) if len(held) else None,
        test=MemoryImages(torch.from_numpy(test_images).permute(0, 3, 1, 2), test_labels, mean, std),
        class_names=found["classes"],
        train_labels=noisy[kept],
        true_labels=clean[kept],
        noise=noise,
        instance_features=lambda: images[kept].reshape(len(kept), -1).astype(np.float32) / 255.0,
    )


@register_dataset("cifar10", description="CIFAR-10 (torchvision files), synthetic noise or CIFAR-10N; data.root", defaults=DEFAULTS)
def build_cifar10(config: dict[str, Any]) -> DataSplits:
    return build_cifar("cifar10", config)


@register_dataset("cifar100", description="CIFAR-100 (torchvision files), synthetic noise or CIFAR-100N; data.root", defaults=DEFAULTS)
def build_cifar100(config: dict[str, Any]) -> DataSplits:
    return build_cifar("cifar100", config)

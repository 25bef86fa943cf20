"""``mnist``, ``fashionmnist``, ``kmnist`` from the folders torchvision writes, in memory.

``data.root`` is torchvision's root: it holds ``MNIST/raw/``, ``FashionMNIST/raw/`` or
``KMNIST/raw/`` with the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), extracted or still ``.gz``
(torchvision keeps both; the extracted file is read when present). A copy written by a
torchvision before 0.9 may hold only ``processed/training.pt`` and ``test.pt`` (a pair of
uint8 tensors): those are read with tensors-only unpickling. Nothing is downloaded unless
``data.download=true``. ``data.val_fraction`` of the training set (stratified) becomes a
validation set with true labels, as for CIFAR.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisybench.datasets.splits import DataSplits, register_dataset, stratified_split
from noisybench.datasets.memory import MemoryImages
from noisybench.errors import DataError
from noisybench.untrusted import load_torch_arrays

FOLDERS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}
CLASSES = {  # as torchvision names them
    "mnist": ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
              "8 - eight", "9 - nine"],
    "fashionmnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}
STATS = {"mnist": ((0.1307,), (0.3081,)), "fashionmnist": ((0.2860,), (0.3530,)), "kmnist": ((0.1918,), (0.3483,))}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
LEGACY = {"train": "training.pt", "test": "test.pt"}
IDX_UINT8 = 0x08
GZIP_MAGIC = b"\x1f\x8b"
DEFAULTS = {
    "model": {"name": "small_cnn"},
    "epochs": 20,
    "batch_size": 128,
    "optimizer": {"lr": 0.05, "weight_decay": 5e-4},
    "lr_schedule": {"step_every": 10},
}


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not): a zero word, type 0x08, the number of
    dimensions, each dimension as a big-endian 32-bit count, then the values."""
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:  # by content, not by name: a file may be gzipped or not whatever it is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: a damaged gzip file ({exc})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != IDX_UINT8 or data[3] != dims:
        raise DataError(f"{path}: not an IDX file of unsigned bytes with {dims} dimension(s) (header {data[:4].hex()})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    offset = 4 + 4 * dims
    if len(data) - offset != int(np.prod(shape)):
        raise DataError(f"{path}: the header says {'x'.join(map(str, shape))} values, "
                        f"the file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()  # writable, for torch


def idx_file(raw: Path, name: str) -> Path | None:
    """``name`` in ``raw``, extracted or gzipped, or None."""
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(N×28×28 images, labels) of one split from ``raw/``, else from the legacy ``processed/``, else None."""
    image_name, label_name = FILES[split]
    images, labels = idx_file(folder / "raw", image_name), idx_file(folder / "raw", label_name)
    if images is not None and labels is not None:
        pixels, targets = read_idx(images, 3), read_idx(labels, 1).astype(np.int64)
        if len(pixels) != len(targets):
            raise DataError(f"{images} holds {len(pixels)} images, {labels} {len(targets)} labels")
        return pixels, targets
    legacy = folder / "processed" / LEGACY[split]
    if legacy.is_file():
        content = load_torch_arrays(legacy)
        if not (isinstance(content, (tuple, list)) and len(content) == 2 and all(map(torch.is_tensor, content))):
            raise DataError(f"{legacy}: expected a pair (images, labels) of tensors")
        return content[0].numpy().astype(np.uint8), content[1].numpy().astype(np.int64)
    return None


def layout_hint(name: str, root: Path) -> str:
    """Why the files were not found where expected: a data.root one level too deep is the usual cause."""
    folder = FOLDERS[name]
    if root.name == "raw" or (root / "raw").is_dir() or idx_file(root, FILES["train"][0]):
        return f" (data.root is torchvision's root, the folder that holds {folder}/, not {folder}/ or its raw/)"
    return " (torchvision's layout; data.download=true fetches it)"


def read_dataset(name: str, root: Path, download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / FOLDERS[name]
    found = {split: read_split(folder, split) for split in FILES}
    if download and any(v is None for v in found.values()):
        from torchvision import datasets

        getattr(datasets, FOLDERS[name])(str(root), train=True, download=True)  # fetches both splits
        found = {split: read_split(folder, split) for split in FILES}
    missing = [f"raw/{FILES[s][0]}[.gz] and raw/{FILES[s][1]}[.gz]" for s, v in found.items() if v is None]
    if missing:
        raise DataError(f"{name}: missing in {folder}: {'; '.join(missing)}{layout_hint(name, root)}")
    for split, (images, labels) in found.items():
        bad = np.flatnonzero((labels < 0) | (labels >= len(CLASSES[name])))
        if len(bad):
            raise DataError(f"{name}: {split} label {labels[bad[0]]} at position {bad[0]} is out of range 0..9")
    return found


def build_idx(name: str, config: dict[str, Any]) -> DataSplits:
    data = config["data"]
    if not data["root"]:
        raise DataError(f"{name}: set data.root=PATH to torchvision's root (the folder that holds {FOLDERS[name]}/)")
    found = read_dataset(name, Path(data["root"]).expanduser(), data["download"])
    images, labels = found["train"]
    test_images, test_labels = found["test"]
    mean, std = STATS[name]
    kept, held = stratified_split(labels, data["val_fraction"], data["split_seed"])
    tensor = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)  # N×1×28×28 uint8
    train = tensor[torch.as_tensor(kept)]
    return DataSplits(
        train=MemoryImages(train, labels[kept], mean, std),  # no augmentation, as Co-teaching's MNIST runs
        train_eval=MemoryImages(train, labels[kept], mean, std),
        val=MemoryImages(tensor[torch.as_tensor(held)], labels[held], mean, std) if len(held) else None,
        test=MemoryImages(torch.from_numpy(np.ascontiguousarray(test_images)).unsqueeze(1), test_labels, mean, std),
        class_names=list(CLASSES[name]),
        train_labels=labels[kept],
        true_labels=labels[kept],
        channels=1,
        instance_features=lambda: images[kept].reshape(len(kept), -1).astype(np.float32) / 255.0,
    )


@register_dataset("mnist", description="MNIST (torchvision's MNIST/raw IDX files), 60,000/10,000, in memory; data.root",
                  defaults=DEFAULTS)
def build_mnist(config: dict[str, Any]) -> DataSplits:
    return build_idx("mnist", config)


@register_dataset("fashionmnist",
                  description="Fashion-MNIST (torchvision's FashionMNIST/raw), 60,000/10,000; data.root",
                  defaults=DEFAULTS)
def build_fashionmnist(config: dict[str, Any]) -> DataSplits:
    return build_idx("fashionmnist", config)


@register_dataset("kmnist", description="Kuzushiji-MNIST (torchvision's KMNIST/raw), 60,000/10,000; data.root",
                  defaults=DEFAULTS)
def build_kmnist(config: dict[str, Any]) -> DataSplits:
    return build_idx("kmnist", config)

"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes).

Needs no download, so it is the dataset of the quick-start run and of the tests. The
split is stratified 60/20/20 train/val/test, seeded by ``data.split_seed`` (not the run
seed, so every run of a comparison sees the same test set).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from torchvision.transforms import v2

from noisybench.datasets import DataSplits, register_dataset


class TensorImages(Dataset):
    """In-memory images (N×C×H×W float) with labels; items are (image, label, index)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, transform=None):
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[i], i


@register_dataset(
    "digits",
    description="scikit-learn 8x8 digits, 10 classes, 1,078/359/360 train/val/test; built in",
    defaults={
        "model": {"name": "small_cnn"},
        "epochs": 15,
        "batch_size": 64,
        "optimizer": {"lr": 0.05, "weight_decay": 5e-4},
        "lr_schedule": {"step_every": 10},
    },
)
def build_digits(config: dict[str, Any]) -> DataSplits:
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = bunch.target.astype(np.int64)
    seed = config["data"]["split_seed"]
    order = np.arange(len(labels))
    train_idx, rest = train_test_split(order, test_size=0.4, stratify=labels, random_state=seed)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    mean, std = images[train_idx].mean().item(), images[train_idx].std().item()
    normalize = v2.Normalize([mean], [std])
    train_tf = v2.Compose([v2.RandomCrop(8, padding=1), normalize])

    def split(idx, transform):
        return TensorImages(images[idx], labels[idx], transform)

    return DataSplits(
        train=split(train_idx, train_tf),
        train_eval=split(train_idx, normalize),
        val=split(val_idx, normalize),
        test=split(test_idx, normalize),
        class_names=[str(d) for d in range(10)],
        train_labels=labels[train_idx],
        true_labels=labels[train_idx],
        channels=1,
        instance_features=lambda: images[train_idx].flatten(1).numpy(),
    )

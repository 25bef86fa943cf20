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

from noisybench.datasets.splits import DataSplits, register_dataset
from noisybench.datasets.memory import BatchAugment, MemoryImages


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
    mean, std = [images[train_idx].mean().item()], [images[train_idx].std().item()]

    def split(idx, augment=None):
        return MemoryImages(images[idx], labels[idx], mean, std, augment)

    train = split(train_idx, BatchAugment(padding=1, flip=False))
    return DataSplits(
        train=train,
        train_eval=MemoryImages(train.images, labels[train_idx], mean, std),  # the same images, not augmented
        val=split(val_idx),
        test=split(test_idx),
        class_names=[str(d) for d in range(10)],
        train_labels=labels[train_idx],
        true_labels=labels[train_idx],
        channels=1,
        instance_features=lambda: images[train_idx].flatten(1).numpy(),
    )

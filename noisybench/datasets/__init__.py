"""Dataset registry and the splits every dataset builds.

A dataset is a function ``build(config) -> DataSplits`` registered with
``@register_dataset(name)``. Each split yields ``(image, label, index)``; the training
split's labels are the noisy ones, and the true labels (where known) are kept beside them
for metrics only.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from noisybench.errors import ConfigError
from noisybench.noise import NoiseSpec, apply_noise, parse_noise


@dataclass
class DataSplits:
    """Train (with train and eval transforms), val and test sets of one dataset."""

    train: Dataset
    train_eval: Dataset
    val: Dataset | None
    test: Dataset
    class_names: list[str]
    train_labels: np.ndarray
    true_labels: np.ndarray | None = None
    channels: int = 3
    instance_features: Callable[[], np.ndarray] | None = None
    noise: NoiseSpec = field(default_factory=lambda: NoiseSpec("none", 0.0))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    build: Callable[[dict[str, Any]], DataSplits]
    description: str
    defaults: dict[str, Any]


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, description: str = "", defaults: dict[str, Any] | None = None):
    """Register ``build(config) -> DataSplits``; ``defaults`` override the core config defaults."""

    def decorator(build: Callable[[dict[str, Any]], DataSplits]):
        DATASETS[name] = DatasetInfo(name, build, description, defaults or {})
        return build

    return decorator


def get_dataset(name: str) -> DatasetInfo:
    _load_builtin()
    if name not in DATASETS:
        hint = difflib.get_close_matches(name, DATASETS, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"unknown dataset '{name}'{suggestion}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def list_datasets() -> list[DatasetInfo]:
    _load_builtin()
    return [DATASETS[k] for k in sorted(DATASETS)]


def _load_builtin() -> None:
    from noisybench.datasets import digits  # noqa: F401  (registers itself)


class RelabelledDataset(Dataset):
    """A dataset whose items carry the given labels instead of their own."""

    def __init__(self, base: Dataset, labels: np.ndarray):
        self.base = base
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, _, index = self.base[i]
        return image, self.labels[i], index


def build_dataset(config: dict[str, Any]) -> DataSplits:
    """Build the configured dataset and apply its synthetic noise (seeded by ``seed``)."""
    splits = get_dataset(config["dataset"]).build(config)
    spec = parse_noise(config["noise"])
    if not spec.synthetic:
        return splits
    if splits.true_labels is not None and not np.array_equal(splits.true_labels, splits.train_labels):
        raise ConfigError(
            f"noise='{config['noise']}': dataset '{config['dataset']}' already has noisy labels; "
            "synthetic noise applies to clean training labels only"
        )
    features = splits.instance_features() if spec.type == "instance" and splits.instance_features else None
    clean = splits.train_labels
    noisy = apply_noise(clean, splits.num_classes, spec, seed=config["seed"], features=features)
    splits.train = RelabelledDataset(splits.train, noisy)
    splits.train_eval = RelabelledDataset(splits.train_eval, noisy)
    splits.train_labels = noisy
    splits.true_labels = clean
    splits.noise = spec
    return splits

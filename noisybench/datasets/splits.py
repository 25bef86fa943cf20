"""What every dataset module builds with: ``DataSplits`` (a dataset's splits and what is
known of them), ``register_dataset``, the wrappers that relabel or subset a split, where a
split's items lie on disk, and ``data_identity``, the hash of the splits as read.

Imported by each dataset module (``datasets/*.py``) and, through ``noisybench.datasets``,
by the rest of the core; it imports no dataset module, so the registry can import them all.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from noisybench.identity import canonical
from noisybench.noise import NoiseSpec

UNKNOWN = -1


@dataclass
class DataSplits:
    """Train (with train and eval transforms), val and test sets of one dataset, and what is known of them.

    ``true_labels`` holds -1 where the true label is unknown. ``noise_flags`` (1 wrong,
    0 right, -1 unknown) is for datasets that know a label is wrong without knowing the
    right one (Food-101N's verification); elsewhere it follows from ``true_labels``.
    ``trusted`` are training indices whose noisy label a human verified as right; ``clean``
    is a separately labelled clean set (train transforms).

    Images are uint8 (0-255) or float (0-1) tensors that the model normalises on its device
    with ``normalization`` (found on the training set's ``normalization`` attribute when not
    given); a dataset whose transforms end in normalised floats leaves it None.
    """

    train: Dataset
    train_eval: Dataset
    val: Dataset | None
    test: Dataset
    class_names: list[str]
    train_labels: np.ndarray
    true_labels: np.ndarray | None = None
    noise_flags: np.ndarray | None = None
    trusted: np.ndarray | None = None
    clean: Dataset | None = None
    channels: int = 3
    instance_features: Callable[[], np.ndarray] | None = None
    noise: NoiseSpec = field(default_factory=lambda: NoiseSpec("none", 0.0))
    warnings: list[str] = field(default_factory=list)
    heldout: Dataset | None = None  # data.cv_folds: the held-out fold (eval transforms), scored at the end
    heldout_index: np.ndarray | None = None  # its samples' positions in the whole training set
    identity: str = ""  # a hash of the data as read (data_identity), part of the fingerprint
    normalization: tuple | None = None  # (mean, std) the model applies; None: items are model-ready floats
    extra_tests: dict[str, Dataset] = field(default_factory=dict)  # further test sets by name (extra_tests.py)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def named_splits(self) -> dict[str, Dataset]:
        """Every split that holds data, by name: train, val, test, clean, then the further test sets."""
        found = {name: getattr(self, name) for name in ("train", "val", "test", "clean")}
        return {name: dataset for name, dataset in {**found, **self.extra_tests}.items() if dataset is not None}

    def is_noisy(self) -> np.ndarray | None:
        """Per training sample: 1 label wrong, 0 right, -1 unknown (None if nothing is known)."""
        if self.noise_flags is not None:
            return self.noise_flags
        if self.true_labels is None:
            return None
        flags = (self.train_labels != self.true_labels).astype(np.int8)
        flags[self.true_labels == UNKNOWN] = UNKNOWN
        return flags


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


def labels_of(dataset: Dataset) -> np.ndarray:
    """The labels a dataset's items carry, without loading images."""
    return np.asarray(dataset.labels)


def fetch_items(dataset: Dataset, positions: list[int]) -> list:
    """Items ``positions`` of ``dataset``: a whole batch at once where it can (in-memory images
    transform batches, ``__getitems__``), else item by item."""
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(positions)
    return [dataset[i] for i in positions]


class RelabelledDataset(Dataset):
    """A dataset whose items carry the given labels instead of their own."""

    def __init__(self, base: Dataset, labels: np.ndarray):
        self.base = base
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, _, _ = self.base[i]
        return image, self.labels[i], i

    def __getitems__(self, indices):
        return [(image, self.labels[i], i) for (image, _, _), i in zip(fetch_items(self.base, indices), indices)]


class IndexedSubset(Dataset):
    """Items ``indices`` of ``base``, renumbered 0..n-1 so per-sample state stays dense."""

    def __init__(self, base: Dataset, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = torch.as_tensor(labels_of(base)[self.indices])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label, _ = self.base[int(self.indices[i])]
        return image, label, i

    def __getitems__(self, indices):
        items = fetch_items(self.base, [int(self.indices[i]) for i in indices])
        return [(image, label, i) for (image, label, _), i in zip(items, indices)]


def find_normalization(dataset: Dataset | None) -> tuple | None:
    """The (mean, std) a dataset, under any stack of wrappers, declares for its images."""
    while dataset is not None:
        if getattr(dataset, "normalization", None) is not None:
            return dataset.normalization
        dataset = getattr(dataset, "base", None)
    return None


def image_files(dataset: Dataset):
    """The ImageFiles under a stack of wrappers, or None for in-memory data."""
    found = file_positions(dataset)
    return None if found is None else found[0]


def file_positions(dataset: Dataset):
    """(the ImageFiles under a stack of wrappers, the position there of each item of
    ``dataset``), or None for in-memory data. An ``IndexedSubset`` (a held-out clean slice)
    keeps only some of the files, so its items are not the files' first rows."""
    from noisybench.datasets.images import ImageFiles

    positions = np.arange(len(dataset)) if dataset is not None else None
    while not isinstance(dataset, ImageFiles):
        if isinstance(dataset, IndexedSubset):
            positions = dataset.indices[positions]
        dataset = getattr(dataset, "base", None)
        if dataset is None:
            return None
    return dataset, positions


def image_paths(dataset: Dataset) -> np.ndarray | None:
    """The file path of each item of ``dataset``, in item order; None for in-memory data."""
    found = file_positions(dataset)
    return None if found is None else found[0].paths[found[1]]


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) positions, ``fraction`` held out per class as nearly as possible."""
    order = np.arange(len(labels))
    if fraction <= 0:
        return order, order[:0]
    try:
        kept, held = train_test_split(order, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError:  # too few samples per class to stratify: a plain random split
        kept, held = train_test_split(order, test_size=fraction, random_state=seed)
    return np.sort(kept), np.sort(held)



def _digest_strings(digest: Any, values: np.ndarray) -> None:
    """Hash path strings relative to their common folder, so a moved copy of the data keeps its identity."""
    strings = [str(v) for v in values]
    if strings:
        prefix = os.path.commonprefix([min(strings), max(strings)])
        cut = prefix.rfind("/") + 1
        digest.update("\n".join(s[cut:] for s in strings).encode())
    digest.update(b"\0")


def data_identity(name: str, splits: Any) -> str:
    """A hash of a dataset as read: class names and, for every split, its labels and the
    files' relative paths (image bytes are not read: a million files would take minutes).
    Taken before the setting and synthetic noise are applied, which the config records."""
    digest = hashlib.sha256(canonical([name, list(splits.class_names)]).encode())
    for array in (splits.train_labels, splits.true_labels, splits.noise_flags, splits.trusted):
        digest.update(b"-" if array is None else np.ascontiguousarray(array, dtype=np.int64).tobytes())
    if splits.extra_tests:  # further test splits (webvision's ILSVRC12 val): their names, then as the others
        digest.update(canonical(list(splits.extra_tests)).encode())
    for dataset in (splits.train, splits.val, splits.test, splits.clean, *splits.extra_tests.values()):
        if dataset is None:
            digest.update(b"-")
            continue
        digest.update(np.ascontiguousarray(labels_of(dataset), dtype=np.int64).tobytes())
        paths = image_paths(dataset)
        _digest_strings(digest, np.asarray([] if paths is None else paths))
    return digest.hexdigest()[:16]

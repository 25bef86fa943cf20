"""Dataset registry and the splits every dataset builds.

A dataset is a function ``build(config) -> DataSplits`` registered with
``@register_dataset(name)``. Each split yields ``(image, label, index)`` with ``index``
the position in that split. The training split's labels are the noisy ones; what is
known of the truth (true labels, or only whether a label is wrong) is kept beside them
for metrics only. ``build_dataset`` then applies the setting and synthetic noise.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from noisybench.errors import ConfigError, DataError
from noisybench.noise import NoiseSpec, apply_noise, parse_noise, similar_classes

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
    identity: str = ""  # a hash of the data as read (identity.data_identity), part of the fingerprint
    normalization: tuple | None = None  # (mean, std) the model applies; None: items are model-ready floats

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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
    from noisybench.datasets import cifar, clothing1m, digits, food101n, user  # noqa: F401  (they register)


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


def hold_out_clean(splits: DataSplits, fraction: float, seed: int) -> None:
    """Move ``fraction`` of the training set, with its true labels, into ``splits.clean``
    and out of training, as the meta-learning paper (§4.1) does for CIFAR."""
    kept, held = stratified_split(splits.true_labels, fraction, seed)
    splits.clean = IndexedSubset(RelabelledDataset(splits.train, splits.true_labels), held)
    keep_training(splits, kept)


def keep_training(splits: DataSplits, kept: np.ndarray) -> None:
    """Train on positions ``kept`` of the training set only, renumbered 0..n-1: both
    transforms' datasets, the labels, what is known of the truth, the trusted indices
    (mapped to their new positions) and the instance features."""
    total = len(splits.train_labels)
    splits.train = IndexedSubset(splits.train, kept)
    splits.train_eval = IndexedSubset(splits.train_eval, kept)
    splits.train_labels = splits.train_labels[kept]
    for name in ("true_labels", "noise_flags"):
        if getattr(splits, name) is not None:
            setattr(splits, name, getattr(splits, name)[kept])
    if splits.trusted is not None:
        position = np.full(total, -1)
        position[kept] = np.arange(len(kept))
        splits.trusted = position[splits.trusted][position[splits.trusted] >= 0]
    if splits.instance_features is not None:
        features = splits.instance_features
        splits.instance_features = lambda: features()[kept]


def fold_positions(labels: np.ndarray, fold: int, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) training positions for fold ``fold`` of ``folds``, stratified by the
    (noisy) label where every class has ``folds`` samples, shuffled with ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(labels)
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if counts[counts > 0].min() >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    kept, held = list(splitter.split(np.zeros(len(labels)), labels))[fold]
    return np.sort(kept), np.sort(held)


def hold_out_fold(splits: DataSplits, fold: int, folds: int, seed: int) -> None:
    """Train on all but one fold; keep that fold (eval transforms) to be scored out of sample."""
    kept, held = fold_positions(splits.train_labels, fold, folds, seed)
    splits.heldout = IndexedSubset(splits.train_eval, held)
    splits.heldout_index = held
    keep_training(splits, kept)


def simulate_verification(splits: DataSplits, fraction: float, seed: int) -> None:
    """Trusted subset where every true label is known: a random ``fraction`` of training samples
    is 'verified' and those whose noisy label is right become trusted, as Food-101N's rows do."""
    rng = np.random.default_rng(seed)
    count = int(round(fraction * len(splits.train_labels)))
    verified = rng.choice(len(splits.train_labels), size=count, replace=False)
    right = splits.train_labels[verified] == splits.true_labels[verified]
    splits.trusted = np.sort(verified[right])


def noisy_validation(splits: DataSplits, spec: NoiseSpec, seed: int, targets: np.ndarray | None) -> None:
    """``data.val_noise``: the validation labels get the training set's kind of noise, drawn
    apart from it (ELR's code keeps 5,000 noisy CIFAR images for validation): best_val then
    picks by accuracy on noisy labels, as a user without clean labels would."""
    if splits.val is None:
        raise ConfigError("data.val_noise=true: this dataset has no validation split (data.val_fraction=0?)")
    if spec.type == "instance":
        raise ConfigError("data.val_noise=true applies symmetric, uniform, asymmetric and mapped noise, not instance")
    labels = labels_of(splits.val)
    splits.val = RelabelledDataset(splits.val, apply_noise(labels, splits.num_classes, spec, seed=[seed, 1],
                                                           targets=targets))


def build_dataset(config: dict[str, Any]) -> DataSplits:
    """Build the configured dataset, then apply the setting and the synthetic noise (seeded by ``seed``).

    Where every true label is known (synthetic noise, CIFAR-N), the ``clean`` setting holds
    out ``data.clean_fraction`` of the training set as the clean set, and the ``verify``
    setting simulates verification of that fraction.
    """
    from noisybench.identity import data_identity

    name = config["dataset"]
    data = config["data"]
    manifest = None
    if data["prepared"]:
        from noisybench.datasets.prepared import load_splits

        get_dataset(name)  # an unknown name fails as it would raw
        splits, manifest = load_splits(config)
    else:
        splits = get_dataset(name).build(config)
    if splits.num_classes < 2:
        raise DataError(f"{name}: one class ({', '.join(splits.class_names)}): there is nothing to classify; "
                        "a dataset needs at least two classes")
    splits.identity = data_identity(name, splits)
    if manifest is not None:
        from noisybench.datasets.prepared import prepared_identity

        if manifest["identity"] != splits.identity:
            raise DataError(f"data.prepared={data['prepared']}: its labels and items do not match its manifest's "
                            "identity (the folder was changed after preparing); prepare it again")
        splits.identity = prepared_identity(splits.identity, manifest)
    splits.normalization = splits.normalization or find_normalization(splits.train)
    spec = parse_noise(config["noise"])
    setting = config["setting"]
    if spec.type == "human" and splits.noise.type != "human":
        raise ConfigError(f"noise='{config['noise']}': human labels exist for cifar10 and cifar100 only, not '{name}'")
    if spec.synthetic:
        if splits.true_labels is None and splits.noise.type == "none":
            splits.true_labels = splits.train_labels.copy()  # the user's labels are taken as clean
        if splits.noise.type != "none" or not np.array_equal(splits.true_labels, splits.train_labels):
            raise ConfigError(
                f"noise='{config['noise']}': dataset '{name}' already has noisy labels; "
                "synthetic noise applies to clean training labels only"
            )
    fully_known = splits.true_labels is not None and bool((splits.true_labels != UNKNOWN).all())
    if setting == "clean" and splits.clean is None and fully_known:
        hold_out_clean(splits, data["clean_fraction"], data["split_seed"])
    if spec.synthetic:
        features = splits.instance_features() if spec.type == "instance" and splits.instance_features else None
        targets = similar_classes(name, splits.class_names) if spec.type == "mapped" else None
        noisy = apply_noise(splits.true_labels, splits.num_classes, spec, seed=config["seed"], features=features,
                            targets=targets)
        splits.train = RelabelledDataset(splits.train, noisy)
        splits.train_eval = RelabelledDataset(splits.train_eval, noisy)
        splits.train_labels = noisy
        splits.noise = spec
        if data["val_noise"]:
            noisy_validation(splits, spec, config["seed"], targets)
    if data["val_noise"] and not spec.synthetic:
        raise ConfigError(f"data.val_noise=true adds the run's synthetic noise to the validation labels; noise='{config['noise']}' is not synthetic")
    if setting == "verify" and splits.trusted is None and fully_known:
        simulate_verification(splits, data["clean_fraction"], data["split_seed"])
    if setting == "verify" and splits.trusted is None:
        raise ConfigError(f"setting=verify: dataset '{name}' has no verified subset and no true labels to simulate one")
    if setting == "clean" and splits.clean is None:
        raise ConfigError(f"setting=clean: dataset '{name}' has no clean set and no true labels to hold one out")
    if data["cv_folds"]:
        hold_out_fold(splits, data["cv_fold"], data["cv_folds"], data["split_seed"])
    return splits

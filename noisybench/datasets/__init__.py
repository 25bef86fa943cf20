"""Dataset registry and the splits every dataset builds.

A dataset is a function ``build(config) -> DataSplits`` registered with
``@register_dataset(name)`` (both in splits.py, which dataset modules import; this package
imports the built-in dataset modules on the first lookup). Each split yields ``(image,
label, index)`` with ``index`` the position in that split. The training split's labels are
the noisy ones; what is known of the truth (true labels, or only whether a label is wrong)
is kept beside them for metrics only. ``build_dataset`` then applies the setting and
synthetic noise. Called by the loop (engine.py), ``noisybench prepare``, ``datacheck`` and
the command line's ``datasets``.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from noisybench.datasets.splits import (  # noqa: F401  (the package's names for the rest of noisybench)
    DATASETS,
    UNKNOWN,
    DatasetInfo,
    DataSplits,
    IndexedSubset,
    RelabelledDataset,
    data_identity,
    fetch_items,
    file_positions,
    find_normalization,
    image_files,
    image_paths,
    labels_of,
    register_dataset,
    stratified_split,
)
from noisybench.errors import ConfigError, DataError
from noisybench.noise import apply_noise, parse_noise, similar_classes

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
    from noisybench.datasets import animal10n, idx, redimagenet, webvision  # noqa: F401  (they register)


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

    if folds > len(labels):
        raise ConfigError(f"data.cv_folds={folds}: more folds than the {len(labels)} training samples")
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


def build_dataset(config: dict[str, Any]) -> DataSplits:
    """Build the configured dataset, then apply the setting and the synthetic noise (seeded by ``seed``).

    Where every true label is known (synthetic noise, CIFAR-N), the ``clean`` setting holds
    out ``data.clean_fraction`` of the training set as the clean set, and the ``verify``
    setting simulates verification of that fraction.
    """
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
    if spec.type == "real" and (splits.noise.type != "real" or splits.noise.rate != spec.rate):
        raise ConfigError(f"noise='{config['noise']}': real:P chooses a noise level of a dataset that publishes several "
                          f"(redimagenet), not of '{name}'")
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
    if setting == "verify" and splits.trusted is None and fully_known:
        simulate_verification(splits, data["clean_fraction"], data["split_seed"])
    if setting == "verify" and splits.trusted is None:
        raise ConfigError(f"setting=verify: dataset '{name}' has no verified subset and no true labels to simulate one")
    if setting == "clean" and splits.clean is None:
        raise ConfigError(f"setting=clean: dataset '{name}' has no clean set and no true labels to hold one out")
    if data["cv_folds"]:
        hold_out_fold(splits, data["cv_fold"], data["cv_folds"], data["split_seed"])
    return splits

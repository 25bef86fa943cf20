"""Data loaders: worker settings, the optional per-epoch class-balanced subset, and keyed
augmentation: a training loader's sampler yields (stream, index) pairs and ``KeyedDataset``
fetches each batch under its stream (datasets/draws.py), so every sample's random crop and
flip depend on (seed, epoch, index) alone, not on the worker or process that loads it.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from noisybench.datasets import draws, fetch_items, image_files


def loader_options(config: dict[str, Any], dataset: Dataset, cuda: bool, processes: int) -> dict[str, Any]:
    """Workers, prefetching, pinned memory and persistent workers.

    ``data.num_workers: null`` means no workers for in-memory data (they only add
    overhead) and, for image files, this machine's CPU cores shared out over its
    processes. Pinned memory defaults to on with a GPU (copies to it are then asynchronous).
    """
    data = config["data"]
    files = image_files(dataset)
    workers = data["num_workers"]
    if workers is None:
        workers = 0 if files is None else max(1, (os.cpu_count() or 1) // processes)
    pin = cuda if data["pin_memory"] is None else bool(data["pin_memory"])
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if files is not None and files.decoder == "device":  # JPEG bytes stay a list for the device decoder
        from noisybench.datasets.devicedecode import collate

        options["collate_fn"] = collate
    if workers > 0:
        options["persistent_workers"] = bool(data["persistent_workers"])
        options["prefetch_factor"] = data["prefetch_factor"]
        if processes > 1:
            # Several processes run the collective backend's threads: a worker forked from such a
            # process can stall for ever on a lock one of them held; forkserver workers start clean.
            options["multiprocessing_context"] = "forkserver"
    return options


class KeyedDataset(Dataset):
    """What a keyed loader reads: items by (stream, index) keys, each batch fetched under its
    stream from ``base``, whose items keep their own (image, label, index) form."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        items: list = [None] * len(keys)
        for key in dict.fromkeys(k for k, _ in keys):  # one stream per batch, in practice
            at = [n for n, (k, _) in enumerate(keys) if k == key]
            with draws.drawing(key):
                for n, item in zip(at, fetch_items(self.base, [keys[n][1] for n in at])):
                    items[n] = item
        return items


class EpochShuffle(Sampler[tuple[int, int]]):
    """Each epoch a permutation seeded by seed + epoch (the order Accelerate's seedable
    sampler gives), keyed by the epoch's stream."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        key = draws.stream(draws.TRAIN, self.seed, self.epoch, 0)
        return ((key, i) for i in order.tolist())


class BalancedEpochSampler(Sampler[tuple[int, int]]):
    """Each epoch, ``total // K`` random samples of each class (all of a smaller class), shuffled.

    As DivideMix draws 32k class-balanced Clothing1M images per epoch. The draw depends on
    (seed, epoch) only, so every process draws the same and a resumed run draws as before.
    """

    def __init__(self, labels: np.ndarray, total: int, seed: int):
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.per_class = max(1, total // len(self.by_class))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(min(len(members), self.per_class) for members in self.by_class)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        key = draws.stream(draws.TRAIN, self.seed, self.epoch, 0)
        return ((key, i) for i in self.draw(self.epoch).tolist())

    def draw(self, epoch: int) -> np.ndarray:
        """The samples of ``epoch``, in the order they are trained."""
        rng = np.random.default_rng([self.seed, epoch])
        chosen = np.concatenate(
            [rng.permutation(members)[: self.per_class] for members in self.by_class]
        )
        return rng.permutation(chosen)


def epoch_subset(config: dict[str, Any], labels: np.ndarray, epoch: int) -> np.ndarray | None:
    """The training samples of ``epoch`` under ``data.epoch_subset`` (sorted), as the train
    loader draws them; None without a subset (every sample trains)."""
    total = config["data"]["epoch_subset"]
    return np.sort(BalancedEpochSampler(labels, total, config["seed"]).draw(epoch)) if total else None


def train_loader(config: dict[str, Any], dataset: Dataset, labels: np.ndarray, options: dict[str, Any]) -> DataLoader:
    """Shuffled by (seed, epoch), or the epoch's class-balanced subset; keyed augmentation.
    Its own generator: starting an iteration draws a worker seed, which from the global
    generator would make the run's random stream depend on the worker count."""
    subset = config["data"]["epoch_subset"]
    return shuffled_loader(config, dataset, options, BalancedEpochSampler(labels, subset, config["seed"]) if subset
                           else None)


def shuffled_loader(config: dict[str, Any], dataset: Dataset, options: dict[str, Any],
                    sampler: Sampler | None = None) -> DataLoader:
    """Shuffled by (seed, epoch) (or by ``sampler``), with keyed augmentation: the training
    loader, and the clean set's fine-tuning epochs (numbered after the training epochs)."""
    return DataLoader(KeyedDataset(dataset), batch_size=config["batch_size"],
                      sampler=sampler or EpochShuffle(len(dataset), config["seed"]),
                      generator=torch.Generator().manual_seed(config["seed"]), **options)


class PassSampler(Sampler[tuple[int, int]]):
    """A method's loader (``Run.loader``): in order, or shuffled by its own generator,
    which ``reseed`` resets; pass p after a reseed with s is keyed by the stream (s, p)."""

    def __init__(self, size: int, shuffle: bool):
        self.size, self.shuffle = size, shuffle
        self.generator = torch.Generator()
        self.reseed(0)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self.seed, self.passes = seed, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        key = draws.stream(draws.LOADER, self.seed, self.passes)
        self.passes += 1
        return ((key, i) for i in order.tolist())


def method_loader(dataset: Dataset, batch_size: int, shuffle: bool, options: dict[str, Any]) -> DataLoader:
    """A loader a method keeps for the run (``Run.loader``), keyed as the training loader is."""
    return DataLoader(KeyedDataset(dataset), batch_size=batch_size, sampler=PassSampler(len(dataset), shuffle),
                      generator=torch.Generator(), **options)


def eval_loader(config: dict[str, Any], dataset: Dataset, options: dict[str, Any]) -> DataLoader:
    """In order, with a generator of its own: starting an iteration draws a worker seed, and
    from the global generator that draw would make training depend on the evaluation schedule."""
    return DataLoader(dataset, batch_size=config["eval_batch_size"], shuffle=False,
                      generator=torch.Generator().manual_seed(config["seed"]), **options)


def stop_workers(loader: DataLoader | None) -> None:
    """Stop a loader's persistent worker processes now, in this order: the stop message, then
    the join. Left to the garbage collector (a persistent iterator sits in a reference cycle),
    the collector may close the worker queues (their finalisers run before the iterator's
    ``__del__``) before the stop message is sent: each worker is then joined until torch's
    5-second time-out and killed, 10 s per loader of two workers at the end of every run."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
        loader._iterator = None


"""Data loaders: worker settings and the optional per-epoch class-balanced subset."""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from noisybench.datasets import image_files


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
    return options


class BalancedEpochSampler(Sampler[int]):
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

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chosen = np.concatenate(
            [rng.permutation(members)[: self.per_class] for members in self.by_class]
        )
        return iter(rng.permutation(chosen).tolist())


def train_loader(config: dict[str, Any], dataset: Dataset, labels: np.ndarray, options: dict[str, Any]) -> DataLoader:
    subset = config["data"]["epoch_subset"]
    sampler = BalancedEpochSampler(labels, subset, config["seed"]) if subset else None
    return DataLoader(
        dataset,
        batch_size=config["batch_size"],
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=False,
        **options,
    )


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


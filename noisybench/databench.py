"""``noisybench data bench``: how many images per second the training loader gives here.

Two measurements, so a user can size a machine before training: one worker's work per
image, taken apart in this process (read and decode, transform, collate), and the loader
the run would build (its workers, prefetching and pinning) iterated for N batches, with
the peak memory of a worker.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from noisybench.datasets import build_dataset, image_files
from noisybench.loaders import loader_options, train_loader


def worker_parts(files: Any, count: int, batch_size: int, seed: int) -> dict[str, float]:
    """Seconds per image of reading + decoding, transforming and collating, in this process."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
    decode = transform = 0.0
    items = []
    for i in chosen:
        start = time.perf_counter()
        image = files.load(int(i))
        middle = time.perf_counter()
        items.append((files.transform(image), files.labels[i], int(i)))
        decode += middle - start
        transform += time.perf_counter() - middle
    start = time.perf_counter()
    for first in range(0, len(items), batch_size):
        default_collate(items[first:first + batch_size])
    collate = time.perf_counter() - start
    return {"decode": decode / len(items), "transform": transform / len(items), "collate": collate / len(items)}


def loader_rate(config: dict[str, Any], splits: Any, options: dict[str, Any], batches: int) -> tuple[float, int]:
    """(images/s of the run's training loader over ``batches`` batches after one of warm-up,
    images counted)."""
    loader = train_loader(config, splits.train, splits.train_labels, options)
    images, start = 0, None
    for step, (batch, *_) in enumerate(loader):
        if step == 0:
            start = time.perf_counter()  # workers started and the first batches prefetched
            continue
        images += len(batch)
        if step == batches:
            break
    seconds = time.perf_counter() - start if start is not None else 0.0
    return (images / seconds if seconds else 0.0), images


def bench(config: dict[str, Any], batches: int = 50) -> str:
    given = config["threads"]
    torch.set_num_threads(given if isinstance(given, int) else 1)  # a loader worker runs one thread
    splits = build_dataset(config)
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    options = loader_options(config, splits.train, torch.cuda.is_available(), processes)
    workers = options["num_workers"]
    source = f"prepared data in {config['data']['prepared']}" if config["data"]["prepared"] else "raw files"
    lines = [f"dataset {config['dataset']} ({source}), {len(splits.train)} training images, batch "
             f"{config['batch_size']}, image size {config['data']['image_size']}, decoder {config['data']['decoder']}"]
    files = image_files(splits.train)
    if files is not None:
        parts = worker_parts(files, min(256, batches * config["batch_size"]), config["batch_size"], config["seed"])
        per_image = sum(parts.values())
        lines.append(f"one worker, per image: read+decode {1000 * parts['decode']:.2f} ms, transform "
                     f"{1000 * parts['transform']:.2f} ms, collate {1000 * parts['collate']:.2f} ms: "
                     f"{1 / per_image:.0f} images/s per worker")
    else:
        lines.append("images held in memory: batches are cropped and flipped in the main process, no decoding")
    rate, counted = loader_rate(config, splits, options, batches)
    worker_memory = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    lines.append(f"training loader ({workers} workers, prefetch {options.get('prefetch_factor', '-')}, pinned "
                 f"{options['pin_memory']}), {counted} images: {rate:.0f} images/s in this process"
                 + (f", {rate / workers:.0f} per worker" if workers else ""))
    if workers:
        lines.append(f"peak memory of a worker: {worker_memory / 2**20:.0f} MiB")
    if files is not None:
        lines.append(f"to feed a GPU step of R images/s: about R / {1 / per_image:.0f} workers per process "
                     "(data.num_workers), on as many free cores; data prepare speeds decoding up")
    return "\n".join(lines)

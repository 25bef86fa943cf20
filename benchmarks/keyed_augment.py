"""The cost of keyed augmentation (datasets/draws.py): each sample's crop and flip drawn from
(seed, epoch, index) instead of the loading process's torch generator.

Interleaved rounds, one process, on this machine: fetching a batch the way the training
loader does, under a stream (keyed), against the same fetch with no stream (torch's
generator, as before keying):
  - in memory: CIFAR-sized uint8 images, batch 128, pad-4 crop and flip (memory.py)
  - image files: 64 PNGs of 96x96 pixels, resized to 32 with pad-4 crop and flip, per file
    (images.py: torch's generator seeded per sample and put back)
  - a whole epoch of the training loader (0 workers) over the image files: keyed sampler and
    KeyedDataset against a plain shuffled DataLoader of the same dataset.
Run: python benchmarks/keyed_augment.py [rounds]   (results: benchmarks/results/keyed_augment_cpu.txt)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from common import hardware, interleaved, ratio_line
from noisybench.datasets.draws import TRAIN, drawing, stream
from noisybench.datasets.images import ImageFiles, photo_transform
from noisybench.datasets.memory import BatchAugment, MemoryImages
from noisybench.loaders import train_loader


def memory_images() -> MemoryImages:
    images = torch.randint(0, 256, (5000, 3, 32, 32), dtype=torch.uint8)
    return MemoryImages(images, np.zeros(5000, dtype=np.int64), [0.5] * 3, [0.25] * 3, BatchAugment(4, True))


def image_files(root: Path, count: int = 64) -> ImageFiles:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = root / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return ImageFiles(paths, np.arange(count) % 10, photo_transform(32, train=True), decoder="torchvision")


def fetch(dataset, indices, key=None):
    with drawing(key):
        return dataset.__getitems__(indices) if hasattr(dataset, "__getitems__") else [dataset[i] for i in indices]


def main(rounds: int) -> None:
    print(hardware())
    print(f"{rounds} interleaved rounds, one process, OMP threads {torch.get_num_threads()}")
    key = stream(TRAIN, 0, 1, 0)
    memory = memory_images()
    batch = list(range(0, 5000, 39))[:128]
    with tempfile.TemporaryDirectory() as tmp:
        files = image_files(Path(tmp))
        every = list(range(len(files)))
        config = {"data": {"epoch_subset": 0}, "seed": 0, "batch_size": 16}
        keyed_loader = train_loader(config, files, files.labels.numpy(), {"num_workers": 0})
        plain_loader = DataLoader(files, batch_size=16, shuffle=True)
        contenders = {
            "memory batch, torch rng": lambda: [fetch(memory, batch) for _ in range(50)],
            "memory batch, keyed": lambda: [fetch(memory, batch, key) for _ in range(50)],
            "64 files, torch rng": lambda: fetch(files, every),
            "64 files, keyed": lambda: fetch(files, every, key),
            "loader epoch, plain": lambda: list(plain_loader),
            "loader epoch, keyed": lambda: list(keyed_loader),
        }
        times = interleaved(contenders, rounds)
    for base, keyed in (("memory batch, torch rng", "memory batch, keyed"), ("64 files, torch rng", "64 files, keyed"),
                        ("loader epoch, plain", "loader epoch, keyed")):
        print(ratio_line(base, times[base], times[base], 1000, "ms"))
        print(ratio_line(keyed, times[keyed], times[base], 1000, "ms"))
    per_item = (statistics.median(times["64 files, keyed"]) - statistics.median(times["64 files, torch rng"])) / 64
    print(f"median extra per file: {1e6 * per_item:.0f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)

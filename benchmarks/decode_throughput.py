"""Images per second per loader worker for each decoder, with the paper's train transform.

Writes N synthetic JPEGs of a web-photo size (default 512×384, quality 90) to a temporary
folder, then decodes and transforms them in one process (= one worker):
  pil          PIL full decode, then resize 256 / crop 224 / flip
  pil-draft    PIL with libjpeg DCT scaling to the smallest size >= 256 (what `decoder=pil` does)
  torchvision  torchvision.io.decode_image (libjpeg-turbo) into a tensor, then the same transform
Run: python benchmarks/decode_throughput.py [N] [WIDTH] [HEIGHT] [ROUNDS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisybench.datasets.images import IMAGENET_MEAN, IMAGENET_STD, ImageFiles, paper_transforms


def write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # smooth random image: compresses like a photo, unlike white noise
        small = rng.integers(0, 256, size=(size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.BICUBIC)
        path = folder / f"{i}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def images_per_second(dataset: ImageFiles) -> float:
    for i in range(min(10, len(dataset))):
        dataset[i]  # warm up
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def main(count: int = 300, width: int = 512, height: int = 384, rounds: int = 5) -> None:
    torch.set_num_threads(1)  # a loader worker runs one thread
    transform = paper_transforms(True, IMAGENET_MEAN, IMAGENET_STD)
    labels = np.zeros(count, dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), count, (width, height))
        datasets = {
            "pil": ImageFiles(paths, labels, transform, "pil"),
            "pil-draft": ImageFiles(paths, labels, transform, "pil", draft_size=256),
            "torchvision": ImageFiles(paths, labels, transform, "torchvision"),
        }
        rates = dict.fromkeys(datasets, 0.0)
        for _ in range(rounds):  # interleaved rounds, best of each: fair on a busy machine
            for name, dataset in datasets.items():
                rates[name] = max(rates[name], images_per_second(dataset))
    print(f"{count} JPEGs {width}x{height}, train transform 256/224, one worker thread, best of {rounds} rounds")
    for name, rate in rates.items():
        print(f"{name:<12} {rate:8.1f} images/s per worker   ratio to pil {rate / rates['pil']:.2f}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))

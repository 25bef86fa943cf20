"""Images per second per loader worker, and a worker's memory: raw files, scaled decoding, prepared.

Writes N photo-like JPEGs (smooth random images, quality 90: they compress like photos,
unlike noise) at Clothing1M's common sizes, 800x600 and 500x500, prepares a copy with
`noisybench data prepare`'s encoder (short edge 256, quality 95), and times one worker
(one process, one thread) reading, decoding and transforming with the paper's training
pipeline (short edge 256, random 224 crop, flip, uint8 out) through the dataset classes a
run uses:

  raw float32 (before)  the pipeline before uint8 loading: full decode, normalised float32 out
  raw torchvision   data.decoder=torchvision: libjpeg-turbo full decode
  raw scaled        data.decoder=scaled (the default): DCT-scaled decode when 2x the target
  raw pil-draft     data.decoder=pil: PIL with draft scaling
  prepared          data.prepared: the 256-pixel copy, memory-mapped shards

Rounds are interleaved; min and median of the images/s are printed with ratios to the
float32 pipeline of before, then a worker process's resident memory after its imports and
its growth while decoding every image once.
Run: python benchmarks/decode_throughput.py [N] [ROUNDS]
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import hardware
from PIL import Image

from noisybench.datasets.images import ImageFiles, paper_transforms
from noisybench.datasets.prepared import PreparedImages, shard_paths
from noisybench.prepare import encode, write_shard

SIZES = ((800, 600), (500, 500))


def write_jpegs(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
        path = folder / f"{i}.jpg"
        Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return paths


def prepared_copy(folder: Path, paths: list[str]) -> PreparedImages:
    encoded = [encode(Path(p).read_bytes(), 256, "scaled", 10**9) for p in paths]
    write_shard(*shard_paths(folder, "train", 0), encoded, 0)
    return PreparedImages(paths, np.zeros(len(paths)), paper_transforms(True), "scaled", draft_size=256,
                          folder=folder, split="train", shard_size=len(paths))


def images_per_second(dataset: ImageFiles, order: np.ndarray) -> float:
    start = time.perf_counter()
    for i in order:
        dataset[int(i)]
    return len(order) / (time.perf_counter() - start)


WORKER_MEMORY = """
import resource, sys, numpy as np, torch
sys.path.insert(0, {bench!r})
from decode_throughput import datasets_for
torch.set_num_threads(1)
dataset = datasets_for({folder!r}, {paths!r})[{name!r}]
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for i in range(len(dataset)):
    dataset[i]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, baseline)
"""


def datasets_for(folder: str, paths: list[str]) -> dict[str, ImageFiles]:
    labels = np.zeros(len(paths))
    transform = paper_transforms(True)
    prepared = PreparedImages(paths, labels, transform, "scaled", draft_size=256, folder=Path(folder),
                              split="train", shard_size=len(paths))
    from torchvision.transforms import v2

    from noisybench.datasets.images import IMAGENET_MEAN, IMAGENET_STD

    before = v2.Compose([transform, v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return {
        "raw float32 (before)": ImageFiles(paths, labels, before, "torchvision", draft_size=256),
        "raw torchvision": ImageFiles(paths, labels, transform, "torchvision", draft_size=256),
        "raw scaled": ImageFiles(paths, labels, transform, "scaled", draft_size=256),
        "raw pil-draft": ImageFiles(paths, labels, transform, "pil", draft_size=256),
        "prepared": prepared,
    }


def main(count: int = 200, rounds: int = 5) -> None:
    torch.set_num_threads(1)  # a loader worker runs one thread
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), count)
        prepared_copy(Path(tmp) / "prepared", paths)
        datasets = datasets_for(str(Path(tmp) / "prepared"), paths)
        rng = np.random.default_rng(0)
        for dataset in datasets.values():
            images_per_second(dataset, np.arange(min(20, count)))  # warm up
        rates: dict[str, list[float]] = {name: [] for name in datasets}
        for _ in range(rounds):  # interleaved: every contender once per round, in a random order
            order = rng.permutation(count)
            for name, dataset in datasets.items():
                rates[name].append(images_per_second(dataset, order))
        memory = {}
        for name in datasets:
            script = WORKER_MEMORY.format(bench=str(Path(__file__).parent), folder=str(Path(tmp) / "prepared"),
                                          paths=paths, name=name)
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            peak, baseline = map(int, out.split())
            memory[name] = (peak / 1024, (peak - baseline) / 1024)
        raw_bytes = sum(Path(p).stat().st_size for p in paths) / count
        prepared_bytes = (Path(tmp) / "prepared" / "train" / "shard-000000.tar").stat().st_size / count
    print(hardware())
    print(f"{count} photo-like JPEGs, half 800x600 and half 500x500 (quality 90, {raw_bytes / 1024:.0f} KiB each on "
          f"average; prepared copy {prepared_bytes / 1024:.0f} KiB), training pipeline 256 / random 224 / flip to "
          f"uint8, one worker (one thread), {rounds} interleaved rounds in random item order")
    base_min, base_mid = min(rates["raw float32 (before)"]), statistics.median(rates["raw float32 (before)"])
    for name, values in rates.items():
        low, mid = min(values), statistics.median(values)
        peak, grown = memory[name]
        print(f"{name:<21} images/s per worker: min {low:7.1f}  median {mid:7.1f}   ratio to before: "
              f"min {low / base_min:4.2f}  median {mid / base_mid:4.2f}   worker RSS {peak:.0f} MiB after imports "
              f"(shared with the main process when forked), +{grown:.0f} MiB while decoding")
    best = statistics.median(rates["prepared"])
    print(f"projection: 16 workers (a 16-core GPU machine, one process) at the prepared median: "
          f"{16 * best:.0f} images/s; at before's: {16 * base_mid:.0f} images/s (decode and transform only: no "
          "collation, host-to-device copy or main-process work, and on these cores)")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))

"""Write a Fashion-MNIST subset as PNG files and a `csv` manifest, a real photo dataset for
noisybench that needs no download here: Debian's `dataset-fashion-mnist` package
(`apt-get install dataset-fashion-mnist`) puts the IDX files in /usr/share/datasets/fashion-mnist,
or pass the folder of the four `*-ubyte.gz` files from the Fashion-MNIST release.

    python benchmarks/fashion_mnist.py OUT [--source DIR] [--train 8000] [--test 2000] [--seed 0]

then `noisybench run --dataset csv data.root=OUT/manifest.csv ...`. The subset is drawn
per class (stratified) from the official train and test files; the manifest's `split`
column keeps the official test images as the test split.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
SOURCE = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian dims after a 4-byte magic."""
    data = gzip.open(path).read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def stratified(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    per_class = count // len(CLASSES)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                   for c in range(len(CLASSES))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = ["path,label,split"]
    for split, prefix, count in (("train", "train", args.train), ("test", "t10k", args.test)):
        images = read_idx(args.source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(args.source / f"{prefix}-labels-idx1-ubyte.gz")
        for i in stratified(labels, count, rng):
            name = f"{split}/{CLASSES[labels[i]]}/{i:05d}.png"
            (args.output / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(args.output / name)
            rows.append(f"{name},{CLASSES[labels[i]]},{split}")
    (args.output / "manifest.csv").write_text("\n".join(rows) + "\n")
    print(f"wrote {len(rows) - 1} images and {args.output / 'manifest.csv'}")


if __name__ == "__main__":
    main()

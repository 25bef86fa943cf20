"""The smallest input size at which ImageNet-pretrained features still serve a small-image
dataset: a linear probe (logistic regression on the frozen pooled features, eval mode) at
each size, against the same model with random weights as the floor.

    python benchmarks/finetune_input_size.py WEIGHTS.safetensors --manifest MANIFEST.csv \
        [--model efficientnet_lite0] [--sizes 32,48,64,96] [--output OUT.md]

Images go through what a run does with them: grey PNGs read as RGB (the grey channel three
times), resized to a square of the size (antialiased), the model's ImageNet normalisation.
The probe trains on the manifest's train split and scores its test split.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from common import hardware

from noisybench import records
from noisybench.outputs import NotOurs, check_output_file


def read_split(manifest: Path, split: str) -> tuple[list[Path], np.ndarray]:
    with open(manifest, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split]
    classes = sorted({r["label"] for r in rows})
    return [manifest.parent / r["path"] for r in rows], np.array([classes.index(r["label"]) for r in rows])


def images(paths: list[Path], size: int) -> torch.Tensor:
    """uint8 N×3×size×size, as the small-image pipeline gives them (grey as RGB, square resize)."""
    from PIL import Image
    from torchvision.transforms import v2

    resize = v2.Resize((size, size), antialias=True)
    return torch.stack([resize(torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1))
                        for p in paths])


def features(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    from noisybench.datasets.images import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for chunk in batch.split(250):
            x = (chunk.float() / 255 - mean) / std
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(out).numpy()


def probe(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    classifier = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(train), y_train)
    return float(classifier.score(scaler.transform(test), y_test))


def main() -> None:
    import timm

    from noisybench.models import load_pretrained

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--sizes", default="32,48,64,96")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    try:  # before minutes of features: never a FIFO, a folder or a run's own record
        output = check_output_file(args.output) if args.output else None
    except NotOurs as exc:
        parser.error(str(exc))
    torch.manual_seed(0)
    pretrained = timm.create_model(args.model, num_classes=10).eval()
    load_pretrained(pretrained, args.weights, 3)
    random = timm.create_model(args.model, num_classes=10).eval()
    (train_paths, y_train), (test_paths, y_test) = read_split(args.manifest, "train"), read_split(args.manifest, "test")
    lines = [f"# {hardware()}", f"# {args.model}, {len(y_train)} train / {len(y_test)} test images of {args.manifest}",
             "| input px | linear probe, pretrained | linear probe, random weights | feature seconds |", "|---|---|---|---|"]
    for size in map(int, args.sizes.split(",")):
        x_train, x_test = images(train_paths, size), images(test_paths, size)
        start = time.perf_counter()
        accuracy = probe(features(pretrained, x_train), y_train, features(pretrained, x_test), y_test)
        seconds = time.perf_counter() - start
        floor = probe(features(random, x_train), y_train, features(random, x_test), y_test)
        lines.append(f"| {size} | {100 * accuracy:.1f} | {100 * floor:.1f} | {seconds:.0f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if output:
        records.write_text(output, text)


if __name__ == "__main__":
    main()

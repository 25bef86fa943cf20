"""Epoch time of `noisybench run --method ce` against a bare PyTorch loop on the same work.

Both train the same model on the same data with the same batch size, loader and optimiser
for the same number of epochs; the bare loop has no hooks, no per-sample bookkeeping, no
evaluation and no checkpoints. The ratio is noisybench's overhead for a method that adds
nothing. Run: python benchmarks/engine_overhead.py [key=value ...] (e.g. model.name=resnet18).
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from common import hardware
from torch.utils.data import DataLoader

from noisybench.api import make_config
from noisybench.datasets import build_dataset
from noisybench.engine import train
from noisybench.loaders import loader_options
from noisybench.models import create_model


def bare_epoch_seconds(config: dict, epochs: int) -> float:
    torch.manual_seed(config["seed"])
    splits = build_dataset(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(config["model"], splits.num_classes, splits.channels, splits.normalization).to(device)
    opt = config["optimizer"]
    optimizer = torch.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"], weight_decay=opt["weight_decay"])
    options = loader_options(config, splits.train, device.type == "cuda", 1)  # the run's workers and pinning
    loader = DataLoader(splits.train, batch_size=config["batch_size"], shuffle=True, **options)
    amp = device.type == "cuda"
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, labels, _ in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits, _ = model(images)
                loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main(overrides: list[str]) -> None:
    config = make_config("ce", "digits", overrides=["progress=false", "epochs=5", *overrides])
    bare = bare_epoch_seconds(config, config["epochs"])
    with tempfile.TemporaryDirectory() as out:
        record = train(config, out)
    train_seconds = record["efficiency"]["phase_seconds"]["train"] / config["epochs"]
    epoch_seconds = sum(record["efficiency"]["epoch_seconds"]) / config["epochs"]
    print(f"# {hardware()}")
    print(f"# model {config['model']['name']}, {record['num_train']} train images, batch {config['batch_size']}; "
          f"means over all {config['epochs']} epochs of each (one run each, one after the other)")
    print(f"bare PyTorch epoch (train only):           {bare:.3f} s")
    print(f"noisybench train phase per epoch:          {train_seconds:.3f} s  ratio {train_seconds / bare:.2f}")
    print(f"noisybench whole epoch (+eval, checkpoint): {epoch_seconds:.3f} s  ratio {epoch_seconds / bare:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

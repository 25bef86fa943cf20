"""SMP's cost over cross-entropy, and the time to relabel a million samples.

1. Trains CE, SMP with ``eval_pass`` and SMP with ``train_pass`` on the same data and
   config in one process and prints the mean epoch time of each over the epochs in which
   SMP corrects labels, as a ratio to CE (targets: eval_pass ≤ 1.35, train_pass ≤ 1.10).
2. Times relabelling 1,000,000 samples of 2,048-d features against 14×8 prototypes
   (eq. 8-9) on the CPU and, where there is one, on the GPU. The features are one block
   of 125,000 random rows scored 8 times, which times the same arithmetic as a million
   distinct rows without holding 8 GB.

Run: python benchmarks/smp_overhead.py [key=value ...]   (default: digits, 8 epochs)
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import torch

from noisybench.api import make_config
from noisybench.engine import train
from noisybench_smp.prototypes import class_scores, relabel


def epoch_seconds(method: str, overrides: list[str]) -> tuple[float, dict]:
    config = make_config(method, "digits", overrides=["progress=false", "epochs=8", "noise=symmetric:0.4", *overrides])
    with tempfile.TemporaryDirectory() as out:
        record = train(config, out)
    start = config["smp"]["start_epoch"] if "smp" in config else make_config("smp", "digits")["smp"]["start_epoch"]
    seconds = record["efficiency"]["epoch_seconds"][start - 1:]
    return float(np.mean(seconds)), record


def relabel_seconds(device: str, rows: int = 1_000_000, block: int = 125_000, dim: int = 2048) -> float:
    generator = torch.Generator(device="cpu").manual_seed(0)
    features = torch.rand(block, dim, generator=generator).to(device)
    prototypes = [torch.rand(8, dim, generator=generator).to(device) for _ in range(14)]
    noisy = torch.randint(0, 14, (block,), generator=generator).to(device)
    if device == "cuda":
        features = features.half()
    relabel(class_scores(features[:1000], prototypes), noisy[:1000])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(rows // block):
        relabel(class_scores(features, prototypes), noisy)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(overrides: list[str]) -> None:
    ce, record = epoch_seconds("ce", overrides)
    print(f"device: {record['environment']['device']}, digits 40% symmetric, {record['num_train']} train images, "
          f"model {make_config('ce', 'digits', overrides=overrides)['model']['name']}")
    print(f"ce                 {ce:.3f} s/epoch")
    for source in ("eval_pass", "train_pass"):
        smp, record = epoch_seconds("smp", [*overrides, f"smp.feature_source={source}"])
        phases = {k: round(v, 2) for k, v in record["efficiency"]["phase_seconds"].items()}
        print(f"smp {source:<14} {smp:.3f} s/epoch  ratio {smp / ce:.2f}  phases {phases}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        print(f"relabel 1,000,000 x 2048-d against 14x8 prototypes on {device}: {relabel_seconds(device):.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

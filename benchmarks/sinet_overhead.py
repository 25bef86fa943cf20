"""SINet's cost over cross-entropy, and the time to weight a million samples.

1. Trains CE, SINet with ``eval_pass`` and SINet with ``train_pass`` on the same data and
   config in one process, ``rounds`` times in turn (so that a busy machine slows all
   alike), and prints the median over rounds of the mean epoch time over the epochs in
   which SINet rebuilds prototypes and weights, as a ratio to CE, with SINet's phases.
2. Times one refresh (initial prototypes, eq. 4, eq. 5, eq. 6) on 125,000 random 2,048-d
   features of 14 classes on the CPU and, where there is one, on the GPU, and scales it to
   a million samples (every step is linear in the number of samples).

Run: python benchmarks/sinet_overhead.py [key=value ...]   (default: digits, 8 epochs, 5 rounds)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from noisybench_sinet.weighting import (
    consistency,
    initial_prototypes,
    prototype_distances,
    sample_weights,
    visual_prototypes,
    visual_similarity,
)

from noisybench.api import make_config
from noisybench.engine import train

ROUNDS = 5


def epoch_seconds(method: str, overrides: list[str]) -> tuple[float, dict]:
    config = make_config(method, "digits", overrides=["progress=false", "epochs=8", "noise=symmetric:0.4", *overrides])
    with tempfile.TemporaryDirectory() as out:
        record = train(config, out)
    start = make_config("sinet", "digits", overrides=overrides)["sinet"]["start_epoch"]
    return float(np.mean(record["efficiency"]["epoch_seconds"][start - 1:])), record


def refresh_seconds(device: str, rows: int = 125_000, dim: int = 2048, classes: int = 14) -> float:
    generator = torch.Generator(device="cpu").manual_seed(0)
    features = torch.rand(rows, dim, generator=generator).to(device)
    if device == "cuda":
        features = features.half()
    labels = torch.randint(0, classes, (rows,), generator=generator).to(device)
    confidence = torch.rand(rows, generator=generator).to(device)
    semantic = torch.rand(classes, classes, generator=generator).to(device)

    def refresh(n: int) -> torch.Tensor:
        g, y = features[:n], labels[:n]
        initial = initial_prototypes(g, confidence[:n], y, classes, 50)
        p = consistency(semantic, visual_similarity(g, initial), y)
        prototypes = visual_prototypes(g, y, p, classes)
        own = prototype_distances(g, prototypes).gather(1, y[:, None])
        return sample_weights(own)

    refresh(1000)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    refresh(rows)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(overrides: list[str]) -> None:
    sources = ("eval_pass", "train_pass")
    times: dict[str, list[float]] = {"ce": [], **{source: [] for source in sources}}
    phases = {}
    for _ in range(ROUNDS):
        times["ce"].append(epoch_seconds("ce", overrides)[0])
        for source in sources:
            seconds, record = epoch_seconds("sinet", [*overrides, f"sinet.feature_source={source}"])
            times[source].append(seconds)
            phases[source] = {k: round(v, 2) for k, v in record["efficiency"]["phase_seconds"].items()}
    print(f"device: {record['environment']['device']}, digits 40% symmetric, {record['num_train']} train images, "
          f"model {make_config('ce', 'digits', overrides=overrides)['model']['name']}, {ROUNDS} rounds (median)")
    ce = statistics.median(times["ce"])
    print(f"ce                   {ce:.3f} s/epoch  (rounds: {', '.join(f'{t:.3f}' for t in times['ce'])})")
    for source in sources:
        seconds = statistics.median(times[source])
        print(f"sinet {source:<14} {seconds:.3f} s/epoch  (rounds: {', '.join(f'{t:.3f}' for t in times[source])})"
              f"  ratio {seconds / ce:.2f}  phases of the last round {phases[source]}")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        seconds = refresh_seconds(device)
        print(f"refresh 125,000 x 2048-d, 14 classes on {device}: {seconds:.2f} s (x8 = {8 * seconds:.1f} s per million)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""What every benchmark here shares: the hardware line, interleaved rounds, min/median ratios.

Shared machines swing 2–10× with load, so a benchmark never compares times taken at
different moments: each round runs every contender once, in turn, and a ratio is reported
over the rounds' minima and over their medians.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch


def hardware() -> str:
    """CPU model, cores, torch version and the GPU (if any), for the first line of a result."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each contender in each round; every round runs all of them in turn."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, work in contenders.items():
            sync()
            start = time.perf_counter()
            work()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_line(name: str, times: list[float], base: list[float], unit: float = 1.0, label: str = "s") -> str:
    """'name  min X s  median Y s  ratio min A  median B' against ``base`` of the same rounds."""
    low, mid = min(times), statistics.median(times)
    return (f"{name:<28} min {low * unit:8.3f} {label}  median {mid * unit:8.3f} {label}  "
            f"ratio min {low / min(base):5.2f}  median {mid / statistics.median(base):5.2f}")

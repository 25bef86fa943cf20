"""Seconds from launch: `noisybench methods`, and the quick-start run to its first batch and end.

Each round runs, in fresh interpreters, `noisybench methods` and the README's quick-start
training (`run --method ce --dataset digits noise=symmetric:0.4`), with torch's default
threads and with threads=1; the record's ``first_batch_seconds`` and ``startup_seconds``
count from the import of noisybench. Min and median over the rounds (targets: methods < 1 s,
first batch < 5 s on 2 idle cores).
Run: python benchmarks/startup.py [rounds=N]   (default 3)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import hardware

QUICK_START = ["run", "--method", "ce", "--dataset", "digits", "noise=symmetric:0.4", "progress=false"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "noisybench", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main(args: list[str]) -> None:
    rounds = int(next((a.split("=", 1)[1] for a in args if a.startswith("rounds=")), 3))
    rows: dict[str, list[float]] = {}
    for _ in range(rounds):
        rows.setdefault("noisybench methods, wall", []).append(timed(["methods"]))
        for threads in ("default", "1"):
            with tempfile.TemporaryDirectory() as out:
                extra = [] if threads == "default" else [f"threads={threads}"]
                wall = timed([*QUICK_START, "--output", out, *extra])
                efficiency = json.loads((Path(out) / "metrics.json").read_text())["efficiency"]
            rows.setdefault(f"quick-start (threads {threads}), first batch", []).append(efficiency["first_batch_seconds"])
            rows.setdefault(f"quick-start (threads {threads}), training", []).append(efficiency["total_seconds"])
            rows.setdefault(f"quick-start (threads {threads}), wall", []).append(wall)
    print(f"# {hardware()}")
    print(f"# {rounds} interleaved rounds, seconds from the import of noisybench; min and median")
    for name, values in rows.items():
        print(f"{name:<45} min {min(values):6.2f} s  median {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Wall time of a 4-run sweep (2 methods x 2 seeds) from the command line: one run after
another in one process, against ``--jobs 2`` (two submitit local jobs at a time, each a
process that imports torch anew), in interleaved rounds, each sweep into a fresh folder.

    OMP_NUM_THREADS=1 python benchmarks/sweep_wall.py --rounds 3 --epochs 10

The load average (1 min) is read before every sweep: on a shared machine it says how much
of the CPUs the sweeps had.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import hardware, interleaved, ratio_line


def sweep_command(output: Path, epochs: int, jobs: int) -> list[str]:
    return [sys.executable, "-m", "noisybench", "compare", "--methods", "ce,smp", "--dataset", "digits",
            "--seeds", "0,1", "--output", str(output), *(["--jobs", str(jobs)] if jobs > 1 else []),
            f"epochs={epochs}", "noise=symmetric:0.4", "progress=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="sweep_wall_"))
    loads: dict[str, list[float]] = {"sequential": [], "--jobs 2": []}
    count = {"n": 0}

    def contender(name: str, jobs: int):
        def work() -> None:
            count["n"] += 1
            loads[name].append(os.getloadavg()[0])
            done = subprocess.run(sweep_command(scratch / f"s{count['n']}", args.epochs, jobs),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return work

    try:
        times = interleaved({"sequential": contender("sequential", 1), "--jobs 2": contender("--jobs 2", 2)},
                            args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(hardware())
    print(f"digits, ce+smp x seeds 0,1, epochs={args.epochs}, noise=symmetric:0.4, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.rounds} interleaved rounds, wall seconds per sweep")
    for name, seconds in times.items():
        print(ratio_line(name, seconds, times["sequential"]) + f"  (each: {', '.join(f'{s:.0f}' for s in seconds)};"
              f" load avg before: {', '.join(f'{v:.1f}' for v in loads[name])}, median "
              f"{statistics.median(loads[name]):.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

"""The README's quick start on idle cores and beside CPU-bound neighbours, per thread policy.

A shared machine runs other jobs: torch's default thread pool then spins (OpenMP's busy
wait) and waits at every parallel region for a thread the scheduler has given to someone
else, so a few seconds of training can take minutes. This runs the quick-start command

    noisybench run --method ce --dataset digits noise=symmetric:0.4 --output DIR

as a fresh process under each policy, with the machine idle and with ``--neighbours``
CPU-bound processes running (pure-Python busy loops), in interleaved rounds (every round
runs every policy in both conditions), and reports wall time and the record's training
seconds, min and median, and each policy's busy/idle ratio.

    python benchmarks/busy_machine.py [--rounds 3] [--neighbours 2] [--policies a,b] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# policy name -> (extra environment, extra key=value overrides); "default" is what a user gets
POLICIES = {
    "default": ({}, []),
    "torch-default": ({"OMP_WAIT_POLICY": ""}, ["threads=null"]),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["threads=null"]),
    "threads1": ({"OMP_WAIT_POLICY": ""}, ["threads=1"]),
    "passive-threads1": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["threads=1"]),
}
QUICK_START = ["--method", "ce", "--dataset", "digits", "noise=symmetric:0.4"]
TIMEOUT = 600


def neighbours(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def quick_start(policy: str, folder: Path) -> tuple[float, float]:
    """(wall seconds of the whole command, the record's training seconds)."""
    extra_env, overrides = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    # An empty OMP_WAIT_POLICY keeps noisybench from setting PASSIVE and is ignored by OpenMP (which
    # warns once): the wait policy torch had before noisybench chose one.
    env.update(extra_env)
    out = folder / f"{policy}-{time.monotonic_ns()}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "noisybench", "run", *QUICK_START, "progress=false", *overrides,
                    "--output", str(out)], env=env, check=True, capture_output=True, timeout=TIMEOUT)
    wall = time.perf_counter() - start
    record = json.loads((out / "metrics.json").read_text())
    return wall, record["efficiency"]["total_seconds"]


def measure(policies: list[str], rounds: int, count: int) -> dict[str, dict[str, list[tuple[float, float]]]]:
    results = {c: {p: [] for p in policies} for c in ("idle", "busy")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for condition in ("idle", "busy"):
                spinning = neighbours(count) if condition == "busy" else []
                try:
                    for policy in policies:
                        results[condition][policy].append(quick_start(policy, Path(tmp)))
                        print(f"round {r + 1} {condition:<4} {policy:<18} wall {results[condition][policy][-1][0]:7.2f} s"
                              f"  training {results[condition][policy][-1][1]:7.2f} s", file=sys.stderr, flush=True)
                finally:
                    for p in spinning:
                        p.kill()
                        p.wait()
    return results


def summary(results: dict, policies: list[str], count: int) -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from common import hardware

    lines = [f"# {hardware()} (torch threads shown are this script's)",
             f"# quick start ({' '.join(QUICK_START)}), idle and beside {count} CPU-bound processes; "
             f"{len(next(iter(results['idle'].values())))} interleaved rounds; min / median seconds", ""]
    for policy in policies:
        row = []
        for condition in ("idle", "busy"):
            wall = [w for w, _ in results[condition][policy]]
            train = [t for _, t in results[condition][policy]]
            row.append(f"{condition} wall {min(wall):6.2f}/{statistics.median(wall):6.2f} "
                       f"train {min(train):6.2f}/{statistics.median(train):6.2f}")
        idle = [w for w, _ in results["idle"][policy]]
        busy = [w for w, _ in results["busy"][policy]]
        base = [w for w, _ in results["idle"]["torch-default"]] if "torch-default" in policies else idle
        row.append(f"busy/idle wall {min(busy) / min(idle):5.2f}/{statistics.median(busy) / statistics.median(idle):5.2f}")
        row.append(f"idle vs torch-default {min(idle) / min(base):5.2f}/{statistics.median(idle) / statistics.median(base):5.2f}")
        lines.append(f"{policy:<18} " + "  ".join(row))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=2)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--out", help="also write the summary to this file")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {sorted(POLICIES)}")
    text = summary(measure(policies, args.rounds, args.neighbours), policies, args.neighbours)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

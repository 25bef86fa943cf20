"""SMP's and SINet's cost over cross-entropy: epoch time in the epochs where they work.

Trains ce, smp (eval_pass and train_pass feature sources) and sinet (both sources) on the
same data and config in one process, all of them once per round, ``rounds`` rounds
(interleaved, so that a busy machine slows all alike). Per run: the mean epoch time over the
epochs from the method's start epoch on (smp corrects labels, sinet rebuilds its weights);
ce over the same epochs. Printed: min and median over the rounds and their ratios to ce
(targets: train_pass ≤ 1.05, eval_pass ≤ 1.25).
Run: python benchmarks/method_overhead.py [rounds=N] [key=value ...]   (default: digits, 8 epochs, 5 rounds)
"""

from __future__ import annotations

import statistics
import sys
import tempfile

from common import hardware, ratio_line

from noisybench.api import make_config
from noisybench.engine import train

START = 2  # smp.start_epoch and sinet.start_epoch for every run here
CONTENDERS = {
    "ce": ("ce", []),
    "smp eval_pass": ("smp", ["smp.feature_source=eval_pass"]),
    "smp train_pass": ("smp", ["smp.feature_source=train_pass"]),
    "sinet eval_pass": ("sinet", ["sinet.feature_source=eval_pass"]),
    "sinet train_pass": ("sinet", ["sinet.feature_source=train_pass"]),
}


def working_epoch_seconds(method: str, overrides: list[str]) -> tuple[float, dict]:
    start = [f"{method}.start_epoch={START}"] if method != "ce" else []
    config = make_config(method, "digits", overrides=["progress=false", "epochs=8", "noise=symmetric:0.4",
                                                      *start, *overrides])
    if method == "smp":
        config["smp"]["max_changed"] = None  # time every correction, kept or refused alike
    with tempfile.TemporaryDirectory() as out:
        record = train(config, out)
    return statistics.mean(record["efficiency"]["epoch_seconds"][START - 1:]), record


def main(args: list[str]) -> None:
    rounds = int(next((a.split("=", 1)[1] for a in args if a.startswith("rounds=")), 5))
    overrides = [a for a in args if not a.startswith("rounds=")]
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    phases: dict[str, dict] = {}
    for _ in range(rounds):
        for name, (method, extra) in CONTENDERS.items():
            seconds, record = working_epoch_seconds(method, [*extra, *overrides])
            times[name].append(seconds)
            phases[name] = {k: round(v, 2) for k, v in record["efficiency"]["phase_seconds"].items()}
    print(f"# {hardware()}")
    print(f"# digits 40% symmetric, {record['num_train']} train images, model {record['model']}, 8 epochs, "
          f"start epoch {START}; {rounds} interleaved rounds; mean epoch seconds from epoch {START} on")
    for name in CONTENDERS:
        print(ratio_line(name, times[name], times["ce"]) + f"  phases (last round) {phases[name]}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""SMP's and SINet's cost over cross-entropy: epoch time in the epochs where they work.

Trains ce, smp (eval_pass and train_pass feature sources) and sinet (both sources) on the
same data and config in one process, all of them once per round, ``rounds`` rounds
(interleaved, so that a busy machine slows all alike). Per run: the mean epoch time over the
epochs from the method's start epoch on (smp corrects labels, sinet rebuilds its weights);
ce over the same epochs. Printed: min and median over the rounds and their ratios to ce
(targets: train_pass ≤ 1.05, eval_pass ≤ 1.25).
Meta-Weight-Net needs a clean set: it runs in setting clean and is compared with ``ce clean``
(the same setting, no fine-tuning stage). Confident learning trains K fold runs in its first
epoch: its line is the epochs after that (its own training, ~ce's), and a second line gives
its whole run's seconds over ce's (K fold runs on (K − 1)/K of the data, plus one).
Run: python benchmarks/method_overhead.py [rounds=N] [dataset=NAME] [methods=ce,smp] [key=value ...]
(default: digits, 8 epochs, 5 rounds, every contender; ``methods`` keeps the contenders of
those methods, ce always; e.g. the Fashion-MNIST subset of ``fashion_mnist.py``:
``dataset=csv data.root=fm/manifest.csv methods=smp``)
"""

from __future__ import annotations

import statistics
import sys
import tempfile

from common import hardware, ratio_line

from noisybench.api import make_config
from noisybench.engine import train

START = 2  # smp.start_epoch and sinet.start_epoch for every run here
BASELINE = {"mwnet": "ce clean"}  # compared with ce in the same setting
CONTENDERS = {
    "ce": ("ce", []),
    "ce clean": ("ce", ["setting=clean", "finetune.epochs=0"]),
    "mwnet": ("mwnet", ["setting=clean"]),
    "cleanlab": ("cleanlab", []),
    "smp eval_pass": ("smp", ["smp.feature_source=eval_pass"]),
    "smp train_pass": ("smp", ["smp.feature_source=train_pass"]),
    "sinet eval_pass": ("sinet", ["sinet.feature_source=eval_pass"]),
    "sinet train_pass": ("sinet", ["sinet.feature_source=train_pass"]),
}
STARTS = ("smp", "sinet")  # the methods whose start_epoch is set to START


def working_epoch_seconds(method: str, dataset: str, overrides: list[str]) -> tuple[float, dict]:
    start = [f"{method}.start_epoch={START}"] if method in STARTS else []
    config = make_config(method, dataset, overrides=["progress=false", "epochs=8", "noise=symmetric:0.4",
                                                      *start, *overrides])
    if method == "smp":
        config["smp"]["max_changed"] = None  # time every correction, kept or refused alike
    with tempfile.TemporaryDirectory() as out:
        record = train(config, out)
    return statistics.mean(record["efficiency"]["epoch_seconds"][START - 1:]), record


def main(args: list[str]) -> None:
    own = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in ("rounds", "dataset", "methods"))
    rounds, dataset = int(own.get("rounds", 5)), own.get("dataset", "digits")
    methods = {"ce", *own.get("methods", ",".join(m for m, _ in CONTENDERS.values())).split(",")}
    contenders = {name: entry for name, entry in CONTENDERS.items() if entry[0] in methods}
    overrides = [a for a in args if a.split("=", 1)[0] not in own]
    if "mwnet" in methods:
        contenders.setdefault("ce clean", CONTENDERS["ce clean"])
    times: dict[str, list[float]] = {name: [] for name in contenders}
    totals: dict[str, list[float]] = {name: [] for name in contenders}
    phases: dict[str, dict] = {}
    for _ in range(rounds):
        for name, (method, extra) in contenders.items():
            seconds, record = working_epoch_seconds(method, dataset, [*extra, *overrides])
            times[name].append(seconds)
            totals[name].append(record["efficiency"]["total_seconds"])
            phases[name] = {k: round(v, 2) for k, v in record["efficiency"]["phase_seconds"].items()}
    print(f"# {hardware()}")
    print(f"# {dataset} 40% symmetric, {record['num_train']} train images, model {record['model']}, 8 epochs, "
          f"start epoch {START}; {rounds} interleaved rounds; mean epoch seconds from epoch {START} on")
    for name in contenders:
        base = BASELINE.get(name, "ce")
        label = name if base == "ce" else f"{name} / {base}"
        print(ratio_line(label, times[name], times[base]) + f"  phases (last round) {phases[name]}")
    if "cleanlab" in contenders:
        print(ratio_line("cleanlab whole run", totals["cleanlab"], totals["ce"], label="s/run") +
              "  (K fold runs + 1: the fold stage is the 'folds' phase)")


if __name__ == "__main__":
    main(sys.argv[1:])

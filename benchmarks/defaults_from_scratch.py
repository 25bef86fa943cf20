"""Every method with the documented defaults only, trained from scratch, on `digits` and on a
real photo dataset given as a `csv` manifest (e.g. the Fashion-MNIST subset that
benchmarks/fashion_mnist.py writes): 40% symmetric and asymmetric noise, seeds 0-2.

    python benchmarks/fashion_mnist.py /tmp/fashion --train 4000 --test 2000
    python benchmarks/defaults_from_scratch.py OUT --manifest /tmp/fashion/manifest.csv

Runs go to OUT/<dataset>/<noise>/<method>-<setting>/seed<k> (finished ones are skipped,
so it can be resumed); the table printed at the end (and written to OUT/table.md) has,
per dataset, noise and method, the mean ± sample std over seeds of test accuracy, final
training-label accuracy (corrected labels where a method corrects them, else the noisy
ones) and the changed fraction, beside the noisy labels' accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from noisybench.api import run
from noisybench.records import write_text

RUNS = [("ce", "noisy"), ("smp", "noisy"), ("sinet", "noisy"), ("ce", "clean"), ("lsw", "clean")]
SIDE_INFO = Path(__file__).parent / "side_info" / "fashion_mnist.yaml"


def cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}" if len(values) > 1 else f"{100 * values[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--manifest", type=Path, help="a csv manifest of a real dataset (benchmarks/fashion_mnist.py)")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    datasets = [("digits", [])]
    if args.manifest:
        datasets.append(("csv", [f"data.root={args.manifest}", f"sinet.side_info={SIDE_INFO}"]))
    lines = ["| dataset | noise | method (setting) | test acc | label acc: noisy → final | changed |", "|---|---|---|---|---|---|"]
    for dataset, extra in datasets:
        for noise in ("symmetric:0.4", "asymmetric:0.4"):
            for method, setting in RUNS:
                records = []
                for seed in map(int, args.seeds.split(",")):
                    folder = args.output / dataset / noise / f"{method}-{setting}" / f"seed{seed}"
                    overrides = [f"noise={noise}", f"seed={seed}", f"setting={setting}", "progress=false"]
                    overrides += [o for o in extra if not o.startswith("sinet.") or method == "sinet"]
                    records.append(run(method, dataset, folder, overrides, resume=True))
                    print(f"{dataset} {noise} {method}-{setting} seed{seed}: test {records[-1]['test']['accuracy']:.4f}",
                          flush=True)
                labels = [r["labels"] for r in records]
                final = [lab["corrected_accuracy"] if lab["corrected_accuracy"] is not None else lab["noisy_accuracy"]
                         for lab in labels]
                lines.append(f"| {dataset} | {noise} | {method} ({setting}) | {cell([r['test']['accuracy'] for r in records])} "
                             f"| {cell([lab['noisy_accuracy'] for lab in labels])} → {cell(final)} "
                             f"| {cell([lab['changed_fraction'] for lab in labels])} |")
    table = "\n".join(lines) + "\n"
    write_text(args.output / "table.md", table)
    print(table)


if __name__ == "__main__":
    main()

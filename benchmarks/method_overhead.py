"""Every installed method's cost over cross-entropy: epoch time in the epochs where it works.

Trains ce and every installed method (the entry points: a method a plugin adds is picked up
with no change here), each with its defaults and the named variants of ``VARIANTS``, on
the same data and config in one process, all of them once per round, ``rounds`` rounds
(interleaved, so that a busy machine slows all alike). Per run: the mean epoch time from
epoch ``START`` on (smp and sinet start correcting and reweighting there); ce over the same
epochs. Printed: min and median over the rounds and their ratios to ce (targets: a
loss-family method ≤ 1.05; smp and sinet train_pass ≤ 1.05, eval_pass ≤ 1.25). A method
the setting cannot run (lsw needs setting=clean: ``lsw_overhead.py`` times it) is listed
as skipped, with the reason.
Run: python benchmarks/method_overhead.py [rounds=N] [dataset=NAME] [methods=ce,smp] [label=NAME] [csv=FILE]
[key=value ...]
(default: digits, 8 epochs, 5 rounds, every method; ``methods`` keeps those methods and
their variants, ce always; ``csv`` writes the ratios to FILE under ``label`` (default: the
dataset's name), replacing that label's earlier rows of the same contenders, for
``catalog.py``; e.g. the Fashion-MNIST subset of ``fashion_mnist.py``:
``dataset=csv data.root=fm/manifest.csv label=fashion-mnist methods=gce,sce``)
"""

from __future__ import annotations

import csv
import datetime
import statistics
import sys
import tempfile
from pathlib import Path

from common import hardware, ratio_line

from noisybench.api import make_config
from noisybench.engine import train
from noisybench.errors import ConfigError
from noisybench.plugins import installed_methods

START = 2  # smp.start_epoch and sinet.start_epoch for every run here; the first epoch timed
EPOCHS = 8
STARTS = {"smp": [f"smp.start_epoch={START}", "smp.max_changed=null"], "sinet": [f"sinet.start_epoch={START}"]}
VARIANTS = {  # method -> named contenders beyond its defaults (each keeps the method's STARTS)
    "smp": {"smp eval_pass": ["smp.feature_source=eval_pass"], "smp train_pass": ["smp.feature_source=train_pass"]},
    "sinet": {"sinet eval_pass": ["sinet.feature_source=eval_pass"],
              "sinet train_pass": ["sinet.feature_source=train_pass"]},
    "gce": {"gce truncated": ["gce.truncated=true"], "gce truncated eval_pass": ["gce.truncated=true",
                                                                               "gce.prune_source=eval_pass"]},
    "apl": {"apl mae": ["apl.passive=mae"]},
    "bootstrap": {"bootstrap hard": ["bootstrap.kind=hard"]},
    "peer": {"peer dataset": ["peer.draw=dataset"]},
    "forward": {"forward known T": ["forward.transition=known"]},  # the defaults estimate T once (one eval pass)
    "backward": {"backward known T": ["backward.transition=known"]},
}
COLUMNS = ["label", "contender", "method", "train_images", "epochs", "rounds", "min_seconds", "median_seconds",
           "ratio_min", "ratio_median", "hardware", "date"]


def contenders(methods: set[str]) -> dict[str, tuple[str, list[str]]]:
    """name -> (method, overrides): ce first, then each installed method and its variants."""
    chosen = {"ce": ("ce", [])}
    for method in installed_methods():
        if method == "ce" or method not in methods:
            continue
        defaults = {} if method in ("smp", "sinet") else {method: []}  # their defaults are one of their variants
        for name, extra in (defaults | VARIANTS.get(method, {})).items():
            chosen[name] = (method, [*STARTS.get(method, []), *extra])
    return chosen


def working_epoch_seconds(method: str, dataset: str, overrides: list[str]) -> tuple[float, dict]:
    config = make_config(method, dataset, overrides=["progress=false", f"epochs={EPOCHS}", "noise=symmetric:0.4",
                                                      *overrides])
    with tempfile.TemporaryDirectory() as out:
        record = train(config, out)
    return statistics.mean(record["efficiency"]["epoch_seconds"][START - 1:]), record


def write_rows(path: Path, label: str, rows: list[dict]) -> None:
    """Replace ``label``'s rows of these contenders in ``path`` (kept sorted), keep the rest."""
    kept = []
    if path.is_file():
        with open(path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if (r["label"], r["contender"]) not in
                    {(label, row["contender"]) for row in rows}]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(kept + rows, key=lambda r: (r["label"], r["contender"] != "ce", r["contender"])))


def main(args: list[str]) -> None:
    own = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in ("rounds", "dataset", "methods", "label", "csv"))
    rounds, dataset = int(own.get("rounds", 5)), own.get("dataset", "digits")
    methods = {"ce", *own.get("methods", ",".join(installed_methods())).split(",")}
    overrides = [a for a in args if a.split("=", 1)[0] not in own]
    runs = contenders(methods)
    times: dict[str, list[float]] = {name: [] for name in runs}
    phases, skipped, record = {}, {}, None
    for _ in range(rounds):
        for name, (method, extra) in runs.items():
            if name in skipped:
                continue
            try:
                seconds, record_of = working_epoch_seconds(method, dataset, [*extra, *overrides])
            except ConfigError as exc:  # e.g. a method that needs a clean set under the default setting
                skipped[name] = str(exc)
                continue
            record = record_of if name == "ce" else record
            times[name].append(seconds)
            phases[name] = {k: round(v, 2) for k, v in record_of["efficiency"]["phase_seconds"].items()}
    print(f"# {hardware()}")
    print(f"# {dataset} 40% symmetric, {record['num_train']} train images, model {record['model']}, {EPOCHS} epochs, "
          f"start epoch {START}; {rounds} interleaved rounds; mean epoch seconds from epoch {START} on")
    rows = []
    for name, (method, _) in runs.items():
        if name in skipped:
            print(f"{name:<28} skipped: {skipped[name]}")
            continue
        print(ratio_line(name, times[name], times["ce"]) + f"  phases (last round) {phases[name]}")
        rows.append({"label": own.get("label", dataset), "contender": name, "method": method,
                     "train_images": record["num_train"], "epochs": EPOCHS, "rounds": rounds,
                     "min_seconds": f"{min(times[name]):.4f}",
                     "median_seconds": f"{statistics.median(times[name]):.4f}",
                     "ratio_min": f"{min(times[name]) / min(times['ce']):.3f}",
                     "ratio_median": f"{statistics.median(times[name]) / statistics.median(times['ce']):.3f}",
                     "hardware": hardware(), "date": datetime.date.today().isoformat()})
    if "csv" in own:
        write_rows(Path(own["csv"]), own.get("label", dataset), rows)


if __name__ == "__main__":
    main(sys.argv[1:])

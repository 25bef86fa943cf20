"""What each choice made to follow the authors' code changes, measured on one dataset.

    python benchmarks/fidelity_effects.py [--manifest DATA_ROOT/manifest.csv] [--seeds 0,1] [--epochs 15]
                                          [--subset N] [--only NAME,...]

on ``digits``, or with --manifest on the ``csv`` dataset there (e.g. the Fashion-MNIST subset of
benchmarks/fashion_mnist.py), from scratch, 40% noise, setting noisy; each contender is one
run per seed:
  - noise: ce under uniform:0.4 (36% wrong) and symmetric:0.4 (40% wrong)
  - coteaching: schedule code (the authors' main.py) and algorithm (Algorithm 1); for each
    run, the test accuracy of the main network alone (the record), of the peer alone and
    of the two networks' mean softmax (from the final checkpoint)
  - dividemix under data.epoch_subset (half the training set per epoch): the co-divide on
    the epoch's subset (as the authors' Clothing1M code) and on the whole training set
  - elr: best_val picked on clean and on noisy (data.val_noise) validation labels
Prints one line per contender and seed, and the mean of each contender.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from noisybench.api import run

QUIET = ["progress=false", "data.num_workers=0", "threads=1"]


def accuracies_of_both_networks(folder: Path) -> dict[str, float]:
    """Test accuracy of the main network, the peer and their mean softmax, final weights."""
    from noisybench.evaluate import trained_run

    with trained_run(folder) as trainer:
        main, peer = trainer.run.model.eval(), trainer.run.networks["peer"].model.eval()
        correct = {"main": 0, "peer": 0, "mean": 0}
        total = 0
        with torch.no_grad():
            for images, labels, _ in trainer.test_loader:
                a, b = main(images)[0].softmax(1), peer(images)[0].softmax(1)
                for name, p in (("main", a), ("peer", b), ("mean", a + b)):
                    correct[name] += int((p.argmax(1) == labels).sum())
                total += len(labels)
    return {name: count / total for name, count in correct.items()}


@contextmanager
def whole_set_co_divide():
    """DivideMix's co-divide over the whole training set, as before it followed the subset."""
    import noisybench.loaders as loaders

    original = loaders.epoch_subset
    loaders.epoch_subset = lambda config, labels, epoch: None
    try:
        yield
    finally:
        loaders.epoch_subset = original


def contenders(epochs: int, subset: int) -> dict[str, tuple[str, list[str], object]]:
    return {
        "ce uniform:0.4": ("ce", ["noise=uniform:0.4"], None),
        "ce symmetric:0.4": ("ce", ["noise=symmetric:0.4"], None),
        "coteaching schedule=code": ("coteaching", ["noise=symmetric:0.4", "coteaching.schedule=code"], None),
        "coteaching schedule=algorithm": ("coteaching", ["noise=symmetric:0.4", "coteaching.schedule=algorithm"], None),
        "dividemix co-divide subset": ("dividemix", ["noise=symmetric:0.4", f"data.epoch_subset={subset}",
                                                     "dividemix.warm_up=5"], None),
        "dividemix co-divide whole set": ("dividemix", ["noise=symmetric:0.4", f"data.epoch_subset={subset}",
                                                        "dividemix.warm_up=5"], whole_set_co_divide),
        "elr clean val": ("elr", ["noise=uniform:0.4"], None),
        "elr noisy val": ("elr", ["noise=uniform:0.4", "data.val_noise=true"], None),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", default="")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--subset", type=int, default=540)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = contenders(args.epochs, args.subset)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if any(k.startswith(o) for o in args.only.split(","))}
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (method, overrides, context) in chosen.items():
            for seed in seeds:
                folder = Path(tmp) / name.replace(" ", "_") / str(seed)
                with context() if context else nullcontext():
                    data = [f"data.root={args.manifest}"] if args.manifest else []
                    record = run(method, "csv" if args.manifest else "digits", folder,
                                 [*QUIET, *data, f"seed={seed}", f"epochs={args.epochs}", *overrides])
                found = {"test": record["test"]["accuracy"], "best_val": record["best_val"]["test_accuracy"],
                         "realised": record["noise"].get("realised_rate") or float("nan")}
                if method == "coteaching":
                    found.update(accuracies_of_both_networks(folder))
                results.setdefault(name, []).append(found)
                print(name, seed, {k: round(100 * v, 2) for k, v in found.items()}, flush=True)
    print("\nmeans over seeds", seeds, f"({args.epochs} epochs, test accuracy %)")
    for name, rows in results.items():
        print(f"{name:<32}", {k: round(100 * float(np.mean([r[k] for r in rows])), 2) for k in rows[0]})


if __name__ == "__main__":
    main()

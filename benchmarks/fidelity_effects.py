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
  - coteaching (schedule code) with each label flipped independently with probability R
    (their noisify) and on the training images without random crops (their input)
  - coteaching under Adam (lr 0.001, as their main.py): the mean loss of the kept samples
    (noisybench) and that mean divided once more by the number kept (their loss_coteaching)
  - elr with noisy validation and a cosine schedule: one descent over the run (noisybench)
    and warm restarts every 10 epochs to 0.001 (their config_cifar10.json); for both, best_val
    by the first epoch of the best val accuracy (noisybench) and by the last (their >=)
  - dividemix under data.epoch_subset: beside best_val, their Clothing1M report (each
    network's weights of its own best val epoch, tested by the sum of the two's logits:
    eval.each_network=true), and their Clothing1M MixMatch (dividemix.mix=labelled)
  - coteaching under Adam with their lr and beta1 plan (scaled to the run's epochs), on
    401 of 469 batches an epoch (their MNIST epochs: data.epoch_subset=922 of digits' 1,078),
    and ranked by numpy's unstable argsort (theirs)
Prints one line per contender and seed, and the mean of each contender.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from noisybench import hookimpl
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
            for images, labels, _ in torch.utils.data.DataLoader(trainer.splits.test, batch_size=512):
                a, b = main(images)[0].softmax(1), peer(images)[0].softmax(1)
                for name, p in (("main", a), ("peer", b), ("mean", a + b)):
                    correct[name] += int((p.argmax(1) == labels).sum())
                total += len(labels)
    return {name: count / total for name, count in correct.items()}


@contextmanager
def whole_set_co_divide(overrides: list[str]):
    """DivideMix's co-divide over the whole training set, as before it followed the subset."""
    import noisybench.loaders as loaders

    original = loaders.epoch_subset
    loaders.epoch_subset = lambda config, labels, epoch: None
    try:
        yield []
    finally:
        loaders.epoch_subset = original


@contextmanager
def loss_over_num_kept(overrides: list[str]):
    """Co-teaching's step as their loss_coteaching: mean kept loss / num_remember, done by
    dividing both networks' gradients by the number the step keeps."""
    import noisybench_coteaching as coteaching

    original, kept = coteaching.cross_select, {}

    def counting(loss_main, loss_peer, keep):
        chosen = original(loss_main, loss_peer, keep)
        kept["n"] = len(chosen[0])
        return chosen

    class DivideGradients:
        hooked = False

        @hookimpl
        def noisybench_epoch_start(self, run, epoch):
            if not self.hooked:
                for model in (run.model, run.networks["peer"].model):
                    for parameter in model.parameters():
                        parameter.register_hook(lambda grad: grad / kept["n"])
                self.hooked = True

    coteaching.cross_select = counting
    try:
        yield [DivideGradients()]
    finally:
        coteaching.cross_select = original


@contextmanager
def warm_restarts(overrides: list[str]):
    """Their CIFAR-10 schedule: CosineAnnealingWarmRestarts(T_0=10, eta_min=0.001), by epoch."""
    import noisybench.engine as engine

    original = engine.make_scheduler
    engine.make_scheduler = lambda config, optimizer: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=10, eta_min=0.001)
    try:
        yield []
    finally:
        engine.make_scheduler = original


@contextmanager
def binomial_noise(overrides: list[str]):
    """Their noisify: each label moves independently with probability R (a transition
    matrix), not exactly round(R·n_c) per class."""
    import noisybench.noise as noise

    original = noise._per_class_flips
    noise._per_class_flips = lambda labels, rate, rng: np.flatnonzero(rng.random(len(labels)) < rate)
    try:
        yield []
    finally:
        noise._per_class_flips = original


@contextmanager
def plain_images(overrides: list[str]):
    """Their Co-teaching input: the training images as they are (no random crop)."""
    import noisybench.engine as engine

    original = engine.build_dataset

    def without_augmentation(config):
        splits = original(config)
        images = splits.train
        while not hasattr(images, "augment"):  # under RelabelledDataset and the like
            images = images.base
        images.augment = None
        return splits

    engine.build_dataset = without_augmentation
    try:
        yield []
    finally:
        engine.build_dataset = original


@contextmanager
def authors_lr_plan(overrides: list[str], epochs: int):
    """Their main.py's plan scaled to ``epochs`` (theirs: 200, decay from epoch 80): Adam's lr
    constant, then falling linearly to 1/10 of it with beta1 0.1, for both networks."""
    last, start = epochs + 1, round(0.4 * (epochs + 1))

    class Plan:
        @hookimpl
        def noisybench_epoch_start(self, run, epoch):
            lr = 0.001 * (1.0 if epoch < start else (last - epoch) / (last - start))
            for optimizer in (run.optimizer, run.networks["peer"].optimizer):
                for group in optimizer.param_groups:
                    group["lr"], group["betas"] = lr, (0.9 if epoch < start else 0.1, 0.999)

    yield [Plan()]


@contextmanager
def unstable_sort(overrides: list[str]):
    """Their ranking: numpy's default (unstable) argsort of the losses."""
    import noisybench_coteaching as coteaching

    original = coteaching.cross_select

    def numpy_order(loss_main, loss_peer, keep):
        count = max(1, int(keep * len(loss_main)))
        ranks = [torch.as_tensor(np.argsort(loss.detach().cpu().numpy()))[:count] for loss in (loss_peer, loss_main)]
        return ranks[0].to(loss_main.device), ranks[1].to(loss_main.device)

    coteaching.cross_select = numpy_order
    try:
        yield []
    finally:
        coteaching.cross_select = original


def contenders(epochs: int, subset: int) -> dict[str, tuple[str, list[str], object]]:
    adam = ["noise=symmetric:0.4", "optimizer.name=adamw", "optimizer.lr=0.001", "optimizer.weight_decay=0"]
    elr_cosine = ["noise=uniform:0.4", "data.val_noise=true", "lr_schedule.name=cosine", "eval.test=every"]
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
        "coteaching adam mean loss": ("coteaching", adam, None),
        "coteaching adam loss/num_kept": ("coteaching", adam, loss_over_num_kept),
        "coteaching binomial noise": ("coteaching", ["noise=symmetric:0.4"], binomial_noise),
        "coteaching plain images": ("coteaching", ["noise=symmetric:0.4"], plain_images),
        "elr cosine one descent": ("elr", elr_cosine, None),
        "elr cosine warm restarts": ("elr", elr_cosine, warm_restarts),
        "dividemix authors' report": ("dividemix", ["noise=symmetric:0.4", f"data.epoch_subset={subset}",
                                                    "dividemix.warm_up=5", "eval.each_network=true"], None),
        "dividemix mix labelled": ("dividemix", ["noise=symmetric:0.4", f"data.epoch_subset={subset}",
                                                 "dividemix.warm_up=5", "dividemix.mix=labelled"], None),
        "coteaching adam lr plan": ("coteaching", adam, lambda o: authors_lr_plan(o, epochs)),
        "coteaching 401 of 469 batches": ("coteaching", ["noise=symmetric:0.4", "data.epoch_subset=922"], None),
        "coteaching unstable sort": ("coteaching", ["noise=symmetric:0.4"], unstable_sort),
    }


def measured(method: str, record: dict, folder: Path, plugins: list) -> dict[str, float]:
    """The run's test accuracies: last epoch, best_val, and what a contender adds."""
    found = {"test": record["test"]["accuracy"], "best_val": record["best_val"]["test_accuracy"],
             "realised": record["noise"].get("realised_rate") or float("nan")}
    if method == "coteaching":
        found.update(accuracies_of_both_networks(folder))
    if record["evaluation"]["test"] == "every":  # their `>=`: the last epoch of the best val accuracy
        val = [h["val_accuracy"] for h in record["history"]]
        found["best_val_last_of_ties"] = record["history"][len(val) - 1 - val[::-1].index(max(val))]["test_accuracy"]
    if "best_val_each_network" in record:
        found["authors_report"] = record["best_val_each_network"]["test_accuracy"]
    return found


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
                data = [f"data.root={args.manifest}"] if args.manifest else []
                options = [*QUIET, *data, f"seed={seed}", f"epochs={args.epochs}", *overrides]
                with context(options) if context else nullcontext([]) as plugins:
                    record = run(method, "csv" if args.manifest else "digits", folder, options, plugins=plugins)
                found = measured(method, record, folder, plugins)
                results.setdefault(name, []).append(found)
                print(name, seed, {k: round(100 * v, 2) for k, v in found.items()}, flush=True)
    print("\nmeans over seeds", seeds, f"({args.epochs} epochs, test accuracy %)")
    for name, rows in results.items():
        print(f"{name:<32}", {k: round(100 * float(np.mean([r[k] for r in rows])), 2) for k in rows[0]})


if __name__ == "__main__":
    main()

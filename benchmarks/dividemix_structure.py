"""DivideMix on digits: noisybench's loop structure against the authors' Clothing1M structure.

    OMP_NUM_THREADS=1 python benchmarks/dividemix_structure.py [--seeds 0,1,2] [--variants A,B1,B2,B3,B,B+S]

A small standalone loop built from noisybench's pieces (the dataset, its noise and keyed
augmentation from ``build_dataset``, the model from ``create_model``, the optimiser and step
schedule of digits' defaults, the plugin's ``mixmatch_step`` and pure functions), trained on
``digits``, setting noisy, 40% symmetric noise, ``data.epoch_subset=540``, warm_up 5, 15 epochs,
λ_u 25 (noisybench's default; mix=all). The variants (docs/methods/dividemix.md, "Deviations"):
  A   noisybench: both networks score and train on the epoch's one class-balanced subset, each
      core batch split by the peer's w, warm-up on the epoch's subset in batches of 64
  B1  A, but each network scores its own freshly drawn subset and its peer trains on it
      (their ``loader.run('eval_train')`` per network)
  B2  A, but a full labelled batch and a full unlabelled batch from two loaders, an epoch one
      pass over the labelled part, the unlabelled loader restarted when exhausted
  B3  A, but their warm-up loader: 2x the epoch's images (class-balanced, drawn per network)
      in batches of 2x the batch size
  B   B1 + B2 + B3
  B+S B, and the networks trained one after the other each epoch (their train(net1) then
      train(net2)) instead of step by step in turn
Each variant's test accuracy after the last epoch, by the mean of both networks' softmax (as
noisybench evaluates), per seed and the mean over seeds.
"""

from __future__ import annotations

import argparse
import itertools
import time
import zlib
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch.utils.data import default_collate

from noisybench.api import make_config
from noisybench.datasets import build_dataset, fetch_items
from noisybench.datasets.draws import TRAIN, drawing, stream
from noisybench.loaders import BalancedEpochSampler
from noisybench.models import create_model
from noisybench.optim import follow_schedule, make_optimizer, make_scheduler, step_scheduler
from noisybench_dividemix import mixmatch_step
from noisybench_dividemix.mixmatch import clean_probability

SUBSET, WARM_UP, EPOCHS = 540, 5, 15
ALL = {"own_subsets", "two_loaders", "warmup_loader"}
VARIANTS = {"A": set(), "B1": {"own_subsets"}, "B2": {"two_loaders"}, "B3": {"warmup_loader"}, "B": ALL,
            "B+S": ALL | {"one_after_other"}}


def build(seed: int) -> SimpleNamespace:
    """The run as noisybench's engine builds it: seed, data (noise applied), main network,
    the peer from its own seed (as ``run.add_network``), SGD and the step schedule."""
    config = make_config("dividemix", "digits", overrides=[
        "noise=symmetric:0.4", f"data.epoch_subset={SUBSET}", f"dividemix.warm_up={WARM_UP}", f"epochs={EPOCHS}",
        f"seed={seed}", "progress=false", "threads=1", "data.num_workers=0"])
    set_seed(seed)
    splits = build_dataset(config)
    args = (config["model"], splits.num_classes, splits.channels, splits.normalization)
    main = create_model(*args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(b"peer"))
        peer = create_model(*args)
    nets = [main, peer]
    opts = [make_optimizer(config["optimizer"], net) for net in nets]
    run = SimpleNamespace(options=config["dividemix"], num_classes=splits.num_classes, epoch=0,
                          accelerator=SimpleNamespace(backward=lambda loss: loss.backward()))
    return SimpleNamespace(config=config, seed=seed, splits=splits, labels=np.asarray(splits.train_labels),
                           nets=nets, opts=opts, scheduler=make_scheduler(config, opts[0]), run=run,
                           w=torch.ones(2, len(splits.train)), batch=config["batch_size"])


def draw(s, total: int, epoch: int, which: int) -> np.ndarray:
    """A class-balanced draw, in training order: ``which`` 0 is noisybench's epoch subset
    (``BalancedEpochSampler``), others are further independent draws of the same kind."""
    return BalancedEpochSampler(s.labels, total, s.seed if which == 0 else s.seed * 1_000 + 500 + which).draw(epoch)


def fetch(s, indices, epoch: int, view: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images (keyed augmentation of view ``view``, as the loader and ``run.views``) and noisy labels."""
    with drawing(stream(TRAIN, s.seed, epoch, view)):
        images, labels, _ = default_collate(fetch_items(s.splits.train, [int(i) for i in indices]))
    return images, labels


def chunks(order, size: int) -> list:
    return [order[i:i + size] for i in range(0, len(order), size)]


def warm_up_epoch(s, epoch: int, flags: set) -> None:
    """Cross-entropy on each network: the epoch's subset in batches of 64, or (theirs) a draw
    of 2x the images per network in batches of 2x the batch size."""
    for k, (net, opt) in enumerate(zip(s.nets, s.opts)):
        if "warmup_loader" in flags:
            batches = chunks(draw(s, 2 * SUBSET, epoch, 1 + k), 2 * s.batch)
        else:
            batches = chunks(draw(s, SUBSET, epoch, 0), s.batch)
        for idx in batches:
            images, labels = fetch(s, idx, epoch, 0)
            loss = F.cross_entropy(net(images)[0].float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def co_divide(s, epoch: int, flags: set) -> list[np.ndarray]:
    """Each network's w on the subset it scores (one subset for both, or its own fresh draw);
    returns, per network, the population it trains on: the one its peer scored."""
    scored = [draw(s, SUBSET, epoch, (1 + k) if "own_subsets" in flags else 0) for k in range(2)]
    for k, net in enumerate(s.nets):
        chosen = np.sort(scored[k])
        images, _, _ = default_collate(fetch_items(s.splits.train_eval, chosen.tolist()))
        torch.empty((), dtype=torch.int64).random_()  # run.predict's DataLoader draws its seed: A = the plugin bit for bit
        net.eval()
        with torch.no_grad():
            loss = F.cross_entropy(net(images)[0].float(), torch.as_tensor(s.labels[chosen]), reduction="none")
        net.train()
        s.w[k, chosen] = torch.as_tensor(clean_probability(loss.numpy(), s.seed * 100_003 + epoch), dtype=torch.float32)
    return [scored[1], scored[0]]


def batches_of(s, population: np.ndarray, w_peer: torch.Tensor, epoch: int, k: int, flags: set):
    """Index batches for one network: the population's core batches (split by w in the step), or
    (theirs) a labelled batch joined by an unlabelled batch, the labelled part's pass an epoch."""
    if "two_loaders" not in flags:
        yield from chunks(population, s.batch)
        return
    rng = np.random.default_rng([s.seed, epoch, k, 7])
    clean = (w_peer[population] > s.run.options["p_threshold"]).numpy()
    labelled, unlabelled = population[clean], population[~clean]
    pending: list = []
    for x in chunks(rng.permutation(labelled), s.batch):
        if not pending and len(unlabelled):
            pending = chunks(rng.permutation(unlabelled), s.batch)
        yield np.concatenate([x, pending.pop(0)]) if pending else x


def mixmatch_epoch(s, populations: list[np.ndarray], epoch: int, flags: set) -> None:
    """The plugin's MixMatch step for each network on its peer's division, in turn step by step
    (noisybench) or one network's whole pass after the other's (their train(net1), train(net2))."""
    s.run.epoch = epoch

    def network_pass(k: int):
        net, other, w_peer = s.nets[k], s.nets[1 - k], s.w[1 - k]
        for idx in batches_of(s, populations[k], w_peer, epoch, k, flags):
            (view0, labels), (view1, _) = fetch(s, idx, epoch, 0), fetch(s, idx, epoch, 1)
            mixmatch_step(s.run, net, other, s.opts[k], [view0, view1], labels, w_peer[torch.as_tensor(idx)])
            yield

    passes = [network_pass(0), network_pass(1)]
    steps = itertools.chain(*passes) if "one_after_other" in flags else itertools.chain(*itertools.zip_longest(*passes))
    for _ in steps:
        pass


def test_accuracy(s) -> float:
    """Test accuracy (%) by the mean of both networks' softmax (noisybench's evaluation)."""
    images, labels, _ = default_collate(fetch_items(s.splits.test, list(range(len(s.splits.test)))))
    with torch.no_grad():
        for net in s.nets:
            net.eval()
        mean = sum(torch.softmax(net(images)[0].float(), dim=1) for net in s.nets) / 2
    return 100.0 * float((mean.argmax(1) == labels).float().mean())


def train(seed: int, flags: set) -> float:
    s = build(seed)
    for epoch in range(1, EPOCHS + 1):
        follow_schedule(s.opts[1], s.opts[0])
        for net in s.nets:
            net.train()
        if epoch <= WARM_UP:
            warm_up_epoch(s, epoch, flags)
        else:
            mixmatch_epoch(s, co_divide(s, epoch, flags), epoch, flags)
        step_scheduler(s.scheduler, epoch)
    return test_accuracy(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    torch.set_num_threads(1)
    print(f"digits, setting noisy, symmetric:0.4, epoch_subset={SUBSET}, warm_up={WARM_UP}, epochs={EPOCHS}, "
          "lambda_u=25, mix=all; test accuracy (%) of the last epoch by both networks' mean softmax")
    means = {}
    for name in args.variants.split(","):
        accs = []
        for seed in seeds:
            start = time.perf_counter()
            accs.append(train(seed, VARIANTS[name]))
            print(f"{name:4} seed {seed}: {accs[-1]:.2f}  ({time.perf_counter() - start:.0f} s)", flush=True)
        means[name] = accs
    print("variant  " + "  ".join(f"seed {s}" for s in seeds) + "   mean")
    for name, accs in means.items():
        print(f"{name:7}  " + "  ".join(f"{a:6.2f}" for a in accs) + f"  {np.mean(accs):6.2f}")


if __name__ == "__main__":
    main()

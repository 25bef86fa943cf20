"""The measured effect of each deviation of coteachingplus, jocor, cores and pes from their authors' code.

Trains each method's documented defaults and, beside them, the variant that undoes or swaps
one rule: an option where the plugin has one (``coteachingplus.loss_on=logits``,
``cores.lr_scaling=false``, ``pes.refined_layers=trained`` ...), else a patch or an extra plugin
defined here that puts the authors' rule back for the measurement only (the authors' loss
divided once more by the count kept; PES's batches of confident samples only). PES is measured twice: at its defaults and at pes_lr=1e-3, where its
refinement trains on these small sets. Printed: test accuracy of the last epoch and at the best val epoch and the
detection AUC, mean ± std over the seeds, and the mean difference to the variant it departs from.
Run: python benchmarks/selection_variants.py [dataset=NAME] [seeds=0,1] [methods=...] [skip=TEXT,...] [key=value ...]
(``skip`` leaves out the variants whose name contains one of the texts)
(e.g. ``dataset=csv data.root=/work/data/fmnist/manifest.csv``; default digits, 40% symmetric noise).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from common import hardware
from torch.utils.data import DataLoader, Subset

from noisybench import hookimpl
from noisybench.api import run
from noisybench.run import StepOutput


@contextmanager
def divided_by_count_kept():
    """Co-teaching+'s loss.py returns mean(CE of the kept) / num_remember; patch that in."""
    import noisybench_coteachingplus as plus

    original_plus, original_co = plus.disagreement_choice, plus.coteaching_choice

    def kept(keep, m):
        return max(1, int(keep * m))

    def plus_choice(logits_main, logits_peer, labels, keep, on_probabilities, fallback):
        choice = original_plus(logits_main, logits_peer, labels, keep, on_probabilities, fallback)
        pool = int((logits_main.argmax(1) != logits_peer.argmax(1)).sum())
        if pool == 0:  # their no-disagreement branch divides by the batch size only
            return choice
        count = kept(keep, pool)
        return choice._replace(loss_main=choice.loss_main / count, loss_peer=choice.loss_peer / count)

    def co_choice(logits_main, logits_peer, labels, keep):
        choice = original_co(logits_main, logits_peer, labels, keep)
        count = kept(keep, len(labels))
        return choice._replace(loss_main=choice.loss_main / count, loss_peer=choice.loss_peer / count)

    plus.disagreement_choice, plus.coteaching_choice = plus_choice, co_choice
    try:
        yield
    finally:
        plus.disagreement_choice, plus.coteaching_choice = original_plus, original_co


class ConfidentBatches:
    """PES_cs.py's confident epochs: a loader over the confident samples alone, batches of B,
    shuffled, the last partial batch dropped; the core's own batches of that epoch do nothing."""

    def __init__(self):
        self.done = set()

    @hookimpl(tryfirst=True)
    def noisybench_train_step(self, run, batch):
        from noisybench_pes import confident_loss
        from noisybench_pes.layers import parameters_of
        from noisybench_pes.stages import refined_modules

        if run.epoch <= run.options["T1"] + 1:
            return None
        if run.epoch not in self.done:
            self.done.add(run.epoch)
            chosen = torch.nonzero(run.state["confident"]).squeeze(1).tolist()
            loader = DataLoader(Subset(run.train_set, chosen), batch_size=run.config["batch_size"], shuffle=True,
                                drop_last=True, generator=torch.Generator().manual_seed(run.epoch))
            weights = run.state["class_weights"]
            for images, labels, _ in loader:
                logits, _ = run.model(images)
                loss = confident_loss(logits.float(), labels, torch.ones_like(labels, dtype=torch.bool), weights)
                run.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                block, head = refined_modules(run)
                for parameter in parameters_of(block + head):
                    parameter.grad = None
                run.optimizer.step()
        return StepOutput(torch.zeros(()))


LR3 = ["pes.pes_lr=0.001"]  # PES where its refinement trains on these small sets (see docs/methods/pes.md)
VARIANTS = {  # name: (the variant it is compared with, method, overrides, extra plugins, patch)
    "coteachingplus": ("coteachingplus", "coteachingplus", [], [], None),
    "coteachingplus loss_on=logits": ("coteachingplus", "coteachingplus", ["coteachingplus.loss_on=logits"], [], None),
    "coteachingplus / count kept (authors)": ("coteachingplus", "coteachingplus", [], [], divided_by_count_kept),
    "coteachingplus evaluate=mean": ("coteachingplus", "coteachingplus", ["coteachingplus.evaluate=mean"], [], None),
    "jocor": ("jocor", "jocor", [], [], None),
    "jocor evaluate=mean": ("jocor", "jocor", ["jocor.evaluate=mean"], [], None),
    "cores": ("cores", "cores", [], [], None),
    "cores lr_scaling=false": ("cores", "cores", ["cores.lr_scaling=false"], [], None),
    "cores authors' epochs (10, 30, 31)": ("cores", "cores", ["cores.beta_warmup=10", "cores.beta_ramp=30",
                                                              "cores.sieve_after=31"], [], None),
    "pes": ("pes", "pes", [], [], None),
    "pes refined_layers=trained": ("pes", "pes", ["pes.refined_layers=trained"], [], None),
    "pes selection_views=eval": ("pes", "pes", ["pes.selection_views=eval"], [], None),
    "pes confident-only batches (authors)": ("pes", "pes", [], [ConfidentBatches], None),
    "pes pes_lr=1e-3": ("pes", "pes", LR3, [], None),
    "pes pes_lr=1e-3 refined_layers=trained": ("pes pes_lr=1e-3", "pes", [*LR3, "pes.refined_layers=trained"], [], None),
    "pes pes_lr=1e-3 selection_views=eval": ("pes pes_lr=1e-3", "pes", [*LR3, "pes.selection_views=eval"], [], None),
    "pes pes_lr=1e-3 confident-only batches": ("pes pes_lr=1e-3", "pes", LR3, [ConfidentBatches], None),
}


def one_run(name: str, dataset: str, seed: int, overrides: list[str]) -> dict:
    _, method, extra, plugins, patch = VARIANTS[name]
    with tempfile.TemporaryDirectory() as out, (patch() if patch else _nothing()):
        record = run(method, dataset, out, ["progress=false", "noise=symmetric:0.4", f"seed={seed}", *extra, *overrides],
                     plugins=[p() for p in plugins])
    return {"last": 100 * record["test"]["accuracy"], "best": 100 * record["best_val"]["test_accuracy"],
            "auc": 100 * (record["detection"].get("auc") or float("nan"))}


@contextmanager
def _nothing():
    yield


def cell(values: list[float]) -> str:
    return f"{statistics.mean(values):6.2f} ± {statistics.stdev(values):4.2f}" if len(values) > 1 else f"{values[0]:6.2f}"


def main(args: list[str]) -> None:
    own = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in ("dataset", "seeds", "methods", "skip"))
    dataset, seeds = own.get("dataset", "digits"), [int(s) for s in own.get("seeds", "0,1").split(",")]
    methods = own.get("methods", "coteachingplus,jocor,cores,pes").split(",")
    overrides = [a for a in args if a.split("=", 1)[0] not in own]
    skipped = own.get("skip", "").split(",") if own.get("skip") else []
    results = {name: [] for name, entry in VARIANTS.items()
               if entry[1] in methods and not any(part in name for part in skipped)}
    for seed in seeds:
        for name in results:
            results[name].append(one_run(name, dataset, seed, overrides))
    print(f"# {hardware()}")
    print(f"# {dataset} {' '.join(overrides)}, 40% symmetric noise, seeds {seeds}, documented defaults otherwise")
    print(f"{'variant':<44} {'test last':>15} {'test best val':>15} {'AUC':>15}  Δ last vs its base")
    for name, rows in results.items():
        base = results[VARIANTS[name][0]]  # the variant this one differs from in one rule
        delta = statistics.mean(r["last"] - b["last"] for r, b in zip(rows, base))
        print(f"{name:<44} {cell([r['last'] for r in rows]):>15} {cell([r['best'] for r in rows]):>15} "
              f"{cell([r['auc'] for r in rows]):>15}  {delta:+.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

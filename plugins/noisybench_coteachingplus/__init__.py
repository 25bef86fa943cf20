"""Co-teaching+ (Yu et al., ICML 2019): two networks, each trained on the small-loss samples its peer picks among those the two disagree on.

From ``init_epoch`` on, in every batch the samples on which the two networks predict
different classes form the pool; each network ranks the pool by its own loss and keeps the
⌊(1 − λ(e))·m⌋ smallest, and each network steps on its peer's choice. Before ``init_epoch``
the pool is the whole batch (plain Co-teaching, as the authors' ``main.py``); where ⌊(1 − λ)·m⌋ = 0 both networks train
on all m (their ``loss_coteaching``). λ(e) is the
authors' forget-rate schedule (``noisybench_coteaching.family``). A batch without
disagreement trains both networks on all of it while (epoch × batch index) < ``fallback_steps``
(the authors' ``step < 5000``) and not at all after. After ``init_epoch`` the authors' code
takes the losses of the softmax outputs, not of the logits (cross-entropy of probabilities):
``loss_on=probabilities``. Evaluation (``evaluate``): ``main``, the main network alone (the
authors test each network alone; this is their model 1), or ``mean``, the two networks' mean
softmax. Setup (the peer network, per-sample counts) and records are Co-teaching's hooks,
imported. Records: ``weight`` = the share of a sample's batches in which the peer did not leave it out,
``noise_score`` = the main network's last cross-entropy on it, ``flagged``: the peer left it
out of its last batch (it was in the pool and not among the small losses).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from noisybench_coteaching import PEER, cross_select, noisybench_sample_outputs, noisybench_setup, record  # noqa: F401
from noisybench_coteaching.family import EVALUATIONS, authors_forget_rate, noise_forget_rate, two_network_logits

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import StepOutput

CATALOG = {
    "family": "sample selection",
    "paper": "Yu, Han, Yao, Niu, Tsang & Sugiyama, ICML 2019",
    "code": "https://github.com/xingruiyu/coteaching_plus",
    "checked": "hand cases of the disagreement pool, each network's small-loss pick of it, the probability "
               "losses, the no-disagreement fallback and the init-epoch switch, against loss.py and main.py",
}

# The authors' init_epoch per dataset (main.py); other datasets start with the disagreement at once, as MNIST.
INIT_EPOCH = {"mnist": 0, "cifar10": 20, "cifar100": 5}  # and 100 on Tiny-ImageNet, not a dataset here

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "forget_rate": "tau: the fraction of the pool finally left out (auto: the run's synthetic noise rate)",
    "num_gradual": "T_k: epochs over which the left-out fraction grows from 0 to tau (authors' linspace)",
    "init_epoch": "epochs before it train as plain Co-teaching (auto: the authors' 20 cifar10, 5 cifar100, 0 else)",
    "loss_on": "probabilities (the authors' code: cross-entropy of the softmax outputs) or logits",
    "fallback_steps": "a batch without disagreement trains on all of it while epoch x batch index is below this",
    "evaluate": "main: the main network alone, as the authors test each network; mean: both networks' mean softmax",
}


class Choice(NamedTuple):
    """One batch's selection: the losses each network steps on and, per sample, whether the
    peer left it out for the main network."""

    loss_main: torch.Tensor
    loss_peer: torch.Tensor
    left_out: torch.Tensor


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"forget_rate": "auto", "num_gradual": 10, "init_epoch": "auto", "loss_on": "probabilities",
            "fallback_steps": 5000, "evaluate": "main"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if options["forget_rate"] == "auto":  # resolved into the saved config and the fingerprint
        options["forget_rate"] = noise_forget_rate("coteachingplus", config["noise"])
    if options["init_epoch"] == "auto":
        options["init_epoch"] = INIT_EPOCH.get(config.get("dataset"), 0)
    checks = {"forget_rate": lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
              "num_gradual": lambda v: isinstance(v, int) and v >= 1,
              "init_epoch": lambda v: isinstance(v, int) and v >= 0,
              "loss_on": lambda v: v in ("probabilities", "logits"),
              "fallback_steps": lambda v: isinstance(v, int) and v >= 0,
              "evaluate": lambda v: v in EVALUATIONS}
    for key, ok in checks.items():
        if isinstance(options[key], bool) or not ok(options[key]):
            raise ConfigError(f"config key 'coteachingplus.{key}' has a bad value: {options[key]!r} ({OPTION_HELP[key]})")


def pool_select(loss_main: torch.Tensor, loss_peer: torch.Tensor, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-teaching's cross pick of ⌊keep·m⌋ small losses; where that is 0, the whole pool for
    both networks, as the authors' ``loss_coteaching`` (their empty pick falls back to all m)."""
    if int(keep * len(loss_main)) == 0:
        everything = torch.arange(len(loss_main), device=loss_main.device)
        return everything, everything
    return cross_select(loss_main, loss_peer, keep)


def disagreement_choice(logits_main: torch.Tensor, logits_peer: torch.Tensor, labels: torch.Tensor, keep: float,
                        on_probabilities: bool, fallback: bool) -> Choice:
    """Co-teaching+'s rule for one batch (loss.py ``loss_coteaching_plus``): the pool is where
    the predicted classes differ; each network keeps ⌊keep·m⌋ of it by its own loss and its
    peer steps on them. No pool: every sample if ``fallback``, else none (zero losses)."""
    inputs_main = logits_main.softmax(dim=1) if on_probabilities else logits_main
    inputs_peer = logits_peer.softmax(dim=1) if on_probabilities else logits_peer
    pool = torch.nonzero(logits_main.argmax(dim=1) != logits_peer.argmax(dim=1)).squeeze(1)
    left_out = torch.zeros_like(labels, dtype=torch.bool)
    if len(pool) == 0:
        scale = 1.0 if fallback else 0.0  # the authors multiply by an all-False mask: a zero loss, still stepped
        return Choice(scale * F.cross_entropy(inputs_main, labels), scale * F.cross_entropy(inputs_peer, labels),
                      left_out)
    loss_main = F.cross_entropy(inputs_main[pool], labels[pool], reduction="none")
    loss_peer = F.cross_entropy(inputs_peer[pool], labels[pool], reduction="none")
    for_main, for_peer = pool_select(loss_main.detach(), loss_peer.detach(), keep)
    left_out[pool] = True
    left_out[pool[for_main]] = False
    return Choice(loss_main[for_main].mean(), loss_peer[for_peer].mean(), left_out)


def coteaching_choice(logits_main: torch.Tensor, logits_peer: torch.Tensor, labels: torch.Tensor,
                      keep: float) -> Choice:
    """Before ``init_epoch``: Co-teaching on the whole batch, losses of the logits."""
    loss_main = F.cross_entropy(logits_main, labels, reduction="none")
    loss_peer = F.cross_entropy(logits_peer, labels, reduction="none")
    for_main, for_peer = pool_select(loss_main.detach(), loss_peer.detach(), keep)
    left_out = torch.ones_like(labels, dtype=torch.bool)
    left_out[for_main] = False
    return Choice(loss_main[for_main].mean(), loss_peer[for_peer].mean(), left_out)


@hookimpl
def noisybench_epoch_start(run) -> None:
    run.scratch["batch"] = 0  # the authors' batch index i, for their epoch × i < 5000


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput:
    o = run.options
    step = run.scratch.get("batch", 0)
    run.scratch["batch"] = step + 1
    peer = run.networks[PEER]
    logits, _ = run.model(batch.images)
    peer_logits, _ = peer.model(batch.images)
    z_main, z_peer = logits.float(), peer_logits.float()
    keep = 1.0 - authors_forget_rate(run.epoch, o["forget_rate"], o["num_gradual"])
    if run.epoch < o["init_epoch"]:
        choice = coteaching_choice(z_main, z_peer, batch.labels, keep)
    else:
        choice = disagreement_choice(z_main, z_peer, batch.labels, keep, o["loss_on"] == "probabilities",
                                     run.epoch * step < o["fallback_steps"])
    run.optimizer.zero_grad(set_to_none=True)
    peer.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(choice.loss_main + choice.loss_peer)  # separate networks: separate gradients
    run.optimizer.step()
    peer.optimizer.step()
    with torch.no_grad():
        plain = F.cross_entropy(z_main, batch.labels, reduction="none")
    record(run, batch.indices, plain, ~choice.left_out)
    return StepOutput(choice.loss_main.detach(), logits.detach())


@hookimpl
def noisybench_eval_logits(run, images, logits) -> torch.Tensor | None:
    """``evaluate=main``: the main network alone (the authors test each network; this is their
    model 1); ``mean``: the log of both networks' mean softmax."""
    return two_network_logits(run, images, logits, run.options["evaluate"])

"""CORES² phase 1 (Cheng et al., ICLR 2021): cross-entropy with a confidence regulariser, and a sample sieve that drops the samples whose label the network finds no likelier than an average class.

Per sample, with p = softmax(z) and the class prior π (phase1.py, loss.py ``loss_cores``):

    ℓ_CORES = CE(z, y) − β(e) · Σ_j π_j · (−log(p_j + 1e−8))
    sieve:   v = 1  if  CE(z, y) − (1/K) Σ_j (−log(p_j + 1e−8)) ≤ 0,  else 0
    L = Σ v·ℓ_CORES / Σ v

Every sample is kept (v = 1) for the first ``sieve_after`` epochs. β(e) is 0 for
``beta_warmup`` epochs, rises as ``linspace(0, beta, beta_ramp)`` and stays at ``beta``; the
authors' 100-epoch run: 10, 30 and β = 2, the sieve from epoch 32 (their 0-based epoch 31).
``auto`` scales these epoch counts to the run's length. π starts as the noisy labels' class
distribution; after each epoch the sieved-out samples' labels are taken off it. The learning
rate of each epoch is divided by 1 + β(e) (``lr_scaling``, as the authors' optimiser
schedule). Phase 2 (consistency training on the sieved-out samples as unlabelled data) is not
shipped. Records: ``weight`` = v, ``noise_score`` = the sieve's statistic (above 0: sieved),
``flagged``: v = 0, each from the sample's last batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.errors import ConfigError

CATALOG = {
    "family": "sieve",
    "paper": "Cheng, Zhu, Li, Gong, Sun & Liu, ICLR 2021",
    "code": "https://github.com/UCSC-REAL/cores",
    "checked": "hand-computed confidence-regularised losses, sieve decisions and the prior update, and the beta "
               "schedule against f_beta of loss.py and phase1.py at 100 epochs",
}

AUTHORS_EPOCHS = 100  # their run length; beta_warmup, beta_ramp and sieve_after are theirs for it
AUTHORS = {"beta_warmup": 10, "beta_ramp": 30, "sieve_after": 31}
EPSILON = 1e-8

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "beta": "the confidence regulariser's final weight (authors: 2)",
    "beta_warmup": "epochs with beta = 0 (auto: 10 of the authors' 100 epochs, scaled to the run's length)",
    "beta_ramp": "epochs over which beta rises linearly from 0 (auto: 30 of 100, scaled)",
    "sieve_after": "epochs in which every sample is kept before the sieve starts (auto: 31 of 100, scaled)",
    "lr_scaling": "divide each epoch's learning rate by 1 + beta, as the authors' code",
}


class Sieved(NamedTuple):
    """One batch: the loss to minimise, each sample's v (kept) and the sieve's statistic."""

    loss: torch.Tensor
    kept: torch.Tensor
    statistic: torch.Tensor


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"beta": 2.0, "beta_warmup": "auto", "beta_ramp": "auto", "sieve_after": "auto", "lr_scaling": True}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    for key, authors in AUTHORS.items():
        if options[key] == "auto":  # the authors' epoch counts, in proportion to this run's length
            least = 1 if key == "beta_ramp" else 0  # a ramp of at least one epoch (a run of 1 epoch too)
            options[key] = max(least, int(authors * config["epochs"] / AUTHORS_EPOCHS + 0.5))
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "beta_ramp" else 0):
            raise ConfigError(f"config key 'cores.{key}' has a bad value: {value!r} ({OPTION_HELP[key]})")
    beta = options["beta"]
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ConfigError(f"config key 'cores.beta' must be a number ≥ 0, got {beta!r}")
    if not isinstance(options["lr_scaling"], bool):
        raise ConfigError(f"config key 'cores.lr_scaling' must be true or false, got {options['lr_scaling']!r}")


def beta_at(epoch: int, beta: float, warmup: int, ramp: int) -> float:
    """β of ``epoch`` (from 1): 0 for ``warmup`` epochs, then ``linspace(0, beta, ramp)``, then
    ``beta``: the authors' f_beta(epoch − 1) at warmup 10, ramp 30, beta 2."""
    step = epoch - warmup - 1
    if step < 0:
        return 0.0
    return float(np.linspace(0.0, beta, ramp)[step]) if step < ramp else float(beta)


def sieve_loss(logits: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor, beta: float, sieve: bool) -> Sieved:
    """The confidence-regularised loss over the samples the sieve keeps (all of them if not ``sieve``)."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    surprise = -torch.log(F.softmax(logits, dim=1) + EPSILON)
    statistic = ce - surprise.mean(dim=1)
    regularised = ce - beta * (surprise * prior).sum(dim=1)
    kept = statistic.detach() <= 0 if sieve else torch.ones_like(labels, dtype=torch.bool)
    if not kept.any():  # the authors return mean(v·ℓ)/1e8, i.e. 0: a step with no gradient
        return Sieved((regularised * 0).sum(), kept, statistic.detach())
    return Sieved(regularised[kept].sum() / kept.sum(), kept, statistic.detach())


def class_prior(noisy_labels: torch.Tensor, sieved_out: torch.Tensor, num_classes: int) -> torch.Tensor:
    """π: the class distribution of the noisy labels of the samples not sieved out (phase1.py's
    ``noise_prior * N − noise_prior_delta``, normalised)."""
    counts = torch.bincount(noisy_labels, minlength=num_classes).double()
    counts -= torch.bincount(noisy_labels[sieved_out], minlength=num_classes).double()
    return (counts / counts.sum()).float()


@hookimpl
def noisybench_setup(run) -> None:
    run.state["kept"] = torch.ones(run.num_train)  # v of each sample's last batch
    run.state["statistic"] = torch.zeros(run.num_train)


def current_beta(run) -> float:
    o = run.options
    return beta_at(run.epoch, o["beta"], o["beta_warmup"], o["beta_ramp"])


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    sieved_out = run.state["kept"].cpu() == 0
    run.scratch["prior"] = class_prior(run.noisy_labels, sieved_out, run.num_classes).to(run.device)
    beta = current_beta(run)
    run.log(cores_beta=beta, cores_sieved_out=int(sieved_out.sum()))
    if run.options["lr_scaling"]:
        run.scratch["scheduled_lr"] = [group["lr"] for group in run.optimizer.param_groups]
        for group in run.optimizer.param_groups:
            group["lr"] = group["lr"] / (1 + beta)


@hookimpl
def noisybench_epoch_end(run) -> None:
    """Give the scheduler back its own learning rate (it steps after this hook)."""
    for group, lr in zip(run.optimizer.param_groups, run.scratch.pop("scheduled_lr", [])):
        group["lr"] = lr


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    o = run.options
    result = sieve_loss(logits.float(), labels, run.scratch["prior"], current_beta(run), run.epoch > o["sieve_after"])
    values = torch.stack([result.kept.float(), result.statistic], dim=1)
    if run.accelerator.num_processes > 1:
        indices, values = run.collect(indices, values)
    for key in ("kept", "statistic"):
        run.state[key] = run.state[key].to(values.device)
    run.state["kept"][indices] = values[:, 0]
    run.state["statistic"][indices] = values[:, 1]
    return result.loss


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    kept = run.state["kept"].float().cpu()
    return {"weight": kept, "noise_score": run.state["statistic"].float().cpu(), "flagged": kept == 0}

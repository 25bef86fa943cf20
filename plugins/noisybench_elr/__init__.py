"""Early-learning regularization (Liu et al., NeurIPS 2020): cross-entropy plus a term that holds each prediction to a running average of the model's own earlier predictions, so wrong labels are not memorised.

Per training sample i, a target t_i (zeros at first) is updated each time i is in a batch,

    t_i ← β·t_i + (1 − β)·p̄_i,   p_i = clamp(softmax(z_i), 1e-4, 1 − 1e-4),  p̄_i = p_i / Σ_k p_ik,

with p̄ taken without gradient, and the batch's loss is

    L = CE(z, y) + λ · mean_i log(1 − ⟨t_i, p_i⟩).

``beta`` and ``lambda`` default to ``auto``: the authors' configurations, β = 0.9 and λ = 7
on CIFAR-100, β = 0.9 and λ = 1 under ``mapped`` noise elsewhere (their CIFAR-10 asymmetric
file: the papers' "asymmetric" noise is ``mapped`` here), β = 0.7 and λ = 3 otherwise (the
pair flip ``asymmetric`` included: on digits β = 0.9, λ = 1 tested 90.4 ± 1.2% there against
96.3 ± 0.6%) (CIFAR-10 symmetric; ELR+ on Clothing1M),
resolved into the run's config. Records: ``noise_score`` = 1 − t_i[y_i] (the running
prediction's disbelief in the noisy label), ``weight`` = t_i[y_i], ``flagged`` where
argmax t_i ≠ y_i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.errors import ConfigError

PAPER_BY_DATASET = {"cifar100": (0.9, 7.0)}  # dataset -> (beta, lambda), any noise
MAPPED = (0.9, 1.0)  # config_cifar10_asym.json
DEFAULT = (0.7, 3.0)  # config_cifar10.json; ELR+'s config_clothing1m.json
CLAMP = 1e-4

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "regularisation",
    "paper": "Liu, Niles-Weed, Razavian & Fernandez-Granda, NeurIPS 2020",
    "code": "https://github.com/shengliu66/ELR",
    "checked": "the target update and loss by hand with the authors' 1e-4 clamp and renormalisation; beta and lambda "
               "per dataset from their config files",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "beta": "the targets' momentum (auto: 0.9 on cifar100 or with mapped noise, else 0.7, the authors' values)",
    "lambda": "the regulariser's weight (auto: 7 on cifar100, 1 with mapped noise, else 3, the authors' values)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"beta": "auto", "lambda": "auto"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    paper = dict(zip(("beta", "lambda"), authors_values(config["dataset"], config.get("noise"))))
    for key in ("beta", "lambda"):
        if options[key] == "auto":
            options[key] = paper[key]  # resolved into the saved config and the fingerprint
        if isinstance(options[key], bool) or not isinstance(options[key], (int, float)):
            raise ConfigError(f"config key 'elr.{key}' expects a number or auto, got {options[key]!r}")
        options[key] = float(options[key])
    if not 0 <= options["beta"] < 1:
        raise ConfigError(f"config key 'elr.beta' must be in [0, 1), got {options['beta']}")
    if options["lambda"] < 0:
        raise ConfigError(f"config key 'elr.lambda' must be at least 0, got {options['lambda']}")


def authors_values(dataset: str, noise) -> tuple[float, float]:
    """(β, λ) of the authors' configuration files for this dataset and noise."""
    if dataset in PAPER_BY_DATASET:
        return PAPER_BY_DATASET[dataset]
    return MAPPED if str(noise or "").split(":")[0] == "mapped" else DEFAULT


def updated_targets(logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """t ← β·t + (1 − β)·p̄ for a batch's rows (no gradient)."""
    with torch.no_grad():
        p = torch.softmax(logits.float(), dim=1).clamp(CLAMP, 1 - CLAMP)
        return beta * targets + (1 - beta) * p / p.sum(dim=1, keepdim=True)


def elr_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """CE(z, y) + λ·mean log(1 − ⟨t, p⟩), ``targets`` already updated with this batch."""
    p = torch.softmax(logits.float(), dim=1).clamp(CLAMP, 1 - CLAMP)
    regulariser = torch.log(1 - (targets * p).sum(dim=1)).mean()
    return F.cross_entropy(logits.float(), labels) + lam * regulariser


@hookimpl
def noisybench_setup(run) -> None:
    run.state["target"] = torch.zeros(run.num_train, run.num_classes)


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    o = run.options
    run.state["target"] = run.state["target"].to(logits.device)
    targets = updated_targets(logits, run.state["target"][indices], o["beta"])
    if run.accelerator.num_processes == 1:  # a batch's indices are distinct: write them directly
        run.state["target"][indices] = targets
    else:  # every process keeps every sample's target: gather the batches of all
        seen, values = run.collect(indices, targets)
        run.state["target"][seen] = values
    return elr_loss(logits, labels, targets, o["lambda"])


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    target = run.state["target"].float().cpu()
    believed = target.gather(1, run.noisy_labels[:, None]).squeeze(1)
    return {"weight": believed, "noise_score": 1 - believed, "flagged": (target.argmax(dim=1) != run.noisy_labels)
            & (target.sum(dim=1) > 0)}

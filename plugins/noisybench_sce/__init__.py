"""Symmetric cross-entropy (Wang et al., ICCV 2019): α·CE plus β·RCE, a reverse cross-entropy that takes the label as the prediction.

Per sample, with p = softmax(z) and the one-hot label q (log 0 set to A < 0):

    CE  = −log p_y
    RCE = −Σ_k p_k log q_k = −A · Σ_{k≠y} max(p_k, 1e-7)
    L   = α · mean CE + β · mean RCE

As the authors' PyTorch code (HanxunH/SCELoss-Reproduce, the ``SCELoss`` of
HanxunH/Active-Passive-Losses): p is clamped to [1e-7, 1] inside RCE and the label to
[1e-4, 1], so log 0 = A = ln 1e-4 ≈ −9.21 (the paper writes A = −4, which would scale β by
4/9.21; ``sce.A=-4`` gives it). Their Keras code (YisenWang/symmetric_cross_entropy_for_noisy_labels,
loss.py) clamps p inside CE instead (docs/methods/sce.md lists it). ``alpha`` and ``beta``
default to ``auto``: the authors' values per dataset (CIFAR-10 0.1/1.0, CIFAR-100 6.0/0.1,
MNIST 0.01/1.0, mini-WebVision 10.0/1.0; else CIFAR-10's), resolved into the run's config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.floats import wide
from noisybench.errors import ConfigError

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "robust loss",
    "paper": "Wang, Ma, Chen, Luo, Yi & Bailey, ICCV 2019",
    "code": "https://github.com/YisenWang/symmetric_cross_entropy_for_noisy_labels",
    "checked": "CE, RCE and their sum by hand on 3-class cases, with the two clamps of the authors' PyTorch SCELoss "
               "(p at 1e-7, the label at 1e-4) at p → 0 and p → 1 and one class, and gradients against finite "
               "differences",
}
CODE_LOG_ZERO = math.log(1e-4)  # the authors' label clamp: log 0 becomes ln 1e-4
PROBABILITY_FLOOR = 1e-7  # the authors' clamp of p inside RCE
AUTHORS = {"cifar10": (0.1, 1.0), "cifar100": (6.0, 0.1), "mnist": (0.01, 1.0),  # dataset -> (alpha, beta)
           "webvision": (10.0, 1.0)}  # Active-Passive-Losses configs/webvision_mini/sce.yaml

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "alpha": "CE's weight (auto: the authors' per dataset: 0.1 cifar10, 6.0 cifar100, 0.01 mnist, 10.0 webvision, "
             "else 0.1)",
    "beta": "RCE's weight (auto: the authors' per dataset: 1.0 cifar10, 0.1 cifar100, 1.0 mnist, 1.0 webvision, "
            "else 1.0)",
    "A": "log 0 inside RCE (the authors' code: ln 1e-4 = -9.21; the paper's text: -4)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"alpha": "auto", "beta": "auto", "A": CODE_LOG_ZERO}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    authors = dict(zip(("alpha", "beta"), AUTHORS.get(config["dataset"], AUTHORS["cifar10"])))
    for key in ("alpha", "beta"):
        options[key] = resolve_weight("sce", key, options[key], authors[key])
    if options["A"] >= 0:
        raise ConfigError(f"config key 'sce.A' must be below 0 (it stands for log 0), got {options['A']}")


def resolve_weight(method: str, key: str, value, authors: float) -> float:
    """``auto`` -> the authors' value; otherwise a number ≥ 0, as a float (one line naming the key if not)."""
    value = authors if value == "auto" else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"config key '{method}.{key}' expects a number ≥ 0 or auto, got {value!r}")
    return float(value)


def reverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, log_zero: float) -> torch.Tensor:
    """Per-sample −Σ_k clamp(p_k, 1e-7, 1)·log q_k with q the one-hot label and log 0 = ``log_zero``."""
    p = wide(logits).softmax(dim=1).clamp(PROBABILITY_FLOOR, 1.0)
    others = torch.ones_like(p).scatter_(1, labels[:, None], 0.0)
    return -log_zero * (p * others).sum(dim=1)


def sce_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float, log_zero: float) -> torch.Tensor:
    """α·mean CE + β·mean RCE (the authors' SCELoss)."""
    ce = F.cross_entropy(wide(logits), labels)
    return alpha * ce + beta * reverse_cross_entropy(logits, labels, log_zero).mean()


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    o = run.options
    return sce_loss(logits, labels, o["alpha"], o["beta"], o["A"])

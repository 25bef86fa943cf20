"""Active-passive losses (Ma et al., ICML 2020): a normalized cross-entropy (active) plus a passive loss, RCE or MAE.

Per sample, with p = softmax(z):

    NCE = (−log p_y) / (−Σ_k log p_k)            (active: pushes p_y up)
    RCE = −A · Σ_{k≠y} max(p_k, 1e-7), A = ln 1e-4   (passive, as in SCE)
    MAE = 1 − p_y                                 (passive; the authors' code halves Σ_k |p_k − q_k|)
    L   = α · mean NCE + β · mean passive

``passive`` picks NCE+RCE (``rce``, the paper's main loss) or NCE+MAE (``mae``). ``alpha`` and
``beta`` default to ``auto``: the authors' configs (HanxunH/Active-Passive-Losses,
configs/<dataset>/<sym|asym>/nce+rce.yaml and nce+mae.yaml; equal for both noise kinds):
NCE+RCE 1/1 on CIFAR-10, 10/0.1 on CIFAR-100, 1/10 on MNIST; NCE+MAE 1/1, 10/1, 1/10; other
datasets take CIFAR-10's. Resolved into the run's config.
"""

from __future__ import annotations

import torch

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench_sce import CODE_LOG_ZERO, resolve_weight, reverse_cross_entropy, wide

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "robust loss",
    "paper": "Ma, Huang, Wang, Romano, Erfani & Bailey, ICML 2020",
    "code": "https://github.com/HanxunH/Active-Passive-Losses",
    "checked": "NCE, RCE and MAE by hand on 3-class cases (NCE's ratio of logs, the code's 1e-7 and 1e-4 clamps in "
               "RCE, its halved MAE), p → 0, p → 1 and one class, and gradients against finite differences",
}
PASSIVE = ("rce", "mae")
AUTHORS = {  # (passive, dataset) -> (alpha, beta), from the authors' configs
    ("rce", "cifar10"): (1.0, 1.0), ("rce", "cifar100"): (10.0, 0.1), ("rce", "mnist"): (1.0, 10.0),
    ("mae", "cifar10"): (1.0, 1.0), ("mae", "cifar100"): (10.0, 1.0), ("mae", "mnist"): (1.0, 10.0),
    ("rce", "webvision"): (50.0, 0.1), ("mae", "webvision"): (50.0, 1.0),  # configs/webvision_mini/
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "passive": "the passive loss beside NCE: rce (NCE+RCE) or mae (NCE+MAE)",
    "alpha": "NCE's weight (auto: the authors' per dataset and passive loss: 1 cifar10, 10 cifar100, 1 mnist, "
             "50 webvision; else 1)",
    "beta": "the passive loss's weight (auto: the authors': RCE 1 cifar10, 0.1 cifar100, 10 mnist, 0.1 webvision; "
            "MAE 1, 1, 10, 1; else 1)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"passive": "rce", "alpha": "auto", "beta": "auto"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if options["passive"] not in PASSIVE:
        raise ConfigError(f"config key 'apl.passive' expects one of {', '.join(PASSIVE)}, got {options['passive']!r}")
    dataset = config["dataset"] if (options["passive"], config["dataset"]) in AUTHORS else "cifar10"
    authors = dict(zip(("alpha", "beta"), AUTHORS[options["passive"], dataset]))
    for key in ("alpha", "beta"):
        options[key] = resolve_weight("apl", key, options[key], authors[key])


def normalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample (−log p_y) / (−Σ_k log p_k): CE over the sum of CE against every class (0 with one
    class, where both are 0 and the authors' code divides 0 by 0)."""
    log_p = wide(logits).log_softmax(dim=1)
    total = log_p.sum(dim=1)
    return log_p.gather(1, labels[:, None]).squeeze(1) / torch.where(total < 0, total, -1.0)


def mean_absolute_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample 1 − p_y (the authors' "reduced" MAE: half of Σ_k |p_k − q_k|)."""
    return 1.0 - wide(logits).softmax(dim=1).gather(1, labels[:, None]).squeeze(1)


def apl_loss(logits: torch.Tensor, labels: torch.Tensor, passive: str, alpha: float, beta: float) -> torch.Tensor:
    """α·mean NCE + β·mean passive loss."""
    second = (reverse_cross_entropy(logits, labels, CODE_LOG_ZERO) if passive == "rce"
              else mean_absolute_error(logits, labels))
    return alpha * normalized_cross_entropy(logits, labels).mean() + beta * second.mean()


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    o = run.options
    return apl_loss(logits, labels, o["passive"], o["alpha"], o["beta"])

"""Bootstrapping (Reed et al., ICLR workshop 2015): cross-entropy towards a mix of the noisy label and the model's own prediction.

Per sample, with p = clamp(softmax(z), 1e-7, 1 − 1e-7) and the one-hot label t:

    soft:  L = −Σ_k (β·t_k + (1 − β)·p_k) · log p_k        (β = 0.95)
    hard:  L = −Σ_k (β·t_k + (1 − β)·z_k) · log p_k,  z = one-hot argmax p   (β = 0.8)

The soft target keeps its gradient through p (the paper's reading: cross-entropy plus a
minimum-entropy term); the clamp at 1e-7 is Keras's epsilon in the loss-correction code of
Patrini et al. (giorgiop/loss-correction, loss.py) that most comparisons ran. The authors
published no code. ``beta`` ``auto`` is the paper's per variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.floats import wide
from noisybench.errors import ConfigError

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "robust loss",
    "paper": "Reed, Lee, Anguelov, Szegedy, Erhan & Rabinovich, ICLR workshop 2015",
    "code": None,  # the authors published none; checked against giorgiop/loss-correction's boot_soft/boot_hard
    "checked": "soft and hard targets and losses by hand on 3-class cases (the gradient through the soft target, the "
               "1e-7 clamp at p → 0 and p → 1, one class) against the paper and Patrini et al.'s Keras boot_soft and "
               "boot_hard, gradients against finite differences",
}
PAPER_BETA = {"soft": 0.95, "hard": 0.8}
CLAMP = 1e-7  # Keras's epsilon, as boot_soft/boot_hard clip the prediction

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "kind": "soft (mix the label with the prediction) or hard (with the predicted class)",
    "beta": "the label's weight in the target (auto: the paper's, 0.95 soft, 0.8 hard)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"kind": "soft", "beta": "auto"}


@hookimpl
def noisybench_check_options(options: dict) -> None:
    if options["kind"] not in PAPER_BETA:
        raise ConfigError(f"config key 'bootstrap.kind' expects soft or hard, got {options['kind']!r}")
    beta = PAPER_BETA[options["kind"]] if options["beta"] == "auto" else options["beta"]
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
        raise ConfigError(f"config key 'bootstrap.beta' expects a number in [0, 1] or auto, got {beta!r}")
    options["beta"] = float(beta)  # resolved into the saved config


def bootstrap_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str, beta: float) -> torch.Tensor:
    """Per-sample −Σ_k (β·t_k + (1 − β)·s_k)·log p_k, s = p (soft, with gradient) or one-hot argmax p (hard)."""
    p = wide(logits).softmax(dim=1).clamp(CLAMP, 1.0 - CLAMP)
    label = F.one_hot(labels, p.shape[1]).to(p.dtype)
    own = p if kind == "soft" else F.one_hot(p.argmax(dim=1), p.shape[1]).to(p.dtype)
    return -((beta * label + (1.0 - beta) * own) * p.log()).sum(dim=1)


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return bootstrap_loss(logits, labels, run.options["kind"], run.options["beta"]).mean()

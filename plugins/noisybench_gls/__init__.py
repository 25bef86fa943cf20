"""Generalized label smoothing (Wei et al., ICML 2022, "To Smooth or Not?"): cross-entropy towards (1 − r)·label + r/K, with a smooth rate r that may be negative.

Per sample, with p = softmax(z) and K classes:

    L = (1 − r) · (−log p_y) + r · (1/K) Σ_k (−log p_k)

r > 0 is label smoothing; r < 0 is negative label smoothing, which the paper finds better
at high noise rates. As the authors' code (UCSC-REAL/negative-label-smoothing, loss.py),
the first ``warmup_epochs`` train plain cross-entropy (their main_warmup.py), then GLS
(main_GLS_load.py, which continues from the warm-up model at ``lr_after_warmup``: 1e-6
in their script; null keeps the run's schedule). ``warmup_epochs`` ``auto``: none for r ≥ 0
(vanilla CE and positive smoothing) at synthetic noise rates up to 0.2 or without noise
(their README: direct training is better there), else (negative smoothing, or more noise)
their 120 warm-up of 220 epochs as a share of the run's.
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
    "paper": "Wei, Liu, Liu, Niu, Sugiyama & Liu, ICML 2022",
    "code": "https://github.com/UCSC-REAL/negative-label-smoothing",
    "checked": "the loss and its gradient p − ((1 − r)·e_y + r/K) by hand for positive and negative r (p → 0, p → 1, "
               "one class) against the authors' loss_gls, and the warm-up epochs and learning-rate switch on a run",
}
AUTHORS_WARMUP = (120, 220)  # main_warmup.py's 120 epochs of CE before main_GLS_load.py's 100

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "smooth_rate": "r: positive smooths the label, negative sharpens it (the authors try 0.8 down to -8)",
    "warmup_epochs": "epochs of plain cross-entropy before GLS (auto: 0 for smooth_rate ≥ 0 at noise rates up to "
                     "0.2, else 120/220 of the epochs, the authors')",
    "lr_after_warmup": "the learning rate of the GLS epochs after a warm-up (the authors': 1e-6; null: the run's)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"smooth_rate": -0.2, "warmup_epochs": "auto", "lr_after_warmup": None}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    from noisybench.noise import parse_noise

    rate = options["smooth_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate >= 1:
        raise ConfigError(f"config key 'gls.smooth_rate' expects a number below 1, got {rate!r}")
    if options["warmup_epochs"] == "auto":  # resolved into the saved config
        noise = parse_noise(config["noise"])
        light = rate >= 0 and (noise.synthetic and noise.rate <= 0.2 or noise.type == "none")
        options["warmup_epochs"] = 0 if light else round(config["epochs"] * AUTHORS_WARMUP[0] / AUTHORS_WARMUP[1])
    warmup = options["warmup_epochs"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"config key 'gls.warmup_epochs' expects an integer ≥ 0 or auto, got {warmup!r}")
    lr = options["lr_after_warmup"]
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        raise ConfigError(f"config key 'gls.lr_after_warmup' expects a number > 0 or null, got {lr!r}")


def gls_loss(logits: torch.Tensor, labels: torch.Tensor, smooth_rate: float) -> torch.Tensor:
    """Per-sample (1 − r)·(−log p_y) + r·mean_k(−log p_k), the authors' loss_gls (wa = 0, wb = 1)."""
    log_p = wide(logits).log_softmax(dim=1)
    return -(1.0 - smooth_rate) * log_p.gather(1, labels[:, None]).squeeze(1) - smooth_rate * log_p.mean(dim=1)


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    lr = run.options["lr_after_warmup"]
    if lr is not None and epoch > run.options["warmup_epochs"] > 0:
        run.scratch["scheduled_lr"] = [group["lr"] for group in run.optimizer.param_groups]
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        run.log(lr_used=lr)


@hookimpl
def noisybench_epoch_end(run) -> None:
    """Give the scheduler back its own learning rate (a chained schedule multiplies the last one)."""
    for group, lr in zip(run.optimizer.param_groups, run.scratch.pop("scheduled_lr", [])):
        group["lr"] = lr


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> torch.Tensor:
    if epoch <= run.options["warmup_epochs"]:
        return F.cross_entropy(wide(logits), labels)
    return gls_loss(logits, labels, run.options["smooth_rate"]).mean()

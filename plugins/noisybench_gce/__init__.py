"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): the L_q loss between CE (q → 0) and MAE (q = 1), and its truncated variant.

Per sample, with p_y = softmax(z)_y:

    L_q = (1 − p_y^q) / q                           (p_y^q computed as exp(q·log p_y))

``truncated`` (the paper's L_trunc) adds a weight w_i ∈ {0, 1} per training sample and the
batch loss mean_i w_i·(L_q − L_q(k)), L_q(k) = (1 − k^q)/q; the paper's alternating search
sets w_i = 1 where p_y > k (L_q < L_q(k)) and 0 elsewhere ("pruning"), at the start of
epoch ``prune_start`` and every ``prune_every`` epochs after. ``auto`` is the paper's
schedule: the first pruning at the epoch of the first learning-rate decay (CIFAR-10: 40 of
120, milestones 40 and 80; CIFAR-100: 80 of 150), then every 10 of its 120 (150) epochs as
a share of the run's. ``prune_source``: the
p_y each sample had in its last training batch (``train_pass``, no extra pass) or one
eval pass of the current model over the training set at each pruning (``eval_pass``); the
paper prunes with the model of the best validation epoch so far. Records (truncated only):
``weight`` = w_i, ``flagged`` where w_i = 0, ``noise_score`` = L_q of the last p_y seen.
"""

from __future__ import annotations

import torch

from noisybench import hookimpl
from noisybench.floats import wide
from noisybench.errors import ConfigError

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "robust loss",
    "paper": "Zhang & Sabuncu, NeurIPS 2018",
    "code": None,  # the authors published none; checked against AlanChou/Truncated-Loss and APL's GCE
    "checked": "L_q and its gradient by hand on 3-class cases (p → 0 without the NaN of p^q, p → 1, one class, "
               "q → 0 as CE, q = 1 as MAE), the truncated loss and pruning rule w = [p_y > k] against the paper "
               "and AlanChou/Truncated-Loss (no code of the authors exists)",
}
SOURCES = ("train_pass", "eval_pass")

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "q": "L_q's exponent: 0 is CE, 1 is MAE (paper 0.7)",
    "truncated": "the truncated loss L_trunc with per-sample pruning weights (paper's best variant)",
    "k": "L_trunc's threshold: samples with p_y <= k are pruned (paper 0.5)",
    "prune_start": "first epoch whose start prunes, >= 2 (auto: the paper's, the epoch of the first lr decay)",
    "prune_every": "epochs between prunings (auto: the paper's 10/120 of the epochs, cifar100 10/150; at least 1)",
    "prune_source": "p_y for pruning: train_pass (each sample's last training batch, free) or eval_pass (a pass)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"q": 0.7, "truncated": False, "k": 0.5, "prune_start": "auto", "prune_every": "auto",
            "prune_source": "train_pass"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if not 0 < options["q"] <= 1:
        raise ConfigError(f"config key 'gce.q' must be in (0, 1], got {options['q']}")
    if not 0 < options["k"] < 1:
        raise ConfigError(f"config key 'gce.k' must be in (0, 1), got {options['k']}")
    if options["prune_source"] not in SOURCES:
        raise ConfigError(f"config key 'gce.prune_source' expects one of {', '.join(SOURCES)}, "
                          f"got {options['prune_source']!r}")
    start, every = paper_schedule(config)
    for key, auto, least in (("prune_start", start, 2), ("prune_every", every, 1)):
        options[key] = auto if options[key] == "auto" else options[key]  # resolved into the saved config
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"config key 'gce.{key}' expects an integer ≥ {least} or auto, got {value!r}")


def paper_schedule(config: dict) -> tuple[int, int]:
    """(prune_start, prune_every) as the paper's: pruning from the epoch of the first learning-rate
    decay (its 40 of CIFAR-10's milestones 40, 80; 80 of CIFAR-100's 80, 120; without a step
    schedule a third of the epochs), every 10 of its 120 epochs (CIFAR-100: of 150)."""
    from noisybench.optim import lr_milestones

    epochs = config["epochs"]
    milestones = lr_milestones(config) if config["lr_schedule"]["name"] == "step" else []
    start = milestones[0] if milestones else round(epochs / 3)
    every = round(epochs * 10 / (150 if config["dataset"] == "cifar100" else 120))
    return max(2, start), max(1, every)


def label_log_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return wide(logits).log_softmax(dim=1).gather(1, labels[:, None]).squeeze(1)


def lq_from_log(log_p: torch.Tensor, q: float) -> torch.Tensor:
    """(1 − p^q)/q from log p, with p^q = exp(q·log p), whose gradient stays finite where p underflows
    to 0 (pow's is NaN there)."""
    return (1.0 - torch.exp(q * log_p)) / q


def lq_loss(logits: torch.Tensor, labels: torch.Tensor, q: float) -> torch.Tensor:
    """Per-sample L_q = (1 − p_y^q)/q."""
    return lq_from_log(label_log_probability(logits, labels), q)


def lq_of(probability: torch.Tensor | float, q: float) -> torch.Tensor | float:
    """L_q at a given p_y (L_q(k) for the threshold)."""
    return (1.0 - probability ** q) / q


def truncated_loss(losses: torch.Tensor, weights: torch.Tensor, k: float, q: float) -> torch.Tensor:
    """mean_i w_i·(L_q,i − L_q(k)): pruned samples (w = 0) give neither loss nor gradient."""
    return (weights * (losses - lq_of(k, q))).mean()


def is_pruning_epoch(epoch: int, start: int, every: int) -> bool:
    return epoch >= start and (epoch - start) % every == 0


@hookimpl
def noisybench_setup(run) -> None:
    if run.options["truncated"]:
        run.state["p_label"] = torch.zeros(run.num_train)  # each sample's p_y in its last training batch
        run.state["weight"] = torch.ones(run.num_train)


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    o = run.options
    if not o["truncated"] or not is_pruning_epoch(epoch, o["prune_start"], o["prune_every"]):
        return
    with run.phase("prune"):
        if o["prune_source"] == "eval_pass":
            logits = run.predict()[0].float()
            p_label = logits.softmax(dim=1).gather(1, run.noisy_labels.to(logits.device)[:, None]).squeeze(1)
        else:
            p_label = run.state["p_label"]
        run.state["weight"] = (p_label > o["k"]).float().to(run.state["weight"].device)
    run.log(pruned=1.0 - float(run.state["weight"].mean()))


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    o = run.options
    log_p = label_log_probability(logits, labels)
    losses = lq_from_log(log_p, o["q"])
    if not o["truncated"]:
        return losses.mean()
    remember_p_label(run, indices, log_p.detach().exp())
    weights = run.state["weight"].to(logits.device)
    run.state["weight"] = weights
    return truncated_loss(losses, weights[indices], o["k"], o["q"])


def remember_p_label(run, indices: torch.Tensor, p_label: torch.Tensor) -> None:
    """Keep each sample's p_y of this batch, on every process (gathered by index under several)."""
    state = run.state["p_label"] = run.state["p_label"].to(p_label.device)
    if run.accelerator.num_processes > 1:
        indices, p_label = run.collect(indices, p_label)
    state[indices] = p_label


@hookimpl
def noisybench_sample_outputs(run) -> dict | None:
    if not run.options["truncated"]:
        return None
    weight = run.state["weight"].float().cpu()
    return {"weight": weight, "flagged": weight == 0, "noise_score": lq_of(run.state["p_label"].float().cpu(),
                                                                             run.options["q"])}

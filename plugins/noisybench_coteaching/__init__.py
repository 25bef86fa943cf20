"""Co-teaching (Han et al., NeurIPS 2018): two networks, each trained on the samples its peer finds easiest.

In every batch each network ranks the samples by its own cross-entropy and keeps the
fraction R with the smallest losses; each network then steps on the samples its peer
kept. A network keeps ⌊R·n⌋ of a batch of n. τ is ``forget_rate`` (``auto``: the run's
synthetic noise rate; required for real noise), T_k is ``num_gradual`` (10). R per
epoch (``schedule``): ``code`` (default), as the authors' main.py computes it, whose
reference numbers come from it: epoch T (from 1) forgets ``linspace(0, τ, T_k)[T]``, so
1 − τ·min(T/(T_k − 1), 1) is kept (0.95 at epoch 1 for τ = 0.45, T_k = 10; 0.55 from
epoch 9); ``algorithm``: Algorithm 1's R(T) = 1 − min(T·τ/T_k, τ), updated at the end of
epoch T, so epoch T keeps R(T − 1) (1.0 at epoch 1; 0.55 from epoch 11).
Evaluation (``evaluate``): ``main``, the main network alone (the authors' code tests each
network alone; this is their model1), or ``mean``, the log of both networks' mean softmax.
Records: ``weight`` = how often a sample was kept for the main network by its peer, over
the epochs it was seen; ``noise_score`` = the main network's last loss on it; ``flagged``:
not kept in its last batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import StepOutput
from noisybench_coteaching.family import authors_forget_rate, noise_forget_rate

PEER = "peer"

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "sample selection",
    "paper": "Han, Yao, Yu, Niu, Xu, Hu, Tsang & Sugiyama, NeurIPS 2018",
    "code": "https://github.com/bhanML/Co-teaching",
    "checked": "the keep rate R(T) of the authors' forget schedule and the cross selection of small-loss samples "
               "by hand; the mean-softmax evaluation of both networks",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "forget_rate": "tau: the fraction of each batch finally left out (auto: the run's synthetic noise rate)",
    "num_gradual": "T_k: epochs over which the left-out fraction grows from 0 to tau",
    "schedule": "code: the authors' main.py, epoch T forgets linspace(0, tau, T_k)[T]; "
                "algorithm: Algorithm 1, epoch T forgets min((T - 1) tau / T_k, tau)",
    "evaluate": "main: the main network alone, as the authors test each network; mean: both networks' mean softmax",
}
SCHEDULES = ("code", "algorithm")
EVALUATIONS = ("main", "mean")


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"forget_rate": "auto", "num_gradual": 10, "schedule": "code", "evaluate": "main"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if options["forget_rate"] == "auto":  # resolved into the saved config and the fingerprint
        options["forget_rate"] = noise_forget_rate("coteaching", config["noise"])
    rate = options["forget_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ConfigError(f"config key 'coteaching.forget_rate' must be a number in [0, 1) or auto, got {rate!r}")
    if isinstance(options["num_gradual"], bool) or not isinstance(options["num_gradual"], int) \
            or options["num_gradual"] < 1:
        raise ConfigError(f"config key 'coteaching.num_gradual' must be an integer ≥ 1, got {options['num_gradual']!r}")
    for key, allowed in (("schedule", SCHEDULES), ("evaluate", EVALUATIONS)):
        if options[key] not in allowed:
            raise ConfigError(f"config key 'coteaching.{key}' must be one of {', '.join(allowed)}, got {options[key]!r}")


def keep_rate(epoch: int, forget_rate: float, num_gradual: int, schedule: str = "code") -> float:
    """R for the batches of ``epoch`` (1-based). ``code``: 1 − linspace(0, τ, T_k)[epoch],
    τ from epoch T_k on (the authors' main.py trains epochs 1..n−1 with
    ``rate_schedule[epoch]``); ``algorithm``: R(epoch − 1) = 1 − min((epoch − 1)·τ/T_k, τ)."""
    if schedule == "algorithm":
        return 1.0 - min((epoch - 1) * forget_rate / num_gradual, forget_rate)
    return 1.0 - authors_forget_rate(epoch, forget_rate, num_gradual)


def cross_select(loss_main: torch.Tensor, loss_peer: torch.Tensor, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions the main network trains on: the peer's smallest losses, positions the peer
    trains on: the main network's smallest losses), ⌊keep·n⌋ each (at least one)."""
    count = max(1, int(keep * len(loss_main)))
    return torch.argsort(loss_peer, stable=True)[:count], torch.argsort(loss_main, stable=True)[:count]


@hookimpl
def noisybench_setup(run) -> None:
    run.add_network(PEER)
    run.state["kept"] = torch.zeros(run.num_train)  # times kept for the main network by the peer
    run.state["seen"] = torch.zeros(run.num_train)
    run.state["last_loss"] = torch.zeros(run.num_train)
    run.state["last_kept"] = torch.zeros(run.num_train, dtype=torch.bool)


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput:
    o = run.options
    peer = run.networks[PEER]
    logits, _ = run.model(batch.images)
    peer_logits, _ = peer.model(batch.images)
    loss_main = F.cross_entropy(logits.float(), batch.labels, reduction="none")
    loss_peer = F.cross_entropy(peer_logits.float(), batch.labels, reduction="none")
    for_main, for_peer = cross_select(loss_main.detach(), loss_peer.detach(),
                                      keep_rate(run.epoch, o["forget_rate"], o["num_gradual"], o["schedule"]))
    loss = loss_main[for_main].mean() + loss_peer[for_peer].mean()  # separate networks: separate gradients
    run.optimizer.zero_grad(set_to_none=True)
    peer.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    peer.optimizer.step()
    kept = torch.zeros_like(batch.labels, dtype=torch.bool)
    kept[for_main] = True
    record(run, batch.indices, loss_main.detach(), kept)
    return StepOutput(loss_main[for_main].mean().detach(), logits.detach())


def record(run, indices: torch.Tensor, loss: torch.Tensor, kept: torch.Tensor) -> None:
    """Per-sample selection counts and last loss, on every process."""
    values = torch.stack([loss, kept.float()], dim=1)
    if run.accelerator.num_processes > 1:
        indices, values = run.collect(indices, values)
    state = run.state
    for key in ("kept", "seen", "last_loss", "last_kept"):
        state[key] = state[key].to(values.device)
    state["seen"][indices] += 1
    state["kept"][indices] += values[:, 1]
    state["last_loss"][indices] = values[:, 0]
    state["last_kept"][indices] = values[:, 1] > 0


@hookimpl
def noisybench_eval_logits(run, images, logits) -> torch.Tensor | None:
    """``evaluate=mean``: the log of the two networks' mean softmax (``logits``: the main
    network's); ``main``: None, the main network's own logits."""
    if run.options["evaluate"] == "main":
        return None
    peer_logits, _ = run.accelerator.unwrap_model(run.networks[PEER].model)(images)
    return torch.log((logits.float().softmax(dim=1) + peer_logits.float().softmax(dim=1)) / 2)


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    state = {k: v.cpu() for k, v in run.state.items()}
    return {"weight": state["kept"] / state["seen"].clamp_min(1), "noise_score": state["last_loss"],
            "flagged": ~state["last_kept"]}

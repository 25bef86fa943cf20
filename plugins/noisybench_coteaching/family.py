"""What the Co-teaching family's plugins share (Co-teaching+, JoCoR): the authors' forget-rate schedule, its τ from the noise rate, and the two-network evaluation.

Their ``main.py`` builds ``rate_schedule = np.ones(n_epoch) * tau`` with its first T_k
entries replaced by ``np.linspace(0, tau ** c, T_k)``, and trains epoch ``e`` (their loop
runs e = 1 … n_epoch − 1 after an evaluation of the untrained networks as "epoch 0") with
``rate_schedule[e]``. noisybench counts epochs from 1 too, so its epoch e is theirs. Their
``evaluate`` tests each network alone; here ``main`` is their model 1, ``mean`` the two
networks' mean softmax.
"""

from __future__ import annotations

import numpy as np
import torch

from noisybench.errors import ConfigError

EVALUATIONS = ("main", "mean")


def noise_forget_rate(method: str, noise: str, halve_mapped: bool = False) -> float:
    """``forget_rate=auto``: τ is the run's synthetic noise rate (JoCoR's code halves it for
    CIFAR's class-mapped "asymmetric" noise, where half the classes flip); real noise names no rate."""
    from noisybench.noise import parse_noise

    spec = parse_noise(noise)
    if not spec.synthetic:
        raise ConfigError(f"{method}.forget_rate=auto needs synthetic noise (its rate); with real noise set "
                          f"{method}.forget_rate to the estimated noise rate")
    return spec.rate / 2 if halve_mapped and spec.type == "mapped" else spec.rate


def authors_forget_rate(epoch: int, tau: float, num_gradual: int, exponent: float = 1.0) -> float:
    """The fraction of a batch left out in ``epoch`` (from 1): ``linspace(0, τ^c, T_k)[epoch]``
    while ``epoch < T_k``, then τ; computed with numpy, so it equals the authors' value bit for bit."""
    if epoch >= num_gradual:
        return float(tau)
    return float(np.linspace(0, tau ** exponent, num_gradual)[epoch])


def two_network_logits(run, images, logits: torch.Tensor, evaluate: str, peer: str = "peer") -> torch.Tensor | None:
    """For ``noisybench_eval_logits``: None (the main network's own ``logits``) for ``main``;
    for ``mean`` the log of the main and the peer network's mean softmax."""
    if evaluate == "main":
        return None
    peer_logits, _ = run.accelerator.unwrap_model(run.networks[peer].model)(images)
    return torch.log((logits.float().softmax(dim=1) + peer_logits.float().softmax(dim=1)) / 2)

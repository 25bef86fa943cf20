"""DivideMix's pieces as pure functions (Li, Socher & Hoi, ICLR 2020, Algorithm 1), each checked by hand in tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def clean_probability(losses: np.ndarray, seed: int) -> np.ndarray:
    """Per sample, the posterior of the low-loss component of a two-component Gaussian mixture
    fitted to the min-max normalised losses (the authors' settings: 10 EM iterations, tol
    1e-2, reg_covar 5e-4; seeded here, so a resumed run divides as before)."""
    from sklearn.mixture import GaussianMixture

    span = losses.max() - losses.min()
    normalised = ((losses - losses.min()) / (span if span > 0 else 1.0)).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    gmm.fit(normalised)
    return gmm.predict_proba(normalised)[:, int(np.argmin(gmm.means_.ravel()))]


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T), renormalised over the classes."""
    sharp = p ** (1.0 / temperature)
    return sharp / sharp.sum(dim=1, keepdim=True)


def refined_labels(one_hot: torch.Tensor, p_views: list[torch.Tensor], w: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label refinement: sharpen(w·y + (1 − w)·mean of the network's softmax over the views)."""
    p = torch.stack(p_views).mean(dim=0)
    return sharpen(w[:, None] * one_hot + (1 - w[:, None]) * p, temperature)


def co_guess(p_views: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Co-guessing: sharpen(the mean softmax of both networks over both views)."""
    return sharpen(torch.stack(p_views).mean(dim=0), temperature)


def mix(inputs: torch.Tensor, targets: torch.Tensor, lam: float, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp with λ′ = max(λ, 1 − λ), so the mix stays closer to its first input."""
    lam = max(lam, 1 - lam)
    return lam * inputs + (1 - lam) * inputs[order], lam * targets + (1 - lam) * targets[order]


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Σ_c π_c log(π_c / p̄_c) with π uniform and p̄ the batch's mean softmax."""
    prior = torch.full((logits.shape[1],), 1.0 / logits.shape[1], device=logits.device)
    mean = torch.softmax(logits.float(), dim=1).mean(dim=0)
    return (prior * torch.log(prior / mean)).sum()


def mixmatch_losses(logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor,
                    targets_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_x: cross-entropy with the mixed soft labels, L_u: the mean squared error of the
    softmax to the mixed guesses); a part with no samples contributes 0."""
    zero = logits_x.new_zeros(())
    lx = -(F.log_softmax(logits_x.float(), dim=1) * targets_x).sum(dim=1).mean() if len(logits_x) else zero
    lu = ((torch.softmax(logits_u.float(), dim=1) - targets_u) ** 2).mean() if len(logits_u) else zero
    return lx, lu


def rampup(progress: float, warm_up: int, length: float = 16.0) -> float:
    """λ_u's linear ramp: 0 at the end of warm-up, 1 after ``length`` more epochs."""
    return float(np.clip((progress - warm_up) / length, 0.0, 1.0))

"""Patrini et al.'s corrected losses, as their Keras code computes them (``loss.py``): the
softmax clipped to [ε, 1 − ε] with Keras's ε = 1e-7 (no gradient where the clip acts), then

    forward:   −log (p̂ᵀ T)_ỹ          backward:   −Σ_j (T⁻¹)_{ỹ j} log p̂_j

averaged over the batch. With T = I both are the authors' clipped cross-entropy. (Their code
also divides the softmax by its sum before the clip: a no-op, as a softmax sums to 1 and
that division's gradient is identically zero, so it is left out.)"""

from __future__ import annotations

import torch

from noisybench.floats import wide

EPSILON = 1e-7  # keras.backend.epsilon()


def clipped_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """p̂: the softmax clipped to [ε, 1 − ε], in float32 at least."""
    p = torch.softmax(wide(logits), dim=1)
    return p.clamp(EPSILON, 1.0 - EPSILON)


def forward_loss(p: torch.Tensor, labels: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """mean −log (p̂ᵀT)_ỹ: the model's clean posterior pushed through T scores the noisy label."""
    return -torch.log((p @ transition).gather(1, labels[:, None])).mean()


def backward_loss(p: torch.Tensor, labels: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """mean −Σ_j (T⁻¹)_{ỹ j} log p̂_j: the cross-entropy of every class, weighted by row ỹ of T⁻¹."""
    return -(inverse[labels] * torch.log(p)).sum() / len(labels)


@torch.no_grad()
def label_noise_posterior(p: torch.Tensor, labels: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """P(true label ≠ ỹ | x, ỹ) = 1 − p_ỹ T_ỹỹ / (pᵀT)_ỹ by Bayes' rule, with the model's p̂ as
    the clean posterior: each sample's noise score (0 while T = I)."""
    right = p.gather(1, labels[:, None]).squeeze(1) * transition.diagonal()[labels]
    return (1 - right / (p @ transition).gather(1, labels[:, None]).squeeze(1)).clamp(0, 1)

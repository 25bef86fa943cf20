"""What each correction could have been, for the record: beside SMP's y_hat, the labels the
network's own argmax gives and those of a k-NN vote in the same feature space. The core
scores all three against the true labels (``run.score_labels``; the method never sees them),
so a run's history shows per correction whether the prototypes, the classifier or the
neighbourhoods label the training set best (``smp_yhat_accuracy``, ``smp_argmax_accuracy``,
``smp_knn_accuracy``; ``smp_final_*`` for the final model's correction) and the share of
labels y_hat would change (``smp_would_change``), accepted by the guard or not.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

NEIGHBOURS = 10
KNN_SAMPLES = 10_000  # the vote runs within a seeded subset of at most this many samples


def knn_labels(features: torch.Tensor, noisy: torch.Tensor, k: int = NEIGHBOURS, chunk: int = 2048) -> torch.Tensor:
    """Each sample's label by the majority of the noisy labels of its k most cosine-similar
    other samples (ties: the lowest class)."""
    g = F.normalize(features.float(), dim=1)
    noisy = noisy.to(g.device)
    k = min(k, len(g) - 1)
    classes = int(noisy.max()) + 1 if len(noisy) else 0
    out = []
    for start in range(0, len(g), chunk):
        similarity = g[start: start + chunk] @ g.T
        rows = torch.arange(len(similarity), device=g.device)
        similarity[rows, rows + start] = -torch.inf  # not its own neighbour
        nearest = similarity.topk(k, dim=1).indices
        votes = F.one_hot(noisy[nearest], classes).sum(dim=1)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else noisy.clone()


def knn_sampled(features: torch.Tensor, noisy: torch.Tensor, seed: int) -> torch.Tensor:
    """k-NN labels: for every sample, or above ``KNN_SAMPLES`` samples the vote within a
    seeded subset of that many (-1 for the others: scored over the subset only)."""
    if len(features) <= KNN_SAMPLES:
        return knn_labels(features, noisy).cpu()
    chosen = np.sort(np.random.default_rng([seed, 7]).choice(len(features), KNN_SAMPLES, replace=False))
    labels = torch.full((len(features),), -1, dtype=torch.long)
    labels[chosen] = knn_labels(features[torch.as_tensor(chosen, device=features.device)], noisy[chosen]).cpu()
    return labels


def record(run, prefix: str, features: torch.Tensor, logits: torch.Tensor, y_hat: torch.Tensor) -> None:
    """Log the share y_hat would change; have the core score y_hat, argmax and k-NN."""
    noisy = run.noisy_labels
    run.log(**{f"{prefix}_would_change": float((y_hat.cpu() != noisy).float().mean())})
    run.score_labels(**{f"{prefix}_yhat_accuracy": y_hat, f"{prefix}_argmax_accuracy": logits.argmax(dim=1),
                        f"{prefix}_knn_accuracy": knn_sampled(features, noisy, run.config["seed"])})

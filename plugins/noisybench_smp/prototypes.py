"""Prototype selection and label correction of SMP (Han, Luo & Wang, ICCV 2019, §3.3).

Pure tensor functions, batched matrix products that run on the CPU or the GPU:

  S      cosine similarity of a class's m sampled features              (eq. 5)
  S_c    the value at rank ``quantile`` of S's sorted off-diagonal entries
  rho    rho_i = sum_j sign(S_ij - S_c), sign(0) = 0                    (eq. 6)
  eta    eta_i = max_{j: rho_j > rho_i} S_ij, or min_j S_ij where rho_i = rho_max   (eq. 7;
         ties="order" breaks ties in rho by sample order instead, see separation)
  walk   samples in decreasing rho (ties: sample order) with eta < 0.95, until p
  sigma  sigma_c(x) = mean cosine similarity to class c's prototypes     (eq. 8)
  y_hat  argmax_c sigma_c                                                 (eq. 9)

Table 4's alternatives: ``kmeans++`` (k-means++ centres of the normalised features) and
``density_euclidean`` (density peaks on Euclidean distance, Rodriguez & Laio 2014);
``similarity="euclidean"`` replaces cosine similarity by a Euclidean one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans


def cosine_matrix(features: torch.Tensor) -> torch.Tensor:
    """S_ij = g_i·g_j / (|g_i| |g_j|)  (eq. 5)."""
    g = F.normalize(features.float(), dim=1)
    return g @ g.T


def euclidean_matrix(features: torch.Tensor) -> torch.Tensor:
    """A similarity in [0, 1] from Euclidean distance: 1 - d_ij / max d, so that the
    eta < 0.95 rule keeps its meaning (no denser point within 5% of the largest distance)."""
    d = torch.cdist(features.float(), features.float())
    return 1.0 - d / d.max().clamp_min(1e-12)


def threshold(similarity: torch.Tensor, quantile: float) -> torch.Tensor:
    """S_c: the off-diagonal entries sorted in ascending order, the one at position
    floor(quantile·(M−1)) of the M = m(m−1) entries. The paper's "ranked top 40%" reads as
    quantile 0.4 (the 40th percentile, as the 2024 reimplementation took it) or 0.6."""
    m = similarity.shape[0]
    off = similarity[~torch.eye(m, dtype=torch.bool, device=similarity.device)]
    if off.numel() == 0:
        return similarity.new_tensor(0.0)
    position = int(np.floor(quantile * (off.numel() - 1)))
    return torch.kthvalue(off, position + 1).values  # that entry of the sorted order, without sorting all


def density(similarity: torch.Tensor, s_c: torch.Tensor) -> torch.Tensor:
    """rho_i = sum_j sign(S_ij − S_c) over all j, as eq. 6 writes it (the j = i term adds
    the same sign(1 − S_c) to every rho and changes no order); torch.sign(0) = 0."""
    return torch.sign(similarity - s_c).sum(dim=1)


def separation(similarity: torch.Tensor, rho: torch.Tensor, ties: str = "paper") -> torch.Tensor:
    """eta (eq. 7): the largest similarity to a denser sample; for the densest sample the
    smallest similarity to any sample.

    ``ties="paper"`` (default) reads eq. 7 literally: "denser" is rho_j > rho_i and every
    sample tied at rho_max takes the min branch, so a tight cluster of tied samples may all
    pass the eta < 0.95 rule and give near-copies as prototypes. ``ties="order"`` breaks
    ties by sample order, as density-peak implementations do: samples are ranked by
    (rho descending, position) and "denser" means ranked earlier, so only the first sample
    takes the min branch. Without ties both readings are the same.
    """
    if ties == "paper":
        denser = rho[None, :] > rho[:, None]
        densest = rho == rho.max()
    else:
        rank = torch.empty_like(rho, dtype=torch.long)
        rank[torch.sort(-rho, stable=True).indices] = torch.arange(len(rho), device=rho.device)
        denser = rank[None, :] < rank[:, None]
        densest = rank == 0
    eta = torch.where(denser, similarity, torch.full_like(similarity, -torch.inf)).amax(dim=1)
    return torch.where(densest, similarity.amin(dim=1), eta)


def walk(rho: torch.Tensor, eta: torch.Tensor, p: int, eta_max: float = 0.95) -> torch.Tensor:
    """Positions of the prototypes: samples in decreasing rho (ties keep sample order)
    whose eta < eta_max, until p are found. Fallback when fewer qualify: the walk is
    filled up with the densest remaining samples, so a class has min(p, m) prototypes."""
    order = torch.sort(-rho, stable=True).indices
    keep = order[eta[order] < eta_max][:p]
    if len(keep) < min(p, len(order)):
        rest = order[~torch.isin(order, keep)]
        keep = torch.cat([keep, rest[: min(p, len(order)) - len(keep)]])
    return keep


def density_peaks(features: torch.Tensor, p: int, quantile: float) -> torch.Tensor:
    """Density peaks on Euclidean distance: rho_i = sum_j sign(d_c − d_ij), delta_i the
    distance to the nearest denser sample (the largest distance for the densest); the p
    samples with the largest rho·delta (both scaled to [0, 1]) are the prototypes."""
    d = torch.cdist(features.float(), features.float())
    d_c = threshold(d, quantile)
    rho = torch.sign(d_c - d).sum(dim=1)
    denser = rho[None, :] > rho[:, None]
    delta = torch.where(denser, d, torch.full_like(d, torch.inf)).amin(dim=1)
    delta = torch.where(rho == rho.max(), d.amax(dim=1), delta)

    def scale(x):
        return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)

    gamma = scale(rho.float()) * scale(delta)
    return torch.sort(-gamma, stable=True).indices[:p]


def select_prototypes(
    features: torch.Tensor,
    p: int,
    quantile: float,
    method: str = "density",
    similarity: str = "cosine",
    eta_max: float = 0.95,
    seed: int = 0,
    ties: str = "paper",
) -> torch.Tensor:
    """The prototype features (≤ p rows) of one class from its m sampled features."""
    if method == "kmeans++":
        g = F.normalize(features.float(), dim=1).cpu().numpy()
        k = min(p, len(g))
        centres = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed).fit(g).cluster_centers_
        return torch.as_tensor(centres, dtype=torch.float32, device=features.device)
    if method == "density_euclidean":
        return features[density_peaks(features, p, quantile)]
    s = cosine_matrix(features) if similarity == "cosine" else euclidean_matrix(features)
    rho = density(s, threshold(s, quantile))
    return features[walk(rho, separation(s, rho, ties), p, eta_max)]


def class_scores(
    features: torch.Tensor, prototypes: list[torch.Tensor], similarity: str = "cosine", chunk: int = 4096
) -> torch.Tensor:
    """sigma (N×K): mean similarity of each sample to each class's prototypes (eq. 8).

    Cosine: mean_k ĝ·p̂_k = ĝ·mean_k p̂_k, so each class is one centre (the mean of its
    unit-length prototypes) and the product is N×K, not N×(K·p); rows are divided by |g|
    after the product instead of normalising a copy of the features first. Rows are taken
    in chunks small enough that the norm reads a block still in cache. Euclidean: the mean of negative distances (no such
    shortcut exists). A class without prototypes scores −inf and is never chosen.
    """
    missing = torch.tensor([len(p) == 0 for p in prototypes])
    if similarity == "cosine":
        centres = torch.stack([F.normalize(p.float(), dim=1).mean(dim=0) if len(p) else
                               p.new_zeros(p.shape[1]).float() for p in prototypes])
    out = []
    for start in range(0, len(features), chunk):
        block = features[start : start + chunk]
        if similarity == "cosine":
            block = block.to(centres.device)
            scores = (block @ centres.to(block.dtype).T).float()
            scores /= torch.linalg.vector_norm(block, dim=1, dtype=torch.float32).clamp_min(1e-12)[:, None]
        else:
            scores = class_distances(block.float(), prototypes)
        scores[:, missing.to(scores.device)] = -torch.inf
        out.append(scores)
    return torch.cat(out) if out else features.new_zeros(0, len(prototypes))


def class_distances(block: torch.Tensor, prototypes: list[torch.Tensor]) -> torch.Tensor:
    """−mean_k |g − p_k| per class (the Euclidean form of eq. 8)."""
    protos = torch.cat(prototypes).float().to(block.device)
    owner = torch.cat([torch.full((len(p),), c, device=block.device) for c, p in enumerate(prototypes)])
    average = F.one_hot(owner, len(prototypes)).float()
    average /= average.sum(dim=0).clamp_min(1)
    return -torch.cdist(block, protos) @ average


def relabel(scores: torch.Tensor, noisy: torch.Tensor, change_margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_hat, margin): y_hat = argmax_c sigma_c (eq. 9); margin = max sigma − sigma_y, the
    noise score.

    With ``change_margin`` m > 0 a label changes only if sigma_yhat is at least m (0.15:
    15%) higher than sigma_y, both measured above the sample's least similar class:
    sigma_yhat − floor ≥ (1 + m)·(sigma_y − floor), floor = min_c sigma_c. The 2024 thesis
    measured from zero; dense non-negative features put every sigma near 0.9, where "15%
    higher" asks for a gap of 0.13 against typical gaps of 0.03 and almost nothing changes.
    Measured from the floor the rule reads the same whatever offset all classes share."""
    best, y_hat = scores.max(dim=1)
    own = scores.gather(1, noisy[:, None].to(scores.device)).squeeze(1)
    margin = best - own
    if change_margin > 0:
        floor = scores.masked_fill(torch.isinf(scores), torch.inf).amin(dim=1)  # classes without prototypes aside
        keep = best - own < change_margin * (own - floor)
        y_hat = torch.where(keep, noisy.to(y_hat.device), y_hat)
    return y_hat, margin

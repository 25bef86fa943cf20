"""Visual prototypes and sample weights of SINet (Cheng et al. 2020, §3.2–3.3), as pure functions.

Features are L2-normalised before anything else; prototypes are normalised again after
averaging, so that every distance ‖v_c − g_i‖₂ lies in [0, 2] and α = 1.2 keeps its meaning
(zero weight beyond cosine 0.28 to the prototype).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PATTERN_NORMALIZERS = ("softmax", "l2")
PROTOTYPE_WEIGHTINGS = ("weighted", "constant")
FLOOR = 1e-12
NORM_FLOOR = 1e-12  # as F.normalize: a zero feature stays zero


def initial_prototypes(features: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor,
                       num_classes: int, top_k: int) -> torch.Tensor:
    """C×D: per class, the mean normalised feature of its ``top_k`` samples of highest
    classification confidence (the softmax probability of their label). A class without
    samples gets a zero row (cosine 0 to everything)."""
    prototypes = features.new_zeros(num_classes, features.shape[1], dtype=torch.float32)
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members):
            best = members[torch.topk(confidence[members], min(top_k, len(members))).indices]
            prototypes[c] = F.normalize(features[best].float(), dim=1).mean(0)
    return prototypes


CHUNK = 4096  # rows per block: small enough that the norm and the product share one read from memory


def chunks(features: torch.Tensor, chunk: int):
    """(rows, float32 features, their L2 norms) block by block: the features are read once
    per pass, never copied or normalised whole (a million 2048-d rows are 8 GB in float32);
    a block's norm is taken while the block is still in cache."""
    for start in range(0, len(features), chunk):
        g = features[start:start + chunk].float()
        yield slice(start, start + len(g)), g, torch.linalg.vector_norm(g, dim=1)


def visual_similarity(features: torch.Tensor, prototypes: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """s_v: N×C cosine similarity of each feature to each (initial) prototype."""
    prototypes = F.normalize(prototypes.float(), dim=1)
    out = features.new_zeros(len(features), len(prototypes), dtype=torch.float32)
    for rows, g, norms in chunks(features, chunk):
        out[rows] = (g @ prototypes.T) / norms.clamp_min(NORM_FLOOR)[:, None]
    return out


def normalize_pattern(similarities: torch.Tensor, psi: str) -> torch.Tensor:
    """ψ of eq. 4, along the last dimension: softmax, or division by the L2 norm."""
    if psi == "softmax":
        return torch.softmax(similarities, dim=-1)
    if psi == "l2":
        return F.normalize(similarities, dim=-1)
    raise ValueError(f"psi must be one of {PATTERN_NORMALIZERS}, got {psi!r}")


def divergence(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ estimate) per row, in its generalised form Σ a·log(a/b) − a + b.

    For two distributions (ψ = softmax) the extra terms cancel and this is the KL
    divergence; for L2-normalised vectors, which need not sum to one, it stays ≥ 0.
    Entries are floored at 1e-12 (an L2-normalised cosine vector may hold negatives).
    """
    a, b = target.clamp_min(FLOOR), estimate.clamp_min(FLOOR)
    return (a * (a.log() - b.log()) - a + b).sum(-1)


def consistency(semantic: torch.Tensor, visual: torch.Tensor, labels: torch.Tensor,
                psi: str = "softmax", epsilon: float = 1e-3, gamma: float = 1.0) -> torch.Tensor:
    """p_i = 1 / (KL(ψ(s_t^{y_i}) ‖ ψ(s_v^i)) + ε)^γ  (eq. 4).

    ``semantic`` is the C×C class relation graph S_t, whose row y_i is the semantic
    pattern of sample i's labelled class; ``visual`` is s_v (N×C). In float64: KL values of
    1e-3 and below are common, and p is their inverse, raised to γ."""
    target = normalize_pattern(semantic.double()[labels], psi)
    estimate = normalize_pattern(visual.double(), psi)
    return (divergence(target, estimate) + epsilon).pow(-gamma)


def visual_prototypes(features: torch.Tensor, labels: torch.Tensor, p: torch.Tensor, num_classes: int,
                      weighting: str = "weighted", top_k: int | None = None, chunk: int = CHUNK) -> torch.Tensor:
    """v_c = Σ g_i p_i / Σ p_i over the samples labelled c (eq. 5), then normalised.

    ``top_k`` keeps only each class's k samples of highest p (the "top-k matched images"
    of Table 3); ``weighting="constant"`` averages them with equal weight (Table 3's
    ablation). A class without samples gets a zero prototype."""
    if weighting not in PROTOTYPE_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {PROTOTYPE_WEIGHTINGS}, got {weighting!r}")
    coefficients = p.float() if weighting == "weighted" else torch.ones(len(p), device=p.device)
    if top_k is not None:
        kept = torch.zeros_like(coefficients)
        for c in range(num_classes):
            members = torch.nonzero(labels == c).flatten()
            members = members[torch.topk(p[members], min(top_k, len(members))).indices]
            kept[members] = 1.0
        coefficients = coefficients * kept
    coefficients, labels = coefficients.to(features.device), labels.to(features.device)
    sums = features.new_zeros(num_classes, features.shape[1], dtype=torch.float32)
    totals = features.new_zeros(num_classes, dtype=torch.float32)
    for rows, g, norms in chunks(features, chunk):
        scatter = g.new_zeros(num_classes, len(g))  # row c: coefficient / norm of class c's samples
        scatter[labels[rows], torch.arange(len(g), device=g.device)] = coefficients[rows] / norms.clamp_min(NORM_FLOOR)
        sums += scatter @ g
        totals.index_add_(0, labels[rows], coefficients[rows])
    return F.normalize(sums / totals.clamp_min(FLOOR)[:, None], dim=1)


def prototype_distances(features: torch.Tensor, prototypes: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """N×C Euclidean distances ‖v_c − g_i‖₂ of the normalised features to every prototype,
    from ‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b: one matrix product per block."""
    prototypes = prototypes.float()
    squared = (prototypes * prototypes).sum(1)
    out = features.new_zeros(len(features), len(prototypes), dtype=torch.float32)
    for rows, g, norms in chunks(features, chunk):
        floored = norms.clamp_min(NORM_FLOOR)
        unit = (norms / floored) ** 2  # 1, or 0 for an all-zero feature
        out[rows] = (unit[:, None] + squared[None] - 2 * (g @ prototypes.T) / floored[:, None]).clamp_min(0).sqrt()
    return out


def sample_weights(distances: torch.Tensor, alpha: float = 1.2, beta: float = 1.5) -> torch.Tensor:
    """w = max{0, α − d}^β  (eq. 6), elementwise over distances of any shape."""
    return (alpha - distances).clamp_min(0.0).pow(beta)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_i w_i · CE(logits_i, y_i): eq. 1 over a batch of B samples."""
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (weights.to(losses) * losses).mean()


def per_class_cross_entropy(logits: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_i Σ_c −w_{i,c} · log p_{i,c}: eq. 7, every class weighted by the sample's
    closeness to that class's prototype (eq. 7 as printed omits the minus sign of a loss)."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    return -(class_weights.to(log_probs) * log_probs).sum(1).mean()

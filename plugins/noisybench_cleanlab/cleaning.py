"""The cleaning rule: cleanlab's label issues on out-of-sample probabilities, then prune or relabel.

Given the noisy labels and pred_probs (each row from a model that never trained on that
sample), ``cleanlab.filter.find_label_issues`` estimates the confident joint and flags the
issues by ``filter_by`` (cleanlab's default ``prune_by_noise_rate``: the CL paper's PBNR);
every sample's noise score is 1 − its label quality, cleanlab's ``self_confidence``
p(noisy label). ``prune`` trains on the unflagged samples only, each of class k weighted
1 / max(P(ỹ = k | y* = k), 1e-3) with ``class_weights`` (as ``CleanLearning.fit`` does with
the noise matrix it estimates, ``estimate_py_and_noise_matrices_from_probabilities``, so a
class keeps its apparent size after pruning); ``relabel`` trains on every sample, a flagged
one with the out-of-sample prediction argmax_k p_k as its label. The class weights are scaled
to average 1 over the kept samples (``mean_one_over_kept``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")
ACTIONS = ("prune", "relabel")


class Cleaning(NamedTuple):
    flagged: np.ndarray  # bool: cleanlab's label issues
    noise_score: np.ndarray  # 1 − p(noisy label), out of sample
    label: np.ndarray  # the label each sample trains with
    keep: np.ndarray  # float: each sample's loss weight, 0 where pruned
    predicted: np.ndarray  # argmax of the out-of-sample probabilities


def class_weights(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """1 / max(P(ỹ = k | y* = k), 1e-3) per class k, from cleanlab's noise-matrix estimate."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    _, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(
        labels, pred_probs, converge_latent_estimates=False)  # as CleanLearning (its default)
    return 1.0 / np.maximum(np.diag(noise_matrix), 1e-3)


def mean_one_over_kept(keep: np.ndarray) -> np.ndarray:
    """``keep`` scaled so that the kept samples' weights average 1: the class weights set the
    classes' balance, not the step size, as the authors' weighted-mean cross-entropy
    (``nn.CrossEntropyLoss(weight=...)``: Σ w·ℓ / Σ w) over their kept samples."""
    kept = keep > 0
    return keep / keep[kept].mean() if kept.any() else keep


def clean(labels: np.ndarray, pred_probs: np.ndarray, filter_by: str = "prune_by_noise_rate",
          action: str = "prune", reweight: bool = False) -> Cleaning:
    """Flag, score and clean ``labels`` (n) from ``pred_probs`` (n × K, rows summing to 1)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    flagged = find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)  # n_jobs=1: no forks mid-run
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    predicted = pred_probs.argmax(axis=1)
    if action == "relabel":
        label, keep = np.where(flagged, predicted, labels), np.ones(len(labels))
    else:
        label, keep = labels.copy(), (~flagged).astype(float)
        if reweight:
            keep = mean_one_over_kept(keep * class_weights(labels, pred_probs)[labels])
    return Cleaning(flagged, 1.0 - quality, label, keep, predicted)

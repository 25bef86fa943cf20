"""The cleaning rule: cleanlab's label issues on out-of-sample probabilities, then prune or relabel.

Given the noisy labels and pred_probs (each row from a model that never trained on that
sample), ``cleanlab.filter.find_label_issues`` estimates the confident joint and flags the
issues by ``filter_by`` (cleanlab's default ``prune_by_noise_rate``: the CL paper's PBNR);
every sample's noise score is 1 − its label quality, cleanlab's ``self_confidence``
p(noisy label). ``prune`` trains on the unflagged samples only; ``relabel`` trains on every
sample, a flagged one with the out-of-sample prediction argmax_k p_k as its label.
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
    keep: np.ndarray  # float: 1 trains, 0 pruned
    predicted: np.ndarray  # argmax of the out-of-sample probabilities


def clean(labels: np.ndarray, pred_probs: np.ndarray, filter_by: str = "prune_by_noise_rate",
          action: str = "prune") -> Cleaning:
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
    return Cleaning(flagged, 1.0 - quality, label, keep, predicted)

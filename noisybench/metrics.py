"""Effectiveness, label-quality and noise-detection metrics (fractions in [0, 1])."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification(true: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 over all ``num_classes`` classes."""
    labels = list(range(num_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, pred, labels=labels, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
    }


def confusion(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    return confusion_matrix(true, pred, labels=list(range(num_classes)))


def label_quality(
    noisy: np.ndarray, true: np.ndarray | None, corrected: np.ndarray | None
) -> dict[str, float | None]:
    """How right the training labels are before and after a method corrects them."""
    return {
        "noisy_accuracy": None if true is None else float(np.mean(noisy == true)),
        "corrected_accuracy": None if true is None or corrected is None else float(np.mean(corrected == true)),
        "changed_fraction": None if corrected is None else float(np.mean(corrected != noisy)),
    }


def detection(
    is_noisy: np.ndarray | None, flagged: np.ndarray | None, score: np.ndarray | None
) -> dict[str, float | None]:
    """Noise detection with 'mislabelled' as the positive class.

    FDR = flagged clean / flagged; recall = flagged noisy / noisy; F1 of precision and
    recall; AUC of ``score`` (higher = more likely mislabelled). Null where undefined.
    """
    out: dict[str, float | None] = {"auc": None, "fdr": None, "recall": None, "f1": None}
    if is_noisy is None:
        return out
    if score is not None and 0 < is_noisy.sum() < len(is_noisy):
        out["auc"] = float(roc_auc_score(is_noisy, score))
    if flagged is not None:
        hits = int(np.sum(flagged & is_noisy))
        n_flagged, n_noisy = int(flagged.sum()), int(is_noisy.sum())
        precision = hits / n_flagged if n_flagged else None
        out["fdr"] = None if precision is None else 1.0 - precision
        out["recall"] = hits / n_noisy if n_noisy else None
        if precision is not None and out["recall"] is not None:
            total = precision + out["recall"]
            out["f1"] = 2 * precision * out["recall"] / total if total else 0.0
    return out


def sample_metrics(
    noisy: np.ndarray, true: np.ndarray | None, outputs: dict[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """Label-quality and detection metrics from a method's per-sample outputs."""
    corrected = outputs.get("corrected_label")
    flagged = outputs.get("flagged")
    if flagged is None and corrected is not None:
        flagged = corrected != noisy
    is_noisy = None if true is None else noisy != true
    return {
        "labels": label_quality(noisy, true, corrected),
        "detection": detection(is_noisy, None if flagged is None else flagged.astype(bool), outputs.get("noise_score")),
    }

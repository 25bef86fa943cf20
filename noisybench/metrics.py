"""Effectiveness, label-quality and noise-detection metrics (fractions in [0, 1])."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# scikit-learn and pandas are imported where used: a run needs them only once it has trained.


def accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """The fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(true) == np.asarray(pred))) if len(true) else 0.0


def classification(true: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 over all ``num_classes`` classes."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(num_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, pred, labels=labels, average="macro", zero_division=0
    )
    return {
        "accuracy": accuracy(true, pred),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
    }


def confusion(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(true, pred, labels=list(range(num_classes)))


def label_quality(
    noisy: np.ndarray, true: np.ndarray | None, flags: np.ndarray | None, corrected: np.ndarray | None
) -> dict[str, float | None]:
    """How right the training labels are before and after a method corrects them.

    ``true`` holds -1 where unknown and ``flags`` (1 wrong, 0 right, -1 unknown) where only
    the rightness of a label is known: each accuracy is taken over the samples where it
    can be computed.
    """
    known_true = None if true is None else true >= 0
    known_flags = None if flags is None else flags >= 0
    return {
        "noisy_accuracy": None if known_flags is None or not known_flags.any() else float(np.mean(flags[known_flags] == 0)),
        "corrected_accuracy": None
        if corrected is None or known_true is None or not known_true.any()
        else float(np.mean(corrected[known_true] == true[known_true])),
        "changed_fraction": None if corrected is None else float(np.mean(corrected != noisy)),
    }


def detection(
    is_noisy: np.ndarray | None, flagged: np.ndarray | None, score: np.ndarray | None
) -> dict[str, float | None]:
    """Noise detection with 'mislabelled' as the positive class.

    FDR = flagged clean / flagged; recall = flagged noisy / noisy; F1 of precision and
    recall. A 0/0 counts as 0 (scikit-learn's ``zero_division=0``): flagging nothing gives
    FDR 0, recall 0, F1 0, so every run has a number and a mean over seeds is over all of
    them. AUC of ``score`` (higher = more likely mislabelled), taken in float64; null where
    only one class is present. All null without ``is_noisy``.
    """
    out: dict[str, float | None] = {"auc": None, "fdr": None, "recall": None, "f1": None}
    if is_noisy is None:
        return out
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    is_noisy = np.asarray(is_noisy, dtype=bool)
    if score is not None and 0 < is_noisy.sum() < len(is_noisy):
        out["auc"] = float(roc_auc_score(is_noisy, np.asarray(score, dtype=np.float64)))
    if flagged is not None:
        flagged = np.asarray(flagged, dtype=bool)
        precision, recall, f1, _ = precision_recall_fscore_support(
            is_noisy, flagged, average="binary", pos_label=True, zero_division=0
        )
        out["fdr"] = float(1.0 - precision) if flagged.any() else 0.0
        out["recall"], out["f1"] = float(recall), float(f1)
    return out


def noise_auc(flags: np.ndarray | None, score: np.ndarray | None) -> float | None:
    """``detection``'s AUC alone, over the samples whose label is known right or wrong: the
    per-epoch figure. Taken as the Mann–Whitney U of the wrong labels' scores over the right
    ones' divided by their count product (ties count ½), which is the ROC AUC; SciPy's U
    skips the input checks that make ``roc_auc_score`` cost milliseconds every epoch."""
    if flags is None or score is None or not (flags >= 0).any():
        return None
    from scipy.stats import mannwhitneyu

    score = np.asarray(score, dtype=np.float64)
    wrong, right = score[flags == 1], score[flags == 0]
    if len(wrong) == 0 or len(right) == 0:
        return None
    return float(mannwhitneyu(wrong, right, method="asymptotic").statistic / (len(wrong) * len(right)))


def sample_metrics(
    noisy: np.ndarray, true: np.ndarray | None, flags: np.ndarray | None, outputs: dict[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """Label-quality and detection metrics from a method's per-sample outputs.

    Detection is scored on the samples whose label is known to be right or wrong.
    """
    corrected = outputs.get("corrected_label")
    flagged = outputs.get("flagged")
    if flagged is None and corrected is not None:
        flagged = corrected != noisy
    detected: dict[str, Any] = detection(None, None, None)
    if flags is not None and (flags >= 0).any():
        known = flags >= 0
        score = outputs.get("noise_score")
        detected = detection(
            flags[known] == 1,
            None if flagged is None else np.asarray(flagged, dtype=bool)[known],
            None if score is None else np.asarray(score, dtype=float)[known],
        )
    return {"labels": label_quality(noisy, true, flags, corrected), "detection": detected}


def per_class_label_accuracy(
    noisy: np.ndarray, true: np.ndarray, initial: np.ndarray, final: np.ndarray, class_names: list[str]
) -> pd.DataFrame:
    """Label accuracy per true class: original, after the first correction, at the end (SMP Fig. 4a).

    Rows are the samples whose true label is known, grouped by that label.
    """
    import pandas as pd

    known = true >= 0
    frame = pd.DataFrame({
        "class": np.asarray(class_names, dtype=object)[true[known]],
        "original": noisy[known] == true[known],
        "corrected_initial": initial[known] == true[known],
        "corrected_final": final[known] == true[known],
    })
    table = frame.groupby("class", sort=False).agg(
        samples=("original", "size"), original=("original", "mean"),
        corrected_initial=("corrected_initial", "mean"), corrected_final=("corrected_final", "mean"),
    )
    order = [name for name in class_names if name in table.index]
    return table.loc[order].reset_index()

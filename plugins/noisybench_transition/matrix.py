"""The transition matrix T (row i: the noisy-label distribution of true class i): from the
run's synthetic noise, from a file, or estimated by the anchor-point rule of Patrini et al.'s
``NoiseEstimator`` (github.com/giorgiop/loss-correction, ``models.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from noisybench.errors import ConfigError
from noisybench.noise import NoiseSpec, similar_classes

CLASS_CONDITIONAL = ("symmetric", "asymmetric", "mapped", "uniform")  # noise kinds with one T for all samples


def known_transition(spec: NoiseSpec, num_classes: int, dataset: str, class_names: list[str]) -> np.ndarray:
    """The T that generated the run's synthetic noise (float64, rows sum to 1).

    symmetric: 1 − r on the diagonal, r/(K − 1) elsewhere (Patrini's ``build_uniform_P``);
    uniform: every label redrawn from all K classes with probability r, so 1 − r + r/K and r/K;
    asymmetric: 1 − r, and r at (i, i + 1 mod K); mapped: 1 − r, and r at (i, target(i)) for
    the mapped classes, 1 for the others.
    """
    if spec.type not in CLASS_CONDITIONAL:
        raise ConfigError(f"the transition matrix of noise '{spec.type}' is not known: it is known for "
                          f"{', '.join(CLASS_CONDITIONAL)} noise only; estimate it instead")
    r, k = spec.rate, num_classes
    if spec.type == "symmetric":
        return np.full((k, k), r / max(k - 1, 1)) + np.eye(k) * (1 - r - r / max(k - 1, 1))
    if spec.type == "uniform":
        return np.full((k, k), r / k) + np.eye(k) * (1 - r)
    target = (np.arange(k) + 1) % k if spec.type == "asymmetric" else similar_classes(dataset, class_names)
    matrix = np.eye(k)
    moved = np.flatnonzero(target >= 0)
    matrix[moved, moved] = 1 - r
    matrix[moved, target[moved]] += r
    return matrix


def read_transition(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """A K×K matrix from a CSV file (one row per true class, comma-separated, no header);
    each row non-negative and summing to 1 (within 1e-6); K = ``num_classes`` if given, else
    the number of rows."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"transition file {path}: not a readable file")
    try:
        rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"transition file {path}: unreadable ({exc})") from None
    num_classes = len(rows) if num_classes is None else num_classes
    if len(rows) != num_classes or not rows:
        raise ConfigError(f"transition file {path}: {len(rows)} rows, expected one per class ({num_classes})")
    matrix = np.zeros((num_classes, num_classes))
    for i, line in enumerate(rows):
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            raise ConfigError(f"transition file {path}, line {i + 1}: expected {num_classes} numbers") from None
        if len(values) != num_classes or not all(np.isfinite(values)) or min(values) < 0 \
                or abs(sum(values) - 1) > 1e-6:
            raise ConfigError(f"transition file {path}, line {i + 1}: expected {num_classes} non-negative "
                              f"numbers summing to 1 (a {num_classes}×{num_classes} matrix)")
        matrix[i] = values
    return matrix


def anchor_transition(probs: np.ndarray, percentile: float) -> np.ndarray:
    """T̂ from a first model's softmax outputs ``probs`` (N×K) on the training images.

    Row i is the output of class i's anchor point, row-normalised: with ``percentile`` q < 100
    the sample with the highest p(i|x) strictly below the q-th percentile of p(i|x) (numpy's
    ``interpolation='higher'``), so the top (100 − q)% are left out as outliers; with q = 100
    the arg-max itself (the authors' setting for CIFAR-100). Ties go to the first sample.
    """
    probs = np.asarray(probs, dtype=np.float64)
    matrix = np.empty((probs.shape[1], probs.shape[1]))
    for i in range(probs.shape[1]):
        column = probs[:, i]
        if percentile < 100:
            threshold = np.percentile(column, percentile, method="higher")
            column = np.where(column >= threshold, 0.0, column)
        matrix[i] = probs[int(np.argmax(column))]
    return matrix / matrix.sum(axis=1, keepdims=True)


def estimation_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """‖T̂ − T‖₁ / ‖T‖₁ (entry-wise sums; T-Revision's measure, Xia et al. 2019): the mean over
    rows of each row's L1 distance, between 0 and 2."""
    return float(np.abs(np.asarray(estimate) - truth).sum() / np.abs(truth).sum())

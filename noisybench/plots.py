"""Figures of a run, drawn with matplotlib (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from noisybench.records import atomic_path  # noqa: E402


def chosen_epochs(total: int, chosen: list[int] | None) -> list[int]:
    """The epochs to draw: the given ones, or four spread evenly up to the last."""
    if chosen:
        return sorted({e for e in chosen if 1 <= e <= total})
    return sorted({max(1, round(total * k / 4)) for k in range(1, 5)})


def weight_histograms(snapshots: dict[int, tuple[np.ndarray, np.ndarray]], path: Path, name: str = "weight") -> None:
    """One panel per epoch: the distribution of a per-sample value for clean and for
    mislabelled samples (as the LSW paper's Fig. 5 shows its weights)."""
    epochs = sorted(snapshots)
    figure, axes = plt.subplots(1, len(epochs), figsize=(3.2 * len(epochs), 2.8), squeeze=False, sharey=False)
    values = np.concatenate([v for v, _ in snapshots.values()])
    bins = np.linspace(min(0.0, values.min()), max(1.0, values.max()), 31)
    for ax, epoch in zip(axes[0], epochs):
        weights, noisy = snapshots[epoch]
        ax.hist(weights[~noisy], bins=bins, alpha=0.6, label="clean", color="tab:blue")
        ax.hist(weights[noisy], bins=bins, alpha=0.6, label="mislabelled", color="tab:red")
        ax.set_title(f"epoch {epoch}")
        ax.set_xlabel(name)
    axes[0][0].set_ylabel("samples")
    axes[0][0].legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)

"""Figures of a run, drawn with matplotlib (no display needed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from noisybench.records import atomic_path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when a figure is drawn
    (it takes a fifth of a second that a run without figures need not pay)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path) -> None:
    """Write a figure as PNG atomically and free it."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    pyplot().close(figure)


def chosen_epochs(total: int, chosen: list[int] | None) -> list[int]:
    """The epochs to draw: the given ones, or four spread evenly up to the last."""
    if chosen:
        return sorted({e for e in chosen if 1 <= e <= total})
    return sorted({max(1, round(total * k / 4)) for k in range(1, 5)})


def weight_histograms(snapshots: dict[int, tuple[np.ndarray, np.ndarray]], path: Path, name: str = "weight") -> None:
    """One panel per epoch: the distribution of a per-sample value for clean and for
    mislabelled samples (as the LSW paper's Fig. 5 shows its weights)."""
    epochs = sorted(snapshots)
    figure, axes = pyplot().subplots(1, len(epochs), figsize=(3.2 * len(epochs), 2.8), squeeze=False, sharey=False)
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
    save(figure, path)


def title(runs) -> str:
    """What the runs of a figure share, for its title: dataset, noise and setting (each one
    value, or how many there are)."""
    parts = []
    for column, word in (("dataset", "dataset"), ("noise", "noise"), ("setting", "setting")):
        values = sorted({str(v) for v in runs[column].dropna()}) if column in runs else []
        parts.append(f"{word} {values[0]}" if len(values) == 1 else f"{len(values)} {word}s")
    return ", ".join(parts)


def integer_epochs(ax) -> None:
    """Ticks at whole epochs only (matplotlib would put some at 1.5, 2.5, ...)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def accuracy_vs_time(runs, path: Path) -> None:
    """Test accuracy against training time, one colour per experiment (``experiment_name``,
    the seeds the leaderboard pools into one row): every seed as a dot, the mean with one
    standard deviation as error bars, labelled with the seeds it pools."""
    figure, ax = pyplot().subplots(figsize=(5.5, 4))
    for name, group in sorted(runs.groupby("experiment_name"), key=lambda item: item[0]):
        x, y = group["total_seconds"].astype(float), 100 * group["test_accuracy"].astype(float)
        points = ax.scatter(x, y, alpha=0.4, s=18)
        ax.errorbar(x.mean(), y.mean(), xerr=x.std(ddof=1) if len(x) > 1 else None,
                    yerr=y.std(ddof=1) if len(y) > 1 else None, fmt="o", color=points.get_facecolor()[0][:3],
                    capsize=3, label=f"{name} (n={len(group)})")
        ax.annotate(f"n={len(group)}", (x.mean(), y.mean()), xytext=(5, 5), textcoords="offset points", fontsize=7)
    ax.set_title(title(runs), fontsize=9)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    save(figure, path)


def label_curves(histories: dict[str, list[list[dict]]], path: Path, heading: str = "") -> bool:
    """Label accuracy and fraction of labels changed per epoch for the experiments (name:
    their seeds' histories) that correct labels (mean over seeds, band of ±1 std, the seed
    count in the legend), under ``heading``. Returns False if none corrects labels."""
    curves = {}
    for name, runs in sorted(histories.items()):
        acc = [[h.get("label_accuracy") for h in run] for run in runs]
        changed = [[h.get("changed_fraction") for h in run] for run in runs]
        if any(v is not None for run in acc for v in run):
            length = min(len(run) for run in acc)  # seeds of one config have equal lengths
            curves[f"{name} (n={len(runs)})"] = (np.array([r[:length] for r in acc], dtype=float),
                                                np.array([r[:length] for r in changed], dtype=float))
    if not curves:
        return False
    figure, axes = pyplot().subplots(1, 2, figsize=(9, 3.5))
    for name, (acc, changed) in curves.items():
        for ax, values in zip(axes, (acc, changed)):
            epochs = np.arange(1, values.shape[1] + 1)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # epochs before the first correction
                mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            ax.plot(epochs, 100 * mean, label=name)
            ax.fill_between(epochs, 100 * (mean - std), 100 * (mean + std), alpha=0.2)
    axes[0].set_ylabel("training-label accuracy (%)")
    axes[1].set_ylabel("labels changed (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        integer_epochs(ax)
        ax.legend(fontsize=8)
    if heading:
        figure.suptitle(heading, fontsize=9)
    save(figure, path)
    return True

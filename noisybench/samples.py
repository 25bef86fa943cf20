"""The per-sample tables of a run: ``samples.csv`` (each training sample: its labels, its
last training loss, whether its image was unreadable, and every column the method gives
through ``noisybench_sample_outputs``), ``eval_samples.csv`` (val and test samples scored by
the final model) and, with ``data.cv_folds``, ``heldout.csv``.

Called by the record (results.py) at the end of a run; ``sample_outputs`` also by the loop
(engine.py) and the label metrics after each epoch.

To add a column to samples.csv: a method returns it from ``noisybench_sample_outputs``
(one value per training sample); a core column goes into ``samples_table``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from noisybench.datasets import DataSplits, image_paths, labels_of
from noisybench.evaluation import label_probability
from noisybench.run import Run

if TYPE_CHECKING:
    import pandas as pd


def sample_outputs(run: Run) -> dict[str, np.ndarray]:
    """The method's per-sample columns as numpy arrays of length ``run.num_train``."""
    columns: dict[str, np.ndarray] = {}
    for part in reversed(run.hook.noisybench_sample_outputs(run=run)):
        for name, values in (part or {}).items():
            array = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
            if len(array) != run.num_train:
                raise ValueError(f"sample output '{name}' has {len(array)} rows, expected {run.num_train}")
            columns[name] = array
    return columns


def samples_table(splits: DataSplits, train_loss: np.ndarray, corrupt: np.ndarray | None,
                  columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """samples.csv: index, path (image files only), noisy label, true label and is_noisy
    where known (empty where not), the last epoch's training loss, corrupt (image files
    only), then the method's ``columns``."""
    import pandas as pd

    table = pd.DataFrame({"index": np.arange(len(splits.train_labels)), "noisy_label": splits.train_labels})
    paths = image_paths(splits.train)
    if paths is not None:
        table.insert(1, "path", paths)
    if splits.true_labels is not None:
        table["true_label"] = pd.array(np.where(splits.true_labels >= 0, splits.true_labels, None), dtype="Int64")
    flags = splits.is_noisy()
    if flags is not None:
        table["is_noisy"] = pd.array(np.where(flags >= 0, flags, None), dtype="Int64")
    table["train_loss"] = train_loss
    if corrupt is not None:
        table["corrupt"] = corrupt.astype(int)
    for name, values in columns.items():
        table[name] = values
    return table


def eval_samples_table(splits: DataSplits, scores: dict[str, tuple]) -> pd.DataFrame | None:
    """val and test samples scored by the final model (out of sample: it never trained on
    them): split, index, path, label, prediction, p(label) and noise_score = 1 - p(label)."""
    import pandas as pd

    parts = []
    for name, (true, pred, chance) in scores.items():
        part = pd.DataFrame({"split": name, "index": np.arange(len(true)), "label": true, "predicted_label": pred,
                             "p_label": chance, "noise_score": 1.0 - chance})
        paths = image_paths(getattr(splits, name))
        if paths is not None:
            part.insert(2, "path", paths)
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else None


def heldout_table(run: Run, splits: DataSplits) -> Any:
    """data.cv_folds: the held-out fold's samples scored by the final model, by their
    position in the whole training set: noisy label, p(label), noise_score = 1 - p(label).
    A collective: every process calls it."""
    import pandas as pd

    if splits.heldout is None:
        return None
    logits, _ = run.predict(dataset=splits.heldout)
    labels = torch.as_tensor(labels_of(splits.heldout), device=logits.device)
    chance = label_probability(logits, labels).cpu().numpy()
    return pd.DataFrame({"index": splits.heldout_index, "noisy_label": labels.cpu().numpy(), "p_label": chance,
                         "noise_score": 1.0 - chance})

"""``noisybench export``: a run's per-sample tables as a to-do list for cleaning data.

Every split, marked in ``split``. Training rows are sorted by suspicion: the method's noise
score (highest first), else its flagged samples first, else the training loss against the
noisy label. Val and test rows (``eval_samples.csv``) are scored by the final model, which
never trained on them: noise_score = 1 − p(label), highest first. With cross-validated fold
runs (``folds.py``), training rows gain ``cv_noise_score``, the same out-of-sample score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from noisybench import records
from noisybench.errors import NoisybenchError

COLUMNS = ["split", "index", "path", "noisy_label", "noisy_class", "corrected_label", "corrected_class", "weight",
           "noise_score", "flagged", "cv_noise_score", "predicted_label"]


def suspects(run_dir: str | Path) -> pd.DataFrame:
    run_dir = Path(run_dir)
    samples_path = run_dir / records.SAMPLES_FILE
    if not samples_path.exists():
        raise NoisybenchError(f"{run_dir}: no {records.SAMPLES_FILE}; is it a finished run folder?")
    try:
        samples = pd.read_csv(samples_path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NoisybenchError(f"{samples_path}: not a readable samples table ({str(exc).splitlines()[0]})") from None
    if not {"index", "noisy_label"} <= set(samples) or ("train_loss" not in samples and "noise_score" not in samples):
        raise NoisybenchError(f"{samples_path}: not a noisybench samples table (no index, noisy_label, train_loss)")
    record = records.read_record(run_dir / records.METRICS_FILE) or {}  # only the class names are read from it
    names = record.get("class_names")
    table = samples.copy()
    if "flagged" not in table and "corrected_label" in table:
        table["flagged"] = table["corrected_label"] != table["noisy_label"]
    if names:
        lookup = np.asarray(names, dtype=object)
        table["noisy_class"] = lookup[table["noisy_label"]]
        if "corrected_label" in table:
            table["corrected_class"] = lookup[table["corrected_label"]]
    if "noise_score" in table:
        order = table.sort_values(["noise_score", "index"], ascending=[False, True], kind="stable")
    elif "flagged" in table:
        order = table.sort_values(["flagged", "train_loss", "index"], ascending=[False, False, True], kind="stable")
    else:
        order = table.sort_values(["train_loss", "index"], ascending=[False, True], kind="stable")
    order = order.assign(split="train")
    cv = run_dir / "cv_scores.csv"
    if cv.is_file():
        order = order.merge(pd.read_csv(cv), on="index", how="left")
    held_out = run_dir / records.EVAL_SAMPLES_FILE
    parts = [order]
    if held_out.is_file():
        scored = pd.read_csv(held_out).rename(columns={"label": "noisy_label"})
        if names:
            scored["noisy_class"] = np.asarray(names, dtype=object)[scored["noisy_label"]]
        for split in ("val", "test"):
            rows = scored[scored["split"] == split]
            parts.append(rows.sort_values(["noise_score", "index"], ascending=[False, True], kind="stable"))
    table = pd.concat(parts, ignore_index=True)
    return table[[c for c in COLUMNS if c in table]]


def export(run_dir: str | Path, fmt: str = "csv", output: str | Path | None = None, folds: int = 0,
           overrides: list[str] | None = None) -> Path:
    if folds:
        from noisybench.folds import cross_validate

        cross_validate(run_dir, folds, overrides or [])
    frame = suspects(run_dir)
    output = Path(output) if output else Path(run_dir) / f"suspects.{fmt}"
    if fmt == "csv":
        records.write_csv(output, frame)
    elif fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise NoisybenchError("--format parquet needs pyarrow: pip install pyarrow") from None
        with records.atomic_path(output) as tmp:
            frame.to_parquet(tmp, index=False)
    else:
        raise NoisybenchError(f"--format {fmt}: expected csv or parquet")
    return output

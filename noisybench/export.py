"""``noisybench export``: a run's per-sample tables as a to-do list for cleaning data.

Every split, marked in ``split``. Training rows are sorted by suspicion: the method's noise
score (highest first), else its flagged samples first, else the training loss against the
noisy label. Val and test rows (``eval_samples.csv``) are scored by the final model, which
never trained on them: noise_score = 1 − p(label), highest first. With cross-validated fold
runs (``folds.py``), training rows gain ``cv_noise_score``, the same out-of-sample score.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from noisybench import records
from noisybench.errors import NoisybenchError
from noisybench.inputs import NotRegular, read_bytes

TABLE_LIMIT = 2**31  # a samples table of a few million rows

COLUMNS = ["split", "index", "path", "noisy_label", "noisy_class", "corrected_label", "corrected_class", "weight",
           "noise_score", "flagged", "cv_noise_score", "predicted_label"]


def read_table(path: Path, required: tuple[str, ...], classes: int | None,
               labels: tuple[str, ...] = (), numbers: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table a run wrote, read as if anyone wrote it: the ``required`` columns present,
    ``index`` a whole number from 0, ``labels`` class ids (0..classes-1), ``numbers`` numeric
    where given; one line naming the file and its first bad row otherwise."""
    try:
        table = pd.read_csv(io.BytesIO(read_bytes(path, TABLE_LIMIT, "table")))
    except (ValueError, UnicodeDecodeError, NotRegular) as exc:
        raise NoisybenchError(f"{path}: not a readable table ({str(exc).splitlines()[0]})") from None
    missing = [c for c in required if c not in table]
    if missing:
        raise NoisybenchError(f"{path}: not a table noisybench wrote (no column {', '.join(missing)})")
    for column in [c for c in ("index", *labels, *numbers) if c in table]:
        values = pd.to_numeric(table[column], errors="coerce")
        if column in numbers:
            bad, what = values.isna() & table[column].notna(), "a number"
        else:
            bad = values.isna() | (values % 1 != 0) | (values < 0)
            if column in labels and classes:
                bad |= values >= classes
            what = "a class id of this run" if column in labels else "a sample index"
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise NoisybenchError(f"{path}:{row + 2}: {column} '{table[column].iloc[row]}' is not {what}")
        table[column] = values if column in numbers else values.astype(np.int64)
    return table


def class_names(run_dir: Path) -> list[str] | None:
    """The class names a run's metrics.json lists (None without a readable record)."""
    record = records.read_record(run_dir / records.METRICS_FILE) or {}
    names = record.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise NoisybenchError(f"{run_dir / records.METRICS_FILE}: class_names is not a list of names")
    return names


def suspects(run_dir: str | Path) -> pd.DataFrame:
    run_dir = Path(run_dir)
    samples_path = run_dir / records.SAMPLES_FILE
    if not samples_path.exists():
        raise NoisybenchError(f"{run_dir}: no {records.SAMPLES_FILE}; is it a finished run folder?")
    names = class_names(run_dir)
    classes = len(names) if names else None
    samples = read_table(samples_path, (), classes, labels=("noisy_label", "corrected_label"),
                         numbers=("train_loss", "noise_score", "weight"))
    if not {"index", "noisy_label"} <= set(samples) or ("train_loss" not in samples and "noise_score" not in samples):
        raise NoisybenchError(f"{samples_path}: not a noisybench samples table (no index, noisy_label, train_loss)")
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
    if cv.exists():
        order = order.merge(read_table(cv, ("index", "cv_noise_score"), None, numbers=("cv_noise_score",)),
                            on="index", how="left")
    held_out = run_dir / records.EVAL_SAMPLES_FILE
    parts = [order]
    if held_out.exists():
        scored = read_table(held_out, ("split", "index", "label", "noise_score"), classes, labels=("label",),
                            numbers=("noise_score",))
        scored = scored.rename(columns={"label": "noisy_label"})
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

"""``noisybench leaderboard``: run records → one table per dataset, setting and noise.

Rows are experiments: a method with one fingerprint (identity.py), so seeds are pooled
only when everything else about the runs is the same. Where one table holds runs that
differ in more than their method (another model, more epochs), each row's ``variant``
names the keys that differ, with its values. Cells are mean ± sample std over seeds; a
cell over fewer runs than its row's ``n`` (a metric some records lack) shows its own n.
Numbers stay numbers (``table``) until ``render`` formats them. Where
``benchmarks/reference.csv`` has the paper's number for the same method, dataset,
setting, noise and backbone, it sits beside the reproduced one with their difference.

Records are read as if anyone wrote them: one that is unreadable, malformed or of another
schema is named on stderr and skipped, the rest make the board. Markdown cells are escaped
(a ``|`` in a method name would add a column, ``<script>`` would reach a rendered page);
the table is written here rather than by ``DataFrame.to_markdown``, which needs tabulate,
pads every cell to its column's widest, re-formats numbers ("1.00" becomes "1") and escapes
neither.
"""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from noisybench import extra_tests, identity, records
from noisybench.config import load_yaml
from noisybench.errors import NoisybenchError
from noisybench.inputs import MIB, NotRegular, read_bytes

KEYS = ["dataset", "setting", "noise", "method"]
GROUP = [*KEYS, "fingerprint"]
METRICS = {  # column: (label, scale to percent)
    "test_accuracy": ("test acc (last)", 100),
    "best_val_test_accuracy": ("test acc (best val)", 100),
    "macro_f1": ("macro F1", 100),
    "label_accuracy": ("label acc", 100),
    "detection_auc": ("detection AUC", 100),
    "seconds_per_epoch": ("s/epoch", 1),  # training epochs, without the fine-tuning stage
    "peak_memory_mb": ("peak MB", 1),
}
REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference.csv"  # in a source checkout


def noise_name(noise: dict) -> str:
    if noise["type"] == "real" and noise.get("rate") is not None:  # a published level (redimagenet)
        return f"real:{noise['rate']:g}"
    if noise["type"] in ("none", "real"):
        return noise["type"]
    if noise["type"] == "human":
        return f"human:{noise.get('label_set')}"
    return f"{noise['type']}:{noise['rate']:g}"


def record_row(path: Path, data: dict) -> dict:
    """One metrics.json (``data``, read from ``path``) as a flat row; optional metrics may be absent or null."""
    version = data.get("schema_version")
    if version not in records.READABLE_SCHEMAS:
        raise NoisybenchError(f"{path}: schema_version {version!r} is not one this noisybench reads "
                              f"({', '.join(map(str, records.READABLE_SCHEMAS))})")
    found = record_experiment(data, path)
    get = lambda *keys: _dig(data, keys)  # noqa: E731
    for key in ("dataset", "setting", "method"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"{key} is not a name")
    if not isinstance(data.get("seed"), int) or not isinstance(found, dict):
        raise ValueError("seed or experiment missing")
    for section in ("noise", "test", "best_val", "labels", "detection", "efficiency"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise ValueError(f"{section} is not a mapping")
    numbers = {name: get(*keys) for name, keys in NUMBERS.items()}
    bad = [name for name, value in numbers.items() if value is not None and not is_number(value)]
    if bad:
        raise ValueError(f"{bad[0]} is not a number")
    epochs = get("efficiency", "epoch_seconds") or []
    if not isinstance(epochs, list) or not all(is_number(e) for e in epochs):
        raise ValueError("efficiency.epoch_seconds is not a list of numbers")
    stages = [h.get("stage", "train") for h in data.get("history", [])]
    if len(stages) == len(epochs) and "train" in stages:  # the fine-tuning stage is not a training epoch
        epochs = [s for s, stage in zip(epochs, stages) if stage == "train"]
    peak = get("efficiency", "peak_memory_bytes")
    return {
        "dataset": data["dataset"], "setting": data["setting"], "noise": noise_name(data["noise"]),
        "method": data["method"], "seed": data["seed"], "model": data.get("model"), "status": "finished",
        "fingerprint": data.get("fingerprint") or identity.fingerprint(found), "experiment": found,
        **{name: numbers[name] for name in ("test_accuracy", "best_val_test_accuracy", "macro_f1", "label_accuracy",
                                            "detection_auc")},
        "seconds_per_epoch": float(np.mean(epochs)) if epochs else None,
        "total_seconds": numbers["total_seconds"],
        "peak_memory_mb": peak / 2**20 if peak is not None else None,
        "folder": str(path.parent),
        **extra_tests.row_columns(data),
    }


NUMBERS = {"test_accuracy": ("test", "accuracy"), "best_val_test_accuracy": ("best_val", "test_accuracy"),
           "macro_f1": ("test", "macro_f1"), "label_accuracy": ("labels", "corrected_accuracy"),
           "detection_auc": ("detection", "auc"), "total_seconds": ("efficiency", "total_seconds"),
           "peak_memory_bytes": ("efficiency", "peak_memory_bytes")}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_experiment(data: dict, path: Path) -> dict:
    """The experiment a record describes: its own (schema 2); for schema 1, the keys of the
    config.yaml beside it, or failing that what the record names (method, data, model)."""
    if "experiment" in data:
        return data["experiment"]
    config = path.parent / records.CONFIG_FILE
    if config.is_file():
        return identity.config_experiment(load_yaml(config))
    return {"method": data["method"], "dataset": data["dataset"], "setting": data["setting"],
            "noise": noise_name(data["noise"]), "model.name": data.get("model"), "schema_version": 1}


def _dig(data: dict, keys) -> float | None:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def load_runs(root: str | Path) -> pd.DataFrame:
    """Every run under ``root``: finished ones from metrics.json, failed ones from failed.json."""
    root = Path(root)
    if not root.is_dir():
        raise NoisybenchError(f"no such folder: {root}")
    rows = []
    for path in sorted(root.rglob(records.METRICS_FILE)):
        data = records.read_record(path)
        if data is None:  # truncated, not JSON, not a record, not a regular file: say so and go on
            print(f"warning: skipping {path}: not a readable metrics.json", file=sys.stderr)
            continue
        try:
            rows.append(record_row(path, data))
        except (NoisybenchError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            print(f"warning: skipping {path}: not a metrics.json this noisybench reads ({reason})", file=sys.stderr)
    for path in sorted(root.rglob("failed.json")):
        if not (path.parent / records.METRICS_FILE).exists():
            try:
                failed = json.loads(read_bytes(path, MIB, "failure record"))
                method, seed = failed["method"], failed["seed"]
                if not isinstance(method, str) or not isinstance(seed, int):
                    raise ValueError("method or seed of another type")
            except (OSError, ValueError, KeyError, TypeError, RecursionError, NotRegular) as exc:
                print(f"warning: skipping {path}: not a readable failed.json ({exc})", file=sys.stderr)
                continue
            parts = path.parent.relative_to(root).parts
            rows.append({"dataset": parts[-3] if len(parts) >= 3 else None, "method": method,
                         "seed": seed, "status": "failed", "folder": str(path.parent)})
    if not rows:
        raise NoisybenchError(f"no run records (metrics.json) under {root}")
    return pd.DataFrame(rows)


def table(runs: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Numeric leaderboard: per group and method, n, failed, and mean/std of each metric."""
    finished = runs[runs["status"] == "finished"]
    failed = runs[runs["status"] == "failed"].groupby(["dataset", "method"]).size()
    columns = {**METRICS, **extra_tests.metric_columns(runs.columns)}
    rows = []
    for key, group in finished.groupby(GROUP, sort=False):
        row = dict(zip(GROUP, key))
        row["model"] = group["model"].iloc[0]
        row["experiment"] = group["experiment"].iloc[0]
        row["n"] = len(group)
        row["failed"] = int(failed.get((row["dataset"], row["method"]), 0))
        for column in columns:
            values = pd.to_numeric(group[column], errors="coerce").dropna()
            row[f"{column}_mean"] = values.mean() if len(values) else np.nan
            row[f"{column}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            row[f"{column}_n"] = len(values)
        rows.append(row)
    label_variants(rows)
    listed = {(r["dataset"], r["method"]) for r in rows}
    for (dataset, method), count in failed.items():
        if (dataset, method) not in listed:  # every run of it failed
            rows.append({"dataset": dataset, "setting": "?", "noise": "?", "method": method, "model": None,
                         "fingerprint": "", "variant": "", "core": "", "n": 0, "failed": int(count)})
    result = pd.DataFrame(rows).drop(columns="experiment", errors="ignore")
    for column in columns:
        for stat in ("mean", "std", "n"):
            result[f"{column}_{stat}"] = result.get(f"{column}_{stat}", 0 if stat == "n" else np.nan)
        result[f"{column}_n"] = result[f"{column}_n"].fillna(0).astype(int)
    ce = result[result["method"] == "ce"].groupby("core")["seconds_per_epoch_mean"]
    ce = ce.first()[ce.size() == 1]  # the one ce experiment that differs from a row only in its method
    result["ratio_to_ce"] = [row.seconds_per_epoch_mean / ce.get(row.core, np.nan) for row in result.itertuples()]
    paper = [paper_number(reference, row) for row in result.itertuples()] if reference is not None else []
    if any(pd.notna(v) for v in paper):  # the paper columns appear where a paper number matches
        result["paper_test_accuracy"] = paper
        result["difference"] = 100 * result["test_accuracy_mean"] - result["paper_test_accuracy"]
    for column in extra_tests.metric_columns(runs.columns) if reference is not None else ():
        found = [paper_number(reference, row, extra_tests.reference_metric(column)) for row in result.itertuples()]
        if any(pd.notna(v) for v in found):
            result[f"paper_{column}"] = found
    order = result.assign(_ce=result["method"] != "ce").sort_values(
        ["dataset", "setting", "noise", "_ce", "method", "variant"], kind="stable")
    first = [*KEYS, "variant", "fingerprint", "model", "n", "failed"]
    order = order[first + [c for c in order.columns if c not in first]]
    return order.drop(columns=["_ce", "core"]).reset_index(drop=True)


def method_free(found: dict, method: str) -> dict:
    """An experiment less its method: the name and the method's own config section."""
    return {k: v for k, v in found.items() if k != "method" and not k.startswith(f"{method}.")}


def label_variants(rows: list[dict]) -> None:
    """Give each row ``variant``: "key=value, ..." for the keys in which it differs from
    other rows of its table (method sections compared only between rows of one method),
    and ``core``, a fingerprint of its experiment less the method."""
    tables: dict[tuple, list[dict]] = {}
    for row in rows:
        row["core"] = identity.fingerprint(method_free(row["experiment"], row["method"]))
        tables.setdefault(tuple(row[k] for k in KEYS[:3]), []).append(row)
    for table_rows in tables.values():
        shared = [method_free(r["experiment"], r["method"]) for r in table_rows]
        differing = set(identity.differences(shared[0], shared[1])) if len(shared) > 1 else set()
        for other in shared[2:]:
            differing |= set(identity.differences(shared[0], other))
        for row in table_rows:
            own = [r["experiment"] for r in table_rows if r["method"] == row["method"]]
            keys = set(differing)
            for other in own[1:]:
                keys |= set(identity.differences(own[0], other))
            keys.discard("seed")
            row["variant"] = ", ".join(f"{k}={row['experiment'].get(k, '-')}" for k in sorted(keys))


REFERENCE_COLUMNS = ["method", "variant", "dataset", "setting", "noise", "backbone", "metric", "value", "source"]


def load_reference(path: str | Path = REFERENCE) -> pd.DataFrame:
    """benchmarks/reference.csv (or the --reference file), checked: its columns, numbers as values."""
    import io

    try:
        frame = pd.read_csv(io.BytesIO(read_bytes(path, 64 * MIB, "reference table")), dtype=str,
                            keep_default_na=False)
    except (ValueError, UnicodeDecodeError, NotRegular) as exc:
        raise NoisybenchError(f"--reference {path}: not a CSV table ({str(exc).splitlines()[0]})") from None
    missing = [c for c in REFERENCE_COLUMNS if c not in frame]
    if missing:
        raise NoisybenchError(f"--reference {path}: no column(s) {', '.join(missing)}; expected "
                              f"{','.join(REFERENCE_COLUMNS)}")
    values = pd.to_numeric(frame["value"], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise NoisybenchError(f"{path}:{row + 2}: value '{frame['value'].iloc[row]}' is not a number")
    frame["value"] = values
    return frame


def paper_number(reference: pd.DataFrame, row, metric: str = "test_accuracy") -> float:
    """The paper's test accuracy (%) for this method (in its default form), dataset,
    setting, noise and backbone; the first such row of the file, or NaN. ``metric``: another
    test set's (a further test set's ``<name>_accuracy``)."""
    match = reference[(reference["method"] == row.method) & (reference["variant"] == "")
                      & (reference["dataset"] == row.dataset)
                      & (reference["setting"] == row.setting) & (reference["noise"] == row.noise)
                      & (reference["backbone"] == row.model) & (reference["metric"] == metric)]
    return float(match["value"].iloc[0]) if len(match) else np.nan


def _cell(mean: float, std: float, scale: float, n: int, runs: int) -> str:
    if pd.isna(mean):
        return ""
    text = f"{scale * mean:.2f}" if pd.isna(std) else f"{scale * mean:.2f} ± {scale * std:.2f}"
    return text if n == runs else f"{text} (n={n})"


def formatted(board: pd.DataFrame) -> pd.DataFrame:
    """The strings a human reads: percentages with two decimals, mean ± std."""
    out = pd.DataFrame({"dataset": board["dataset"], "setting": board["setting"], "noise": board["noise"],
                        "method": board["method"]})
    if board["variant"].fillna("").ne("").any():
        out["variant"] = board["variant"].fillna("")
    out["n"] = board["n"].astype(int)
    if board["failed"].any():
        out["failed"] = board["failed"].astype(int)
    further = extra_tests.metric_columns(c.removesuffix("_mean") for c in board.columns)
    for column, (label, scale) in {**METRICS, **further}.items():
        if board[f"{column}_mean"].notna().any():
            out[label] = [_cell(m, s, scale, n, runs) for m, s, n, runs in
                          zip(board[f"{column}_mean"], board[f"{column}_std"], board[f"{column}_n"], board["n"])]
    out["× ce time"] = [f"{r:.2f}" if pd.notna(r) else "" for r in board["ratio_to_ce"]]
    if "paper_test_accuracy" in board and board["paper_test_accuracy"].notna().any():
        out["paper test acc"] = [f"{v:.2f}" if pd.notna(v) else "" for v in board["paper_test_accuracy"]]
        out["Δ"] = [f"{v:+.2f}" if pd.notna(v) else "" for v in board["difference"]]
    for column, (label, _) in further.items():
        if f"paper_{column}" in board and board[f"paper_{column}"].notna().any():
            out[f"paper {label}"] = [f"{v:.2f}" if pd.notna(v) else "" for v in board[f"paper_{column}"]]
    return out


def cell(value) -> str:
    """A value as one markdown table cell: HTML escaped, ``|`` escaped, on one line."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return text.replace("|", "\\|")


def markdown(frame: pd.DataFrame) -> str:
    """One markdown table per (dataset, setting, noise)."""
    blocks = []
    for key, group in frame.groupby(KEYS[:3], sort=False):
        body = group.drop(columns=KEYS[:3])
        lines = [f"**{cell(key[0])}**, setting {cell(key[1])}, noise {cell(key[2])}", "",
                 "| " + " | ".join(cell(c) for c in body.columns) + " |", "|" + "---|" * len(body.columns)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body.itertuples(index=False)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def render(board: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return board.to_csv(index=False, float_format="%.6g")
    frame = formatted(board)
    if fmt == "markdown":
        return markdown(frame)
    if fmt == "latex":
        return frame.to_latex(index=False, escape=True)
    if fmt == "html":
        return frame.to_html(index=False, escape=True)
    raise NoisybenchError(f"--format {fmt}: expected markdown, csv, latex or html")


def write_plots(runs: pd.DataFrame, folder: Path) -> list[Path]:
    """accuracy_vs_time.png and, for correcting methods, label_curves.png in ``folder``."""
    from noisybench import plots

    written = [folder / "accuracy_vs_time.png"]
    plots.accuracy_vs_time(runs, written[0])
    histories: dict[str, list] = {}
    for row in runs[runs["status"] == "finished"].itertuples():
        record = records.read_record(Path(row.folder) / records.METRICS_FILE) or {}
        if isinstance(record.get("history"), list) and all(isinstance(h, dict) for h in record["history"]):
            histories.setdefault(row.method, []).append(record["history"])
    if plots.label_curves(histories, folder / "label_curves.png"):
        written.append(folder / "label_curves.png")
    return written


def report(root: str | Path, fmt: str = "markdown", reference: str | Path | None = None) -> str:
    """The rendered leaderboard of every run under ``root``."""
    if reference is not None and not os.path.lexists(reference):
        raise NoisybenchError(f"--reference {reference}: no such file")
    path = Path(reference) if reference else REFERENCE
    ref = load_reference(path) if os.path.lexists(path) else None
    return render(table(load_runs(root), ref), fmt)

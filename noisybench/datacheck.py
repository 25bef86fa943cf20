"""``noisybench data check``: validate a copy of a dataset before a long run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from noisybench import metrics
from noisybench.datasets import DataSplits, build_dataset, image_files, labels_of


def split_table(splits: DataSplits) -> pd.DataFrame:
    """Images per class (rows) and split (columns), with a total row."""
    columns = {name: np.bincount(labels_of(dataset), minlength=splits.num_classes)
               for name, dataset in splits.named_splits().items()}
    table = pd.DataFrame(columns, index=splits.class_names)
    table.loc["total"] = table.sum()
    return table


def scan_images(splits: DataSplits, decode: bool) -> dict[str, tuple[int, list[str]]]:
    """Per split: (problem count, first problem paths); every file is checked for existence,
    and with ``decode`` opened and decoded too."""
    found = {}
    for name, dataset in splits.named_splits().items():
        files = image_files(dataset)
        if files is None:
            continue
        problems = []
        for i in tqdm(range(len(files)), desc=f"checking {name} images", leave=False, disable=None):
            path = str(files.paths[i])
            if not files.exists(i):
                problems.append(path)
            elif decode:
                files.load(i)
                if files.corrupt[i]:
                    problems.append(path)
        found[name] = (len(problems), problems[:5])
    return found


def check(config: dict[str, Any], decode: bool = False) -> tuple[str, int]:
    """(report, number of problems found)."""
    splits = build_dataset(config)
    lines = [f"dataset {config['dataset']}: {splits.num_classes} classes, setting {config['setting']}"]
    lines.append(split_table(splits).to_string())
    quality = metrics.label_quality(splits.train_labels, splits.true_labels, splits.is_noisy(), None)
    flags = splits.is_noisy()
    if quality["noisy_accuracy"] is not None:
        known = int((flags >= 0).sum())
        lines.append(f"noisy-label accuracy: {quality['noisy_accuracy']:.4f} over {known} training images of known truth")
    else:
        lines.append("noisy-label accuracy: unknown (no true labels)")
    if splits.trusted is not None:
        lines.append(f"verified-correct (trusted) training images: {len(splits.trusted)}")
    problems = 0
    if config["data"]["prepared"]:  # every shard hashed whole against its manifest
        from pathlib import Path

        from noisybench.datasets.prepared import read_manifest, verify_shards
        from noisybench.errors import DataError

        folder = Path(config["data"]["prepared"]).expanduser()
        try:
            verify_shards(folder, read_manifest(folder), whole=True)
            lines.append("prepared shards: every checksum matches its manifest")
        except DataError as exc:
            problems += 1
            lines.append(f"prepared shards: {exc}")
    for name, (count, first) in scan_images(splits, decode).items():
        what = "missing or unreadable" if decode else "missing"
        if count:
            problems += count
            lines.append(f"{name}: {count} images {what}, first: {', '.join(first)}")
        else:
            lines.append(f"{name}: all images present" + (" and readable" if decode else ""))
    for warning in splits.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines), problems + len(splits.warnings)

"""``noisybench evaluate``: score a run's final checkpoint again, on any split.

The run's data and model are built from its config.yaml, with the mixed precision it
used, and the checkpoint's weights (the model after the last epoch: the one that gave
metrics.json) are loaded. The val and test splits are scored exactly as the run scored
them, so the test metrics equal the record's, under one process or several. The train
split is scored against the noisy labels and, where known, the true ones. Optionally the
pooled features of the split are written (``.npy``, one row per sample in split order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.state import AcceleratorState, GradientState

from noisybench import metrics, records
from noisybench.checkpoint import load_models
from noisybench.errors import ConfigError

SPLITS = ("test", "val", "train")


@contextmanager
def trained_run(run_dir: str | Path) -> Iterator[Any]:
    """A Trainer of the run in ``run_dir`` holding its final weights (no training state);
    Accelerate's process-wide state is cleared when the block ends."""
    from noisybench.api import make_config
    from noisybench.engine import Trainer

    run_dir = Path(run_dir)
    if not (run_dir / records.CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir}: no {records.CONFIG_FILE}; not a run folder")
    checkpoint = records.latest_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(f"{run_dir}: no checkpoint to evaluate")
    config = make_config(resume_from=run_dir)
    record = records.read_record(run_dir / records.METRICS_FILE) or {}
    # the precision the run used, not what "auto" means on this machine
    config["mixed_precision"] = record.get("experiment", {}).get("mixed_precision") or config["mixed_precision"]
    try:
        trainer = Trainer(config, run_dir)
        trainer.pm.hook.noisybench_setup(run=trainer.run)  # a method's further networks exist after it
        load_models(checkpoint, trainer.accelerator, trainer.run.model, trainer.network_models())
        yield trainer
        trainer.release_loaders()
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()
    finally:
        AcceleratorState._reset_state()
        GradientState._reset_state()


def score_split(trainer: Any, split: str) -> dict[str, Any]:
    """Classification metrics of ``split``, as the run computes them."""
    splits, num_classes = trainer.splits, trainer.splits.num_classes
    if split == "train":
        logits, _ = trainer.run.predict()
        pred = logits.argmax(dim=1).cpu().numpy()
        result = metrics.classification(splits.train_labels, pred, num_classes)
        known = None if splits.true_labels is None else splits.true_labels >= 0
        result["true_label_accuracy"] = (float(np.mean(pred[known] == splits.true_labels[known]))
                                         if known is not None and known.any() else None)
        result["samples"] = len(pred)
        return result
    loader = trainer.evaluator.test_loader if split == "test" else trainer.evaluator.val_loader
    if loader is None:
        raise ConfigError(f"the run has no {split} split")
    true, pred = trainer.evaluator.predict(loader)
    return {**metrics.classification(true, pred, num_classes), "samples": len(true)}


def split_features(trainer: Any, split: str) -> np.ndarray:
    dataset = {"train": None, "val": trainer.splits.val, "test": trainer.splits.test}[split]
    return trainer.run.predict(dataset=dataset)[1].cpu().numpy()


def recorded(run_dir: Path, split: str) -> dict[str, Any] | None:
    """What metrics.json says of ``split`` (test: every metric; val: the last epoch's accuracy)."""
    record = records.read_record(run_dir / records.METRICS_FILE)
    if record is None or split == "train":
        return None
    if split == "test":
        return record["test"]
    return {"accuracy": record["history"][-1]["val_accuracy"]} if record["history"] else None


def evaluate(run_dir: str | Path, split: str = "test", features: str | Path | None = None) -> dict[str, Any]:
    """Scores of ``split`` and, where metrics.json records that split, whether they match it."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    with trained_run(run_dir) as trainer:
        result: dict[str, Any] = {"split": split, "metrics": score_split(trainer, split)}
        if features is not None:
            array = split_features(trainer, split)
            if trainer.accelerator.is_main_process:
                with records.atomic_path(Path(features)) as tmp:
                    with open(tmp, "wb") as handle:
                        np.save(handle, array)
            result["features"] = str(features)
    expected = recorded(run_dir, split)
    if expected is not None:
        result["recorded"] = expected
        result["matches_record"] = all(result["metrics"].get(k) == v for k, v in expected.items())
    return result


def summary(result: dict[str, Any]) -> str:
    scores = result["metrics"]
    line = (f"{result['split']}: accuracy {scores['accuracy']:.4f}, macro F1 {scores['macro_f1']:.4f} "
            f"({scores['samples']} samples)")
    if scores.get("true_label_accuracy") is not None:
        line += f"; against the true labels {scores['true_label_accuracy']:.4f}"
    if "matches_record" in result:
        line += "; equals metrics.json" if result["matches_record"] else f"; DIFFERS from metrics.json {result['recorded']}"
    if "features" in result:
        line += f"; features written to {result['features']}"
    return line

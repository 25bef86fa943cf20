"""The record of a run: the label metrics taken after each epoch, and at the end
``metrics.json`` (written last: its presence means the run finished), the per-class label
accuracy and confusion tables, the weight histograms, the per-sample tables (samples.py),
and the model card ``model.json`` that ``noisybench predict`` rebuilds the model from.

Called by the loop (engine.py): ``label_metrics`` after each training epoch,
``model_card`` when a run starts, ``write_record`` when it ends. The files' names and the
atomic writes are records.py's.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisybench import extra_tests, identity, metrics, plots, records
from noisybench.datasets import DataSplits, image_files
from noisybench.evaluation import Evaluator, evaluation_record
from noisybench.run import Run
from noisybench.samples import eval_samples_table, heldout_table, sample_outputs, samples_table


def capture_initial(progress: Any, splits: DataSplits, outputs: dict[str, np.ndarray]) -> None:
    """Keep the method's first corrected labels (``labels.corrected_accuracy_initial``)."""
    if progress.initial_corrected is None and "corrected_label" in outputs:
        progress.initial_corrected = outputs["corrected_label"].copy()
        progress.corrected_accuracy_initial = metrics.label_quality(
            splits.train_labels, splits.true_labels, splits.is_noisy(), outputs["corrected_label"]
        )["corrected_accuracy"]


def label_metrics(entry: dict[str, Any], run: Run, splits: DataSplits, progress: Any) -> dict[str, np.ndarray]:
    """The epoch's label accuracy, changed fraction and detection AUC into ``entry`` (the
    record's full label and detection metrics are taken once, from the last outputs, in
    ``metrics_record``); returns the method's sample outputs."""
    outputs = sample_outputs(run)
    flags = splits.is_noisy()
    quality = metrics.label_quality(splits.train_labels, splits.true_labels, flags, outputs.get("corrected_label"))
    entry["label_accuracy"] = quality["corrected_accuracy"]
    entry["changed_fraction"] = quality["changed_fraction"]
    entry["detection_auc"] = metrics.noise_auc(flags, outputs.get("noise_score"))
    for name, labels in run.scored_labels.items():  # run.score_labels: a method's diagnostics (-1: no label)
        given = labels.numpy() >= 0
        true = None if splits.true_labels is None else splits.true_labels[given]
        entry[name] = metrics.label_quality(splits.train_labels[given], true, None,
                                            labels.numpy()[given])["corrected_accuracy"]
    run.scored_labels.clear()
    capture_initial(progress, splits, outputs)
    drawn = plots.chosen_epochs(run.num_epochs, run.config["report"]["histogram_epochs"])
    if "weight" in outputs and flags is not None and (flags >= 0).any() and run.epoch in drawn:
        known = flags >= 0
        progress.weight_snapshots[run.epoch] = (outputs["weight"][known].astype(float), flags[known] == 1)
    return outputs


def model_card(config: dict[str, Any], splits: DataSplits, networks: list[str], input_size: int) -> dict[str, Any]:
    """What ``noisybench predict`` needs to rebuild the model and its input pipeline."""
    files = image_files(splits.test)
    return {"method": config["method"], "networks": networks,
            "model": config["model"]["name"], "num_classes": splits.num_classes,
            "class_names": splits.class_names, "channels": splits.channels,
            "normalization": None if splits.normalization is None else [list(v) for v in splits.normalization],
            "input_size": input_size,
            "image_size": config["data"]["image_size"] if files is not None else None}


def noise_record(splits: DataSplits) -> dict[str, Any]:
    """Noise type and rate (the measured rate for human labels, null for real-world noise)
    and the realised rate, the fraction of training labels that are wrong (noise.py)."""
    from noisybench import noise

    return noise.noise_record(splits.noise, splits.is_noisy())


def peak_memory(device: torch.device) -> tuple[int, int]:
    """(peak accelerator memory or host memory if on CPU, peak host resident memory) in bytes."""
    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else host
    return int(gpu), int(host)


def efficiency_record(trainer: Any) -> dict[str, Any]:
    """metrics.json's ``efficiency``: times, throughput, memory, size and device settings."""
    run, progress, evaluator = trainer.run, trainer.progress, trainer.evaluator
    peak, host_peak = peak_memory(trainer.accelerator.device)
    trained = sum(h.get("samples_trained", 0) for h in progress.history)
    train_seconds = run.phase_seconds.get("train", 0.0)
    return {
        "total_seconds": sum(progress.epoch_seconds),
        "startup_seconds": trainer.startup_seconds,
        "first_batch_seconds": trainer.first_batch_seconds,
        "epoch_seconds": progress.epoch_seconds,
        "phase_seconds": dict(run.phase_seconds),
        "train_images_per_second": trained / train_seconds if train_seconds else None,
        "peak_memory_bytes": peak,
        "peak_host_memory_bytes": host_peak,
        "parameters": trainer.all_parameters(),
        "model_bytes": trainer.model_bytes,
        "inference_ms_per_image": 1000.0 * evaluator.test_seconds / max(1, len(evaluator.test_true)),
        "device_settings": trainer.device_settings,
    }


def metrics_record(trainer: Any, corrupt: dict[str, np.ndarray]) -> dict[str, Any]:
    """metrics.json of the run of ``trainer`` (engine.Trainer, at the end of its run)."""
    run, splits, progress, config = trainer.run, trainer.splits, trainer.progress, trainer.config
    found = metrics.sample_metrics(splits.train_labels, splits.true_labels, splits.is_noisy(), trainer.sample_columns)
    labels = dict(found["labels"])
    labels["warnings"] = list(run.warnings)
    labels["corrected_accuracy_initial"] = progress.corrected_accuracy_initial
    return {
        "schema_version": records.SCHEMA_VERSION,
        "fingerprint": identity.fingerprint(trainer.experiment),
        "method": run.method,
        "dataset": config["dataset"],
        "setting": config["setting"],
        "seed": config["seed"],
        "noise": noise_record(splits),
        "model": config["model"]["name"],
        "pretrained": {"file": config["model"]["pretrained_file"], "tensors_loaded": trainer.pretrained_tensors},
        "choices": {k: v for k, v in trainer.choices.items() if k != "line"},
        "num_train": run.num_train,
        "num_classes": splits.num_classes,
        "class_names": splits.class_names,
        "test": metrics.classification(trainer.evaluator.test_true, trainer.evaluator.test_pred, splits.num_classes),
        "best_val": progress.best.record,
        **({"best_val_each_network": progress.each_best.record} if config["eval"]["each_network"] else {}),
        "evaluation": evaluation_record(config["eval"], progress.history),
        "labels": labels,
        "detection": found["detection"],
        "efficiency": efficiency_record(trainer),
        "history": progress.history,
        "data": {
            "corrupt_images": {name: int(mask.sum()) for name, mask in corrupt.items()},
            "warnings": splits.warnings,
            "trusted": None if run.trusted is None else len(run.trusted),
            "clean": None if run.clean is None else len(run.clean),
        },
        "environment": records.environment(trainer.accelerator),
        "config": config,
        "experiment": trainer.experiment,
    }


def write_tables(output: Path, splits: DataSplits, progress: Any, columns: dict[str, np.ndarray],
                 corrupt: np.ndarray | None, evaluator: Evaluator) -> None:
    """samples.csv, the per-class label accuracy, the weight histograms, eval_samples.csv
    and the confusion matrix (main process)."""
    records.write_csv(output / records.SAMPLES_FILE, samples_table(splits, progress.train_loss_column, corrupt, columns))
    final = columns.get("corrected_label")
    if final is not None and splits.true_labels is not None:
        per_class = metrics.per_class_label_accuracy(
            splits.train_labels, splits.true_labels, progress.initial_corrected, final, splits.class_names
        )
        records.write_csv(output / records.PER_CLASS_FILE, per_class)
    if progress.weight_snapshots:
        plots.weight_histograms(progress.weight_snapshots, output / records.WEIGHT_PLOT_FILE)
    table = eval_samples_table(splits, evaluator.split_scores)
    if table is not None:
        records.write_csv(output / records.EVAL_SAMPLES_FILE, table)
    matrix = metrics.confusion(evaluator.test_true, evaluator.test_pred, splits.num_classes)
    records.write_csv(output / records.CONFUSION_FILE, records.confusion_frame(matrix, splits.class_names), index=True)


def write_record(trainer: Any) -> dict[str, Any]:
    """The end of a run of ``trainer`` (engine.Trainer): every table, then metrics.json.
    Every process calls it (the corrupt-image counts and the held-out scores are
    collectives); the main process writes. Returns the record."""
    corrupt = trainer.unreadable.masks()  # a collective: every process takes part
    heldout = heldout_table(trainer.run, trainer.splits)  # a collective too
    further = extra_tests.record(trainer.run, trainer.splits)  # a collective too: webvision's ILSVRC12 val
    result = {**metrics_record(trainer, corrupt), **further}
    if trainer.accelerator.is_main_process:
        write_tables(trainer.output, trainer.splits, trainer.progress, trainer.sample_columns, corrupt.get("train"),
                     trainer.evaluator)
        if heldout is not None:
            records.write_csv(trainer.output / records.HELDOUT_FILE, heldout)
        records.write_json(trainer.output / records.METRICS_FILE, result)
    return result

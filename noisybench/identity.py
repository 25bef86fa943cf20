"""A run's identity: the values that define its experiment, and a fingerprint of them.

The experiment is the resolved config flattened to dotted keys, less the keys that cannot
change a result (``NOT_EXPERIMENT``: console output, reporting, loader plumbing, where the
data lies), plus what the config does not say: the identity of the data as read
(``data.identity``), the number of processes (each trains on its own batch, so the global
batch grows with it) and the mixed precision actually used (``auto`` resolved).

``fingerprint(experiment)`` is the first 16 hex digits of the SHA-256 of the experiment
without ``seed`` as canonical JSON (sorted keys, no spaces): runs with one fingerprint are
seeds of one experiment, and only they are pooled. metrics.json carries both, so anyone
can recompute the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from noisybench.config import flatten

# Keys that cannot change what a run computes (or, for paths, are replaced by data.identity).
NOT_EXPERIMENT = (
    "progress", "threads", "report.", "eval_batch_size", "eval.test",
    "data.num_workers", "data.pin_memory", "data.persistent_workers", "data.prefetch_factor",
    "model.channels_last", "model.compile",
    "data.root", "data.food101_root", "data.cifar_n_file", "data.download", "data.imagenet_root",
    "data.webvision_classes",  # the classes it keeps are in data.identity already
)
# Keys added after runs were recorded without them: the value those runs had in effect.
IMPLIED_WHEN_ABSENT = {"eval.every": 1, "lsw.meta_gradient": "higher", "lr_schedule.name": "step",
                       "lr_schedule.warmup_epochs": 0, "lr_schedule.warmup_lr": 1e-5, "lr_schedule.min_lr": 0.0,
                       "data.cv_folds": 0, "data.cv_fold": 0, "data.val_noise": False, "data.crop_padding": "auto", "data.flip": "auto",
                       "coteaching.schedule": "algorithm", "coteaching.evaluate": "mean",
                       "eval.each_network": False, "dividemix.mix": "all"}
# Keys added at a value that leaves every earlier run as it was: left out of the experiment
# at that value, so the fingerprints of the runs that do not use them stay as they were.
LEFT_OUT_AT = {"data.val_noise": False, "eval.each_network": False, "dividemix.mix": "all"}
# Keys that may change on --resume besides those: epochs may grow (the run continues).
RESUMABLE = ("epochs",)


def is_experiment_key(key: str) -> bool:
    return not any(key == k or (k.endswith(".") and key.startswith(k)) for k in NOT_EXPERIMENT)


def config_experiment(config: dict[str, Any]) -> dict[str, Any]:
    """The experiment-defining keys of a (nested) config, flattened, ``seed`` included."""
    return {k: v for k, v in flatten(config).items()
            if is_experiment_key(k) and not (k in LEFT_OUT_AT and LEFT_OUT_AT[k] == v)}


def experiment(config: dict[str, Any], data_identity: str, processes: int, mixed_precision: str) -> dict[str, Any]:
    """Everything that defines a run's experiment (see the module docstring)."""
    found = config_experiment(config)
    found["mixed_precision"] = mixed_precision
    found["data.identity"] = data_identity
    found["num_processes"] = processes
    return found


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(found: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the experiment without its seed."""
    return hashlib.sha256(canonical({k: v for k, v in found.items() if k != "seed"}).encode()).hexdigest()[:16]


def recorded(found: dict[str, Any], key: str) -> Any:
    """An experiment's value of ``key``: for a key an older record lacks, the value it had in
    effect (``IMPLIED_WHEN_ABSENT``), else ``"<absent>"``."""
    return found.get(key, IMPLIED_WHEN_ABSENT.get(key, "<absent>"))


def differences(saved: dict[str, Any], current: dict[str, Any], allowed: tuple[str, ...] = ()) -> list[str]:
    """Keys whose ``recorded`` values differ between two experiments, but ``allowed``."""
    return sorted(k for k in set(saved) | set(current)
                  if k not in allowed and canonical(recorded(saved, k)) != canonical(recorded(current, k)))


def resume_refusal(saved: dict[str, Any], current: dict[str, Any], folder: Any) -> str | None:
    """Why a run saved with experiment ``saved`` cannot be resumed as ``current``, or None.

    Only ``epochs`` may change, and only grow: every other key would make the epochs
    already trained belong to another experiment.
    """
    changed = differences(saved, current, allowed=RESUMABLE)
    if changed:
        shown = ", ".join(f"{k} ({recorded(saved, k)!r} -> {recorded(current, k)!r})" for k in changed)
        return (f"cannot resume the run in {folder} with a different experiment: {shown}; only 'epochs' (to extend) "
                "and output keys may change. Start a new run in another --output instead")
    if "epochs" in saved and "epochs" in current and current["epochs"] < saved["epochs"]:
        return (f"cannot resume the run in {folder} with epochs={current['epochs']}: it was started with "
                f"epochs={saved['epochs']}, and epochs may only grow on --resume")
    return None

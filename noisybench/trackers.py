"""Experiment trackers through Accelerate (``report.trackers``: tensorboard, wandb, mlflow, ...).

Each epoch's numeric history values are logged at step = epoch, and the final record's
headline numbers (``test/...``, ``best_val/...``, ``labels/...``) at the last epoch.
TensorBoard writes into ``RUN_DIR/tensorboard/``; the others go where their own settings
say (environment variables, logins). A tracker whose package is missing fails before
anything is built, with the pip line that installs it.
"""

from __future__ import annotations

from typing import Any

from noisybench.errors import ConfigError

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "aim": "aim",
            "comet_ml": "comet_ml", "clearml": "clearml", "dvclive": "dvclive"}
PROJECT = "tensorboard"  # the folder in the run folder TensorBoard writes into


def check_installed(trackers: list[str]) -> None:
    """Fail naming the pip line for every tracker whose package is missing."""
    import importlib.util

    missing = [name for name in trackers if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        raise ConfigError(f"report.trackers: {', '.join(missing)} not installed; pip install "
                          + " ".join(PACKAGES[name] for name in missing))


def numeric(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The int and float values of a (nested) dict, keys joined by '/'; bools and None left out."""
    found: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            found.update(numeric(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[f"{prefix}{key}"] = value
    return found


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The config flattened to what trackers accept (numbers, strings, bools; lists as text)."""
    from noisybench.config import flatten

    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(config).items()}


def final_values(record: dict[str, Any]) -> dict[str, float]:
    return numeric({"test": {"accuracy": record["test"]["accuracy"]}, "best_val": record["best_val"],
                    "labels": {k: v for k, v in record["labels"].items() if k != "warnings"}})

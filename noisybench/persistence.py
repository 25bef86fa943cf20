"""What a run saves to go on later, and what it checks before it goes on: the checkpoint
after every epoch (``checkpoint/``, in checkpoint.py's format: safetensors and JSON, not
Accelerate's ``save_state``, whose pickles would run code from a folder that may come from
anyone), ``best/`` when the best val epoch changes, the run's progress, and the refusals
of a resume that would continue another experiment.

Called by the loop (engine.py): ``prior_record`` before a run starts, ``Checkpoints`` to
save after each epoch and to restore on ``--resume``, ``interrupted`` when a run is stopped.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisybench import checkpoint, identity, records
from noisybench.config import load_yaml
from noisybench.each_network import EachNetworkBest
from noisybench.errors import ConfigError
from noisybench.evaluation import BestEpoch
from noisybench.optim import load_scheduler, schedule_for_epochs
from noisybench.run import Run


class Progress:
    """Everything besides model, optimiser and RNG that a resumed run must get back."""

    def __init__(self, run: Run):
        self.run = run
        self.epochs_done = 0
        self.history: list[dict[str, Any]] = []
        self.best = BestEpoch()
        self.each_best = EachNetworkBest()  # eval.each_network: each network's own best epoch
        self.corrected_accuracy_initial: float | None = None
        self.initial_corrected: np.ndarray | None = None
        self.weight_snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.epoch_seconds: list[float] = []
        self.train_loss_column = np.full(run.num_train, np.nan)  # samples.csv's train_loss, last epoch
        self.corrupt: dict[str, np.ndarray] = {}  # per split, which images could not be read so far
        self.experiment: dict[str, Any] | None = None  # what the epochs done were trained as

    def state_dict(self) -> dict[str, Any]:
        best = self.best.state_dict()
        return {
            "epochs_done": self.epochs_done,
            "history": self.history,
            "best_val": best.pop("best_val"),
            "corrected_accuracy_initial": self.corrected_accuracy_initial,
            "initial_corrected": self.initial_corrected,
            "weight_snapshots": self.weight_snapshots,
            "epoch_seconds": self.epoch_seconds,
            "phase_seconds": dict(self.run.phase_seconds),
            "method_state": self.run.state,
            "train_loss_column": self.train_loss_column,
            "corrupt": self.corrupt,
            "experiment": self.experiment,
            "harvested": _cpu(self.run.scratch.get("harvested")),
            "warnings": self.run.warnings,
            **(self.each_best.state_dict() if self.run.config["eval"]["each_network"] else {}),
            **best,  # best_weights last, where runs have always kept it
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_done = state["epochs_done"]
        self.history[:] = state["history"]  # the same list run.history shows
        self.best.load_state_dict(state)
        self.each_best.load_state_dict(state)
        self.corrected_accuracy_initial = state["corrected_accuracy_initial"]
        self.initial_corrected = state["initial_corrected"]
        self.weight_snapshots = state["weight_snapshots"]
        self.epoch_seconds = state["epoch_seconds"]
        self.run.phase_seconds.update(state["phase_seconds"])
        self.run.state.clear()
        self.run.state.update(state["method_state"])
        self.train_loss_column = state.get("train_loss_column", self.train_loss_column)
        self.corrupt = state.get("corrupt", {})
        self.experiment = state.get("experiment")
        if "harvested" in state:
            self.run.scratch["harvested"] = state["harvested"]
        self.run.warnings[:] = state.get("warnings", [])


def _cpu(value: Any) -> Any:
    return value.cpu() if torch.is_tensor(value) else value


class Checkpoints:
    """``checkpoint/`` and ``best/`` of one run folder: written after every epoch (every
    process takes part), read back on ``--resume``."""

    def __init__(self, output: Path, run: Run, progress: Progress):
        self.output, self.run, self.progress = output, run, progress
        self.accelerator = run.accelerator

    def networks(self) -> dict[str, torch.nn.Module]:
        return {name: n.model for name, n in self.run.networks.items()}

    def training_state(self, scheduler: Any) -> dict[str, Any]:
        """Everything a resumed run needs besides the model weights and the RNG."""
        scaler = self.accelerator.scaler
        return {"optimizer": self.run.optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "networks": {name: n.optimizer.state_dict() for name, n in self.run.networks.items()},
                "progress": self.progress.state_dict(), "scaler": None if scaler is None else scaler.state_dict()}

    def save(self, scheduler: Any) -> None:
        """The checkpoint of the epochs done, replacing the last one whole; ``best/`` too
        when this epoch is the best so far."""
        acc = self.accelerator
        tmp = self.output / (records.CHECKPOINT_DIR + ".tmp")
        if acc.is_main_process and tmp.exists():
            records.remove_own_dir(tmp)
        acc.wait_for_everyone()
        with self.run.phase("checkpoint"):
            checkpoint.save(tmp, acc, self.run.model, self.training_state(scheduler), self.networks())
            acc.wait_for_everyone()
            if acc.is_main_process:
                records.replace_dir(tmp, self.output / records.CHECKPOINT_DIR)
                if self.progress.best.unsaved:
                    self.save_best()
            self.progress.best.unsaved = False
            acc.wait_for_everyone()

    def save_best(self) -> None:
        """``best/``: the weights of the best val epoch so far (safetensors) and which epoch
        that is, replaced whole (main process)."""
        best = self.progress.best.record
        tmp = self.output / (records.BEST_DIR + ".tmp")
        if tmp.exists():
            records.remove_own_dir(tmp)
        tmp.mkdir()
        checkpoint.save_models(tmp, self.accelerator, self.run.model, self.networks())
        records.write_json(tmp / "best.json", {"epoch": best["epoch"], "val_accuracy": best["accuracy"]})
        records.replace_dir(tmp, self.output / records.BEST_DIR)

    def restore(self, folder: Path, scheduler: Any) -> None:
        """Weights, optimisers, schedule, progress, loss scaler and RNG from ``folder``."""
        state = checkpoint.load(folder, self.accelerator, self.run.model, self.networks())
        for name, optimizer_state in state.get("networks", {}).items():
            self.run.networks[name].optimizer.load_state_dict(optimizer_state)
        self.run.optimizer.load_state_dict(state["optimizer"])
        load_scheduler(scheduler, state["scheduler"])
        self.progress.load_state_dict(state["progress"])
        if state["scaler"] is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])

    def resume(self, experiment: dict[str, Any], config: dict[str, Any], scheduler: Any) -> Any:
        """Restore the latest checkpoint, if any, as ``experiment``; return the schedule to go
        on with. Refuses to continue a checkpoint as another experiment (a changed seed,
        noise, option, data, process count or precision); lets ``epochs`` grow, with the
        schedule it implies."""
        saved_checkpoint = records.latest_checkpoint(self.output)
        if saved_checkpoint is None:
            return scheduler
        foreign_files_refusal(saved_checkpoint)
        self.restore(saved_checkpoint, scheduler)
        saved, done = self.progress.experiment, self.progress.epochs_done
        if saved is not None:
            refusal = identity.resume_refusal(saved, experiment, self.output)
            if refusal:
                raise ConfigError(refusal)
            if done > saved["epochs"] and config["epochs"] != saved["epochs"]:
                raise ConfigError(f"cannot extend the run in {self.output} to epochs={config['epochs']}: "
                                  "its clean-set fine-tuning stage has begun")
        return schedule_for_epochs(scheduler, config, self.run.optimizer, done, (saved or {}).get("epochs"))


def foreign_files_refusal(folder: Path) -> None:
    """Refuse, before reading or training anything, a checkpoint folder that holds files
    noisybench never writes: the run would have to remove them when it next saves."""
    if records.owned_dir(folder):
        return
    try:
        names = sorted(e.name for e in os.scandir(folder)
                       if not (e.is_file(follow_symlinks=False) and e.name.endswith((".safetensors", ".json"))))
    except OSError:
        names = []
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(f"{folder}: not a checkpoint this noisybench wrote (it holds {shown or 'a link'}); nothing was "
                      "read or removed: move those files away and resume")


def prior_record(config: dict[str, Any], output: Path, resume: bool) -> dict[str, Any] | None:
    """Before a run starts in ``output``: the finished record to return as it is (a resume
    that does not extend it), else None. Refuses a folder that holds a run unless resuming,
    and a resume as another experiment (identity.py)."""
    record = records.read_record(output / records.METRICS_FILE)  # None if absent or unreadable: then recorded anew
    trained = record is not None or records.latest_checkpoint(output) is not None
    if trained and not resume:
        raise ConfigError(f"{output} already holds a run; pass --resume to continue it or choose another --output")
    if not trained:
        return None
    saved = saved_config(output)  # resuming: the same experiment, perhaps with more epochs
    refusal = saved and identity.resume_refusal(identity.config_experiment(saved),
                                                identity.config_experiment(config), output)
    if refusal:
        raise ConfigError(refusal)
    if record is not None and (saved is None or config["epochs"] == saved["epochs"]):
        return record
    return None


def saved_config(output: Path) -> dict[str, Any] | None:
    """The resolved config a run folder was started with, if it has one."""
    path = output / records.CONFIG_FILE
    return load_yaml(path) if path.is_file() else None


def interrupted(output: Path) -> str:
    """What an interrupted run leaves, and how to go on."""
    saved = records.latest_checkpoint(output)
    done = records.saved_epochs(saved) if saved is not None else 0
    if not done:
        return f"interrupted before the first epoch of {output} was saved; start it again"
    return (f"interrupted: epochs 1-{done} are saved in {saved}; continue with "
            f"noisybench run --output {output} --resume")

"""The training loop: one Accelerate loop with the method hooks at fixed points.

    setup -> for each epoch: epoch_start -> train steps (loss) -> epoch_end
          -> sample_outputs -> evaluate val and test -> checkpoint
          -> in setting ``clean``: ``finetune.epochs`` more epochs of plain
             cross-entropy on the clean set (no method hooks)
          -> records (metrics.json last)

Runs unchanged on one CPU, one GPU or several processes under ``accelerate launch`` /
``torchrun``. Epochs are numbered from 1, as in the papers' algorithms.
"""

from __future__ import annotations

import gc
import multiprocessing
import resource
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import noisybench
from noisybench import checkpoint, extra_tests, identity, metrics, plots, records, threads
from noisybench.config import dump, load_yaml
from noisybench.datasets import DataSplits, build_dataset, file_positions, image_files, image_paths, labels_of
from noisybench.errors import ConfigError, RunInterrupted
from noisybench.lock import RunLock
from noisybench.outputs import claim_run_folder
from noisybench.logs import logger, run_logging
from noisybench.loaders import eval_loader, loader_options, train_loader
from noisybench.models import create_model, model_bytes, parameter_count
from noisybench.plugins import make_plugin_manager
from noisybench.run import Batch, Network, Run, evaluating_all
from noisybench.trackers import PROJECT as TRACKER_PROJECT
from noisybench.trackers import check_installed, final_values, numeric
from noisybench.trackers import hyperparameters as tracker_hyperparameters


SLOW_EPOCH_SECONDS = 600  # an epoch estimated to take longer is announced at its third batch


class Progress:
    """Everything besides model, optimiser and RNG that a resumed run must get back."""

    def __init__(self, run: Run):
        self.run = run
        self.epochs_done = 0
        self.history: list[dict[str, Any]] = []
        self.best_val: dict[str, Any] = {"epoch": None, "accuracy": None, "test_accuracy": None}
        self.corrected_accuracy_initial: float | None = None
        self.initial_corrected: np.ndarray | None = None
        self.weight_snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.epoch_seconds: list[float] = []
        self.train_loss_column = np.full(run.num_train, np.nan)  # samples.csv's train_loss, last epoch
        self.corrupt: dict[str, np.ndarray] = {}  # per split, which images could not be read so far
        self.experiment: dict[str, Any] | None = None  # what the epochs done were trained as
        self.best_weights: dict[str, torch.Tensor] | None = None  # the model at best_val's epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs_done": self.epochs_done,
            "history": self.history,
            "best_val": self.best_val,
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
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_done = state["epochs_done"]
        self.history[:] = state["history"]  # the same list run.history shows
        self.best_val = state["best_val"]
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
        self.best_weights = state.get("best_weights")


def _cpu(value: Any) -> Any:
    return value.cpu() if torch.is_tensor(value) else value


def choose(config: dict[str, Any], splits: DataSplits, auto_size: bool) -> dict[str, Any]:
    """Resolve ``model.name=auto`` (``small_cnn`` for inputs under 64 pixels, else
    ``resnet18``) and describe what was chosen for the console line and the record."""
    from noisybench.datasets.images import SMALL_IMAGE

    side = int(splits.train_eval[0][0].shape[-1])
    model = config["model"]
    auto_model = model["name"] == "auto"
    if auto_model:
        model["name"] = "small_cnn" if side < SMALL_IMAGE else "resnet18"
    recipe = config["recipe"]
    why = "pretrained weights" if recipe == "finetune" else "no pretrained weights"
    schedule = config["lr_schedule"]
    steps = (f"{schedule['name']} schedule to lr {schedule['min_lr']:g}" if schedule["name"] != "step"
             else f"lr x{schedule['gamma']:g} after epochs {schedule['milestones']}" if schedule["milestones"]
             else f"lr x{schedule['gamma']:g} every {schedule['step_every']} epochs" if schedule["step_every"]
             else "constant lr")
    if schedule["warmup_epochs"]:
        steps += f" after {schedule['warmup_epochs']} warm-up epochs from {schedule['warmup_lr']:g}"
    size = ""
    if auto_size:
        size = (" (data.image_size=auto: the training images' median short side, small-image pipeline under 64)"
                if side < SMALL_IMAGE else " (data.image_size=auto: photo pipeline)")
    optimizer = config["optimizer"]
    line = (f"choices: model {model['name']}{' (auto)' if auto_model else ''}, {side}-pixel inputs{size}; "
            f"recipe {recipe} ({why}): {config['epochs']} epochs, batch {config['batch_size']}, "
            f"{optimizer['name']} lr {optimizer['lr']:g}, weight decay {optimizer['weight_decay']:g}, {steps}")
    return {"model": model["name"], "model_auto": auto_model, "input_size": side, "image_size_auto": auto_size,
            "recipe": recipe, "line": line}


def choose_mixed_precision(setting: str) -> str:
    """``auto`` is bf16 on a GPU that supports it and full precision elsewhere."""
    cuda = torch.cuda.is_available()
    if setting == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if setting == "fp16" and not cuda:
        raise ConfigError("mixed_precision=fp16 needs a GPU; use bf16 or no on the CPU")
    return setting


def make_optimizer(opt: dict[str, Any], model: torch.nn.Module, cuda: bool = False) -> torch.optim.Optimizer:
    """SGD with momentum (the papers' choice) or AdamW (lr and weight decay only); on a GPU
    the fused kernels (one launch per step for all parameters, the same update)."""
    fused = {"fused": True} if cuda else {}
    if opt["name"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"], **fused)
    return torch.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"],
                           weight_decay=opt["weight_decay"], nesterov=opt["nesterov"], **fused)


def device_settings(config: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """``model.channels_last`` resolved (auto: on with CUDA, where convolutions run fastest
    in NHWC), and cuDNN's autotuner on with CUDA (fixed input sizes: it pays after a step)."""
    model = config["model"]
    channels_last = cuda if model["channels_last"] == "auto" else bool(model["channels_last"])
    if cuda:
        torch.backends.cudnn.benchmark = True
    return {"channels_last": channels_last, "compile": bool(model["compile"])}


def lr_milestones(config: dict[str, Any]) -> list[int]:
    """Epochs after which the learning rate is multiplied by ``lr_schedule.gamma``."""
    schedule = config["lr_schedule"]
    if schedule["milestones"] is not None:
        return [int(m) for m in schedule["milestones"]]
    step = schedule["step_every"]
    return list(range(step, config["epochs"], step)) if step and step > 0 else []


def make_scheduler(config: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    """The learning-rate schedule, stepped once after each epoch. ``step`` without warm-up is
    torch's MultiStepLR (the papers' schedules, as before); every other schedule, or a
    warm-up, comes from timm's factory (``create_scheduler_v2``, stepped by epoch)."""
    schedule = config["lr_schedule"]
    if schedule["name"] == "step" and not schedule["warmup_epochs"]:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(config),
                                                    gamma=schedule["gamma"])
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer, sched="multistep" if schedule["name"] == "step" else schedule["name"],
        # timm applies milestone m from 0-based epoch m - 1; +1 keeps "lr x gamma after epoch m" as MultiStepLR's
        num_epochs=config["epochs"], decay_milestones=[m + 1 for m in lr_milestones(config)] or [config["epochs"] + 2],
        decay_rate=schedule["gamma"], min_lr=schedule["min_lr"], warmup_lr=schedule["warmup_lr"],
        warmup_epochs=schedule["warmup_epochs"], step_on_epochs=True)
    return scheduler


def step_scheduler(scheduler: Any, epochs_done: int) -> None:
    """After epoch ``epochs_done`` (1-based): torch's schedulers count their own steps, timm's
    are told the index of the next epoch."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        scheduler.step()
    else:
        scheduler.step(epochs_done)


def label_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's softmax probability of its label (noise_score = 1 − it)."""
    return torch.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)


def stop_unreferenced_workers() -> None:
    """Stop the worker processes of loaders nothing refers to any more. Persistent loader
    iterators sit in reference cycles, so only a collection stops them; left to a later one,
    a loader worker forked meanwhile inherits them and tries to stop them itself ("can only
    test a child process"), or interpreter exit tears them down after torch's own state."""
    if multiprocessing.active_children():
        gc.collect()


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


def peak_memory(device: torch.device) -> tuple[int, int]:
    """(peak accelerator memory or host memory if on CPU, peak host resident memory) in bytes."""
    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else host
    return int(gpu), int(host)


def evaluation_record(schedule: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """What was evaluated when: the schedule and the epochs with a val and a test accuracy."""
    return {"every": schedule["every"], "test": schedule["test"],
            "val_epochs": [h["epoch"] for h in history if h.get("val_accuracy") is not None],
            "test_epochs": [h["epoch"] for h in history if h.get("test_accuracy") is not None]}


_clock = {"origin": noisybench.STARTED}  # where this process's next run starts counting


def process_seconds() -> float:
    """Seconds since the run's clock started: the import of noisybench (before torch and the
    rest) for the first run of a process, the end of the previous run for a later one. Not
    the OS's process start, which an ``exec`` from a shell script would move to the script's."""
    return time.perf_counter() - _clock["origin"]


class Trainer:
    def __init__(self, config: dict[str, Any], output: Path, plugins: Iterable[Any] = ()):
        self.config = config
        self.output = Path(output)
        self.pm = make_plugin_manager(config["method"], plugins)
        cuda = torch.cuda.is_available()
        pinned = cuda if config["data"]["pin_memory"] is None else bool(config["data"]["pin_memory"])
        trackers = config["report"]["trackers"]
        check_installed(trackers)
        self.accelerator = Accelerator(
            cpu=not cuda,  # several CPU processes then join over gloo
            mixed_precision=choose_mixed_precision(config["mixed_precision"]),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config["seed"],
                                                      non_blocking=pinned),  # copies overlap compute
            log_with=list(trackers) or None,
            project_dir=str(self.output),
        )
        set_seed(config["seed"])
        auto_size = config["data"]["image_size"] == "auto"
        self.splits: DataSplits = build_dataset(config)
        self.choices = choose(config, self.splits, auto_size)
        self.choices.update(threads.apply(config["threads"], self.choices["input_size"]))
        self.choices["line"] += f"; {self.choices['threads']} CPU thread(s) ({self.choices['threads_why']})"
        self.experiment = identity.experiment(config, self.splits.identity, self.accelerator.num_processes,
                                              self.accelerator.mixed_precision)
        self.device_settings = device_settings(config, self.accelerator.device.type == "cuda")
        files = image_files(self.splits.train)
        self.device_settings["decoder"] = files.decoder if files is not None else "in memory"
        model = self.new_model()
        self.parameters = parameter_count(model)
        self.pretrained_tensors = model.pretrained_tensors
        self.model_bytes = model_bytes(model)
        if self.device_settings["compile"]:
            model.compile()  # in place: its __call__ is compiled, the state dict's names stay
        optimizer = make_optimizer(config["optimizer"], model, self.accelerator.device.type == "cuda")
        self.scheduler = make_scheduler(config, optimizer)
        acc = self.accelerator
        options = loader_options(config, self.splits.train, acc.device.type == "cuda", acc.num_processes)
        splits = self.splits
        loaders = [train_loader(config, splits.train, splits.train_labels, options)]
        loaders += [eval_loader(config, split, options) for split in (splits.val, splits.test) if split is not None]
        model, optimizer, self.train_loader, *loaders = acc.prepare(model, optimizer, *loaders)
        self.test_loader = loaders[-1]
        self.val_loader = loaders[0] if splits.val is not None else None
        self.run = Run(
            method=config["method"],
            config=config,
            accelerator=acc,
            model=model,
            optimizer=optimizer,
            hook=self.pm.hook,
            train_set=splits.train,
            train_eval_set=splits.train_eval,
            noisy_labels=torch.as_tensor(splits.train_labels, dtype=torch.long),
            class_names=splits.class_names,
            num_epochs=config["epochs"],
            loader_options=options,
            trusted=splits.trusted if config["setting"] == "verify" else None,
            clean=splits.clean if config["setting"] == "clean" else None,
            output=self.output,
        )
        self.run.network_factory = self.build_network
        self.corrupt_reported: dict[str, int] = {}
        self.best_pending = False  # a new best val epoch whose weights best/ does not hold yet
        self.split_scores: dict[str, tuple] = {}  # val/test of the final model: (label, prediction, p(label))
        self.estimated = False
        self.first_batch_seconds: float | None = None  # this process's, not saved on resume
        self.progress = Progress(self.run)
        self.run.history = self.progress.history  # read-only for methods (SMP's readiness)

    def new_model(self) -> torch.nn.Module:
        """The run's architecture for its classes, channels, normalisation and memory layout."""
        splits = self.splits
        return create_model(self.config["model"], splits.num_classes, splits.channels, splits.normalization,
                            self.device_settings["channels_last"])

    def build_network(self, name: str) -> Network:
        """A further network for ``run.add_network``: the run's architecture, initialised from
        a seed of (seed, name) without touching the run's random stream, and an optimiser
        of the run's settings at the run's current learning rate; prepared by Accelerate."""
        import zlib

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config["seed"] * 1_000_003 + zlib.crc32(name.encode()))
            model = self.new_model()
        optimizer = make_optimizer(self.config["optimizer"], model, self.accelerator.device.type == "cuda")
        model, optimizer = self.accelerator.prepare(model, optimizer)
        network = Network(model, optimizer)
        self.follow_schedule(network)
        return network

    def follow_schedule(self, network: Network) -> None:
        """A further network's learning rate is the run's (one schedule for all)."""
        for group, main in zip(network.optimizer.param_groups, self.run.optimizer.param_groups):
            group["lr"] = main["lr"]

    # -- evaluation ---------------------------------------------------------------
    @torch.no_grad()
    def predict(self, loader: DataLoader, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(true labels, predictions) over a whole eval split, gathered from all processes.
        With ``split``, each sample's softmax probability of its label is kept in
        ``split_scores[split]`` too (eval_samples.csv)."""
        acc = self.accelerator
        model = acc.unwrap_model(self.run.model)
        trues, preds, chances = [], [], []
        with evaluating_all(self.run), acc.autocast():
            for images, labels, _ in loader:
                logits = self.run.eval_logits(images, model(images)[0])
                wanted = [logits.argmax(dim=1), labels]
                if split is not None:  # p(label), for eval_samples.csv: the last evaluation only
                    wanted.append(label_probability(logits, labels))
                pred, true, *chance = acc.gather_for_metrics(tuple(wanted))
                preds.append(pred)
                trues.append(true)
                chances.extend(chance)
        true, pred = torch.cat(trues).cpu().numpy(), torch.cat(preds).cpu().numpy()  # one copy to the host, at the end
        if split is not None:
            self.split_scores[split] = (true, pred, torch.cat(chances).cpu().numpy())
        return true, pred

    # -- one epoch ----------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        run, acc = self.run, self.accelerator
        run.model.train()
        self.train_loader.set_epoch(epoch)
        seen_idx, seen_loss, seen_order = [], [], []
        total_loss = torch.zeros((), device=acc.device)
        steps = 0
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{run.num_epochs}",
            disable=None if acc.is_local_main_process and self.config["progress"] else True,  # None: off unless a terminal
            leave=False,
            dynamic_ncols=True,
        )
        with run.phase("train"):
            for step, (images, labels, indices) in enumerate(bar):
                if step in (1, 3) and not self.estimated:
                    self.estimate_epoch(step, len(self.train_loader))
                out = self.pm.hook.noisybench_train_step(run=run, batch=Batch(images, labels, indices))
                if self.first_batch_seconds is None:
                    self.first_batch_seconds = process_seconds()
                total_loss += out.loss.float()
                steps += 1
                if out.logits is not None:
                    with torch.no_grad():
                        per_sample = F.cross_entropy(out.logits.float(), labels, reduction="none")
                    seen_idx.append(indices)
                    seen_loss.append(per_sample)
                    seen_order.append(torch.full_like(indices, step * acc.num_processes + acc.process_index))
        mean_loss = acc.gather(total_loss[None]).sum().item() / max(1, acc.gather(torch.tensor([steps], device=acc.device)).sum().item())
        trained = acc.gather(torch.tensor([sum(len(i) for i in seen_idx)], device=acc.device)).sum().item()
        loss_column = np.full(run.num_train, np.nan)
        seen = 0
        if seen_idx:
            idx, loss = run.collect(torch.cat(seen_idx), torch.cat(seen_loss), order=torch.cat(seen_order))
            loss_column[idx.cpu().numpy()] = loss.cpu().numpy()
            seen = len(idx)
        self.progress.train_loss_column = loss_column
        return {"train_loss": mean_loss, "samples_trained": int(trained), "samples_seen": seen}

    def estimate_epoch(self, step: int, batches: int) -> None:
        """From the time of batches 1-2 (batch 0 pays for start-up), say once if an epoch
        will take longer than ``SLOW_EPOCH_SECONDS`` on this machine, and what would help."""
        now = time.perf_counter()
        if step == 1:
            self.batch_clock = now
            return
        self.estimated = True
        seconds = (now - self.batch_clock) / 2 * batches
        if seconds > SLOW_EPOCH_SECONDS and self.accelerator.is_main_process:
            device = "a GPU" if self.accelerator.device.type == "cuda" else "the CPU"
            logger.warning(f"an epoch will take about {seconds / 60:.0f} minutes on {device} here ({batches} "
                       f"batches of {self.config['batch_size']} {self.choices['input_size']}-pixel images); a smaller "
                       "data.image_size (or auto), a smaller model.name or a GPU would be faster")

    def resolve_finetune(self) -> int:
        """Fine-tune epochs of the ``clean`` setting: ``finetune.epochs``, or if null 5, none
        when the method trains on the clean set itself (it asked for ``run.clean_set()``)."""
        if self.config["setting"] != "clean":
            return 0
        epochs = self.config["finetune"]["epochs"]
        epochs = (0 if self.run.clean_used else 5) if epochs is None else epochs
        if epochs:
            loader = DataLoader(self.splits.clean, batch_size=self.config["batch_size"], shuffle=True,
                                **self.run.loader_options)
            self.clean_loader = self.accelerator.prepare_data_loader(loader)
        return epochs

    def finetune_epoch(self, epoch: int) -> dict[str, Any]:
        """Plain cross-entropy on the clean set, the ``clean`` setting's last stage."""
        run, acc = self.run, self.accelerator
        lr = self.config["finetune"]["lr"] or self.config["optimizer"]["lr"] / 10
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        run.model.train()
        self.clean_loader.set_epoch(epoch)
        total, steps = torch.zeros((), device=acc.device), 0
        with run.phase("finetune"):
            for images, labels, _ in self.clean_loader:
                logits, _ = run.model(images)
                loss = F.cross_entropy(logits.float(), labels)
                run.optimizer.zero_grad(set_to_none=True)
                acc.backward(loss)
                run.optimizer.step()
                total += loss.detach()
                steps += 1
        mean_loss = acc.reduce(total, "sum").item() / max(1, acc.reduce(torch.tensor(steps, device=acc.device), "sum").item())
        return {"stage": "finetune", "lr": lr, "train_loss": mean_loss}

    def corrupt_images(self) -> dict[str, np.ndarray]:
        """Per split, which of its items could not be read so far (all processes, workers and
        resumed sessions). A collective: every process calls it."""
        splits, known = self.splits, self.progress.corrupt
        for name, datasets in (("train", (splits.train, splits.train_eval)), ("val", (splits.val,)),
                               ("test", (splits.test,)), ("clean", (splits.clean,))):
            masks = [files.corrupt[torch.as_tensor(at)] for files, at in filter(None, map(file_positions, datasets))]
            if masks:
                mask = torch.stack(masks).any(dim=0)
                if name in known:
                    mask |= torch.as_tensor(known[name])
                mask = mask.to(self.accelerator.device, torch.int32)
                known[name] = (self.accelerator.reduce(mask, "sum") > 0).cpu().numpy()
        return known

    def report_corrupt(self) -> None:
        """Say once which unreadable images were replaced (see images.py for the policy)."""
        for name, mask in self.corrupt_images().items():
            count = int(mask.sum())
            if count > self.corrupt_reported.get(name, 0) and self.accelerator.is_main_process:
                paths = image_paths(getattr(self.splits, name))[mask]
                shown = ", ".join(map(str, paths[:3])) + (", ..." if count > 3 else "")
                logger.warning(f"{count} unreadable {name} images replaced by blank ones: {shown}")
            self.corrupt_reported[name] = count

    def evaluate_epoch(self, entry: dict[str, Any], last: bool) -> None:
        """Val accuracy every ``eval.every`` epochs and at the last; test accuracy at the last
        epoch, or after every epoch with ``eval.test=every``. Not evaluated: None."""
        schedule = self.config["eval"]
        with self.run.phase("eval"):
            entry["val_accuracy"] = None
            if self.val_loader is not None and (last or entry.get("epoch", 0) % schedule["every"] == 0):
                true, pred = self.predict(self.val_loader, "val" if last else None)
                entry["val_accuracy"] = metrics.accuracy(true, pred)
            entry["test_accuracy"] = None
            if last or schedule["test"] == "every":
                start = time.perf_counter()
                self.test_true, self.test_pred = self.predict(self.test_loader, "test" if last else None)
                self.test_seconds = time.perf_counter() - start
                entry["test_accuracy"] = metrics.accuracy(self.test_true, self.test_pred)

    def test_best_weights(self) -> None:
        """best_val's test accuracy where its epoch was not tested: the kept weights of that
        epoch, tested once at the end (the same number a test after that epoch gave)."""
        best, model = self.progress.best_val, self.accelerator.unwrap_model(self.run.model)
        if best["epoch"] is None or best["test_accuracy"] is not None or self.progress.best_weights is None:
            return
        current = {name: t.detach().clone() for name, t in model.state_dict().items()}
        model.load_state_dict(self.progress.best_weights)
        with self.run.phase("eval"):
            true, pred = self.predict(self.test_loader)
        model.load_state_dict(current)
        best["test_accuracy"] = metrics.accuracy(true, pred)

    def capture_initial(self, outputs: dict[str, np.ndarray]) -> None:
        """Keep the method's first corrected labels (``labels.corrected_accuracy_initial``)."""
        if self.progress.initial_corrected is None and "corrected_label" in outputs:
            splits = self.splits
            self.progress.initial_corrected = outputs["corrected_label"].copy()
            self.progress.corrected_accuracy_initial = metrics.label_quality(
                splits.train_labels, splits.true_labels, splits.is_noisy(), outputs["corrected_label"]
            )["corrected_accuracy"]

    def label_metrics(self, entry: dict[str, Any]) -> None:
        """The epoch's label accuracy, changed fraction and detection AUC (the record's full
        label and detection metrics are taken once, from the last outputs, in ``record``)."""
        outputs = sample_outputs(self.run)
        splits, flags = self.splits, self.splits.is_noisy()
        quality = metrics.label_quality(splits.train_labels, splits.true_labels, flags, outputs.get("corrected_label"))
        entry["label_accuracy"] = quality["corrected_accuracy"]
        entry["changed_fraction"] = quality["changed_fraction"]
        entry["detection_auc"] = metrics.noise_auc(flags, outputs.get("noise_score"))
        self.capture_initial(outputs)
        self.sample_columns = outputs
        drawn = plots.chosen_epochs(self.run.num_epochs, self.config["report"]["histogram_epochs"])
        if "weight" in outputs and flags is not None and (flags >= 0).any() and self.run.epoch in drawn:
            known = flags >= 0
            self.progress.weight_snapshots[self.run.epoch] = (outputs["weight"][known].astype(float), flags[known] == 1)

    # -- checkpoints --------------------------------------------------------------
    def save_checkpoint(self) -> None:
        acc = self.accelerator
        tmp = self.output / (records.CHECKPOINT_DIR + ".tmp")
        if acc.is_main_process and tmp.exists():
            records.remove_own_dir(tmp)
        acc.wait_for_everyone()
        with self.run.phase("checkpoint"):
            checkpoint.save(tmp, acc, self.run.model, self.training_state(), self.network_models())
            acc.wait_for_everyone()
            if acc.is_main_process:
                records.replace_dir(tmp, self.output / records.CHECKPOINT_DIR)
                if self.best_pending:
                    self.save_best()
            self.best_pending = False
            acc.wait_for_everyone()

    def all_parameters(self) -> int:
        """Parameters of the model and of every further network a method added."""
        return self.parameters + sum(parameter_count(self.accelerator.unwrap_model(n.model))
                                     for n in self.run.networks.values())

    def release_loaders(self) -> None:
        """Stop the worker processes of every loader of this run now, in this process: left to
        interpreter exit, persistent workers are torn down after torch's own state and a
        process of a multi-process run can abort there."""
        self.run._loaders.clear()
        self.train_loader = self.val_loader = self.test_loader = self.clean_loader = None
        stop_unreferenced_workers()

    def network_models(self) -> dict[str, torch.nn.Module]:
        return {name: n.model for name, n in self.run.networks.items()}

    def save_best(self) -> None:
        """``best/``: the weights of the best val epoch so far (safetensors) and which epoch
        that is, replaced whole (main process)."""
        best = self.progress.best_val
        tmp = self.output / (records.BEST_DIR + ".tmp")
        if tmp.exists():
            records.remove_own_dir(tmp)
        tmp.mkdir()
        checkpoint.save_models(tmp, self.accelerator, self.run.model, self.network_models())
        records.write_json(tmp / "best.json", {"epoch": best["epoch"], "val_accuracy": best["accuracy"]})
        records.replace_dir(tmp, self.output / records.BEST_DIR)

    def model_card(self) -> dict[str, Any]:
        """What ``noisybench predict`` needs to rebuild the model and its input pipeline."""
        splits = self.splits
        files = image_files(splits.test)
        return {"method": self.config["method"], "networks": sorted(self.run.networks),
                "model": self.config["model"]["name"], "num_classes": splits.num_classes,
                "class_names": splits.class_names, "channels": splits.channels,
                "normalization": None if splits.normalization is None else [list(v) for v in splits.normalization],
                "input_size": self.choices["input_size"],
                "image_size": self.config["data"]["image_size"] if files is not None else None}

    def training_state(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the model weights and the RNG."""
        scaler = self.accelerator.scaler
        return {"optimizer": self.run.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "networks": {name: n.optimizer.state_dict() for name, n in self.run.networks.items()},
                "progress": self.progress.state_dict(), "scaler": None if scaler is None else scaler.state_dict()}

    def restore(self, folder: Path) -> None:
        state = checkpoint.load(folder, self.accelerator, self.run.model, self.network_models())
        for name, optimizer_state in state.get("networks", {}).items():
            self.run.networks[name].optimizer.load_state_dict(optimizer_state)
        self.run.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if isinstance(self.scheduler, torch.optim.lr_scheduler.MultiStepLR):
            self.scheduler.milestones = Counter(self.scheduler.milestones)  # JSON keeps a plain dict
        self.progress.load_state_dict(state["progress"])
        if state["scaler"] is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])

    # -- the run ------------------------------------------------------------------
    def fit(self, resume: bool) -> dict[str, Any]:
        run, acc, progress = self.run, self.accelerator, self.progress
        self.pm.hook.noisybench_setup(run=run)
        saved = records.latest_checkpoint(self.output)
        if resume and saved is not None:
            self.restore(saved)
            self.check_resumed()
        progress.experiment = self.experiment
        if acc.is_main_process:
            records.write_text(self.output / records.CONFIG_FILE, dump(self.config))
            records.write_json(self.output / records.MODEL_CARD, self.model_card())
        self.sample_columns: dict[str, np.ndarray] = {}
        self.finetune_epochs = self.resolve_finetune()
        if self.config["report"]["trackers"]:
            acc.init_trackers(TRACKER_PROJECT, config=tracker_hyperparameters(self.config))
        self.startup_seconds = process_seconds()
        if acc.is_main_process:
            logger.info(self.choices["line"])
            for warning in self.splits.warnings:
                logger.warning(warning)
        for epoch in range(progress.epochs_done + 1, run.num_epochs + self.finetune_epochs + 1):
            epoch_start = time.perf_counter()
            run.epoch, run.epoch_log = epoch, {}
            entry: dict[str, Any] = {"epoch": epoch, "stage": "train", "lr": run.optimizer.param_groups[0]["lr"]}
            if epoch <= run.num_epochs:
                for network in run.networks.values():
                    self.follow_schedule(network)
                self.pm.hook.noisybench_epoch_start(run=run, epoch=epoch)
                entry.update(self.train_epoch(epoch))
                if epoch == run.num_epochs:  # the last epoch_end may correct once more (a final model's labels)
                    self.capture_initial(sample_outputs(run))
                self.pm.hook.noisybench_epoch_end(run=run, epoch=epoch)
                run.gather_harvest()  # rows a method harvested and has not used yet go into the checkpoint
                step_scheduler(self.scheduler, epoch)
                self.label_metrics(entry)
            else:
                entry.update(self.finetune_epoch(epoch))
            self.report_corrupt()
            self.evaluate_epoch(entry, last=epoch == run.num_epochs + self.finetune_epochs)
            entry.update(run.epoch_log)
            self.update_best(entry)
            progress.epoch_seconds.append(time.perf_counter() - epoch_start)
            entry["seconds"] = progress.epoch_seconds[-1]
            progress.history.append(entry)
            progress.epochs_done = epoch
            if self.config["report"]["trackers"]:
                acc.log(numeric({k: v for k, v in entry.items() if k != "epoch"}), step=epoch)
            self.save_checkpoint()
            if acc.is_main_process:
                logger.info(self.epoch_line(entry))
        if progress.epochs_done and not hasattr(self, "test_pred"):
            self.evaluate_epoch({}, last=True)  # resumed a finished-but-unrecorded run: evaluate once more
            self.label_metrics({})
        self.test_best_weights()
        result = self.record()
        if self.config["report"]["trackers"]:
            acc.log(final_values(result), step=progress.epochs_done)
        self.release_loaders()
        acc.wait_for_everyone()
        acc.end_training()
        return result

    def check_resumed(self) -> None:
        """Refuse to continue a checkpoint as another experiment (a changed seed, noise, option,
        data, process count or precision); let ``epochs`` grow, with the schedule it implies."""
        saved, progress = self.progress.experiment, self.progress
        if saved is not None:
            refusal = identity.resume_refusal(saved, self.experiment, self.output)
            if refusal:
                raise ConfigError(refusal)
            if progress.epochs_done > saved["epochs"] and self.config["epochs"] != saved["epochs"]:
                raise ConfigError(f"cannot extend the run in {self.output} to epochs={self.config['epochs']}: "
                                  "its clean-set fine-tuning stage has begun")
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.MultiStepLR):
            if progress.epochs_done and self.config["epochs"] != (saved or {}).get("epochs", self.config["epochs"]):
                fresh = make_scheduler(self.config, self.run.optimizer)  # the schedule of the new length
                step_scheduler(fresh, progress.epochs_done)
                self.scheduler = fresh
            return
        # The checkpointed scheduler keeps the milestones of the epochs it was started with, and
        # a decay at the old last epoch was skipped: apply the schedule for the new epochs.
        milestones = Counter(lr_milestones(self.config))
        if milestones != self.scheduler.milestones:
            self.scheduler.milestones = milestones
            decays = sum(count for m, count in milestones.items() if m <= self.scheduler.last_epoch)
            for group, lr in zip(self.run.optimizer.param_groups, self.scheduler.base_lrs):
                for _ in range(decays):  # as MultiStepLR multiplies, so a straight run's values are met exactly
                    lr *= self.scheduler.gamma
                group["lr"] = lr
            self.scheduler._last_lr = [group["lr"] for group in self.run.optimizer.param_groups]

    def update_best(self, entry: dict[str, Any]) -> None:
        """A better val accuracy: remember its epoch, its test accuracy if tested, else its weights."""
        best = self.progress.best_val
        if entry["val_accuracy"] is not None and (best["accuracy"] is None or entry["val_accuracy"] > best["accuracy"]):
            best.update(epoch=entry["epoch"], accuracy=entry["val_accuracy"], test_accuracy=entry["test_accuracy"])
            model = self.accelerator.unwrap_model(self.run.model)
            self.progress.best_weights = None if entry["test_accuracy"] is not None else {
                name: t.detach().clone() for name, t in model.state_dict().items()}
            self.best_pending = True  # written to best/ with this epoch's checkpoint

    @staticmethod
    def epoch_line(entry: dict[str, Any]) -> str:
        parts = [f"epoch {entry['epoch']}" + (" (fine-tune)" if entry["stage"] == "finetune" else ""),
                 f"loss {entry['train_loss']:.4f}"]
        for key in ("val_accuracy", "test_accuracy", "label_accuracy", "changed_fraction"):
            if entry.get(key) is not None:
                parts.append(f"{key.replace('_accuracy', ' acc').replace('_', ' ')} {entry[key]:.4f}")
        parts.append(f"{entry['seconds']:.1f}s")
        return " | ".join(parts)

    # -- records ------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        run, acc, splits, progress = self.run, self.accelerator, self.splits, self.progress
        found = metrics.sample_metrics(splits.train_labels, splits.true_labels, splits.is_noisy(), self.sample_columns)
        peak, host_peak = peak_memory(acc.device)
        trained = sum(h.get("samples_trained", 0) for h in progress.history)
        train_seconds = run.phase_seconds.get("train", 0.0)
        labels = dict(found["labels"])
        labels["warnings"] = list(run.warnings)
        labels["corrected_accuracy_initial"] = progress.corrected_accuracy_initial
        corrupt = self.corrupt_images()  # a collective: every process takes part
        heldout = self.score_heldout()  # a collective too
        further = extra_tests.record(self.run, splits)  # a collective too: webvision's ILSVRC12 val
        result = {
            "schema_version": records.SCHEMA_VERSION,
            "fingerprint": identity.fingerprint(self.experiment),
            "method": run.method,
            "dataset": self.config["dataset"],
            "setting": self.config["setting"],
            "seed": self.config["seed"],
            "noise": noise_record(splits),
            "model": self.config["model"]["name"],
            "pretrained": {"file": self.config["model"]["pretrained_file"], "tensors_loaded": self.pretrained_tensors},
            "choices": {k: v for k, v in self.choices.items() if k != "line"},
            "num_train": run.num_train,
            "num_classes": splits.num_classes,
            "class_names": splits.class_names,
            "test": metrics.classification(self.test_true, self.test_pred, splits.num_classes),
            "best_val": progress.best_val,
            "evaluation": evaluation_record(self.config["eval"], progress.history),
            "labels": labels,
            "detection": found["detection"],
            "efficiency": {
                "total_seconds": sum(progress.epoch_seconds),
                "startup_seconds": self.startup_seconds,
                "first_batch_seconds": self.first_batch_seconds,
                "epoch_seconds": progress.epoch_seconds,
                "phase_seconds": dict(run.phase_seconds),
                "train_images_per_second": trained / train_seconds if train_seconds else None,
                "peak_memory_bytes": peak,
                "peak_host_memory_bytes": host_peak,
                "parameters": self.all_parameters(),
                "model_bytes": self.model_bytes,
                "inference_ms_per_image": 1000.0 * self.test_seconds / max(1, len(self.test_true)),
                "device_settings": self.device_settings,
            },
            "history": progress.history,
            "data": {
                "corrupt_images": {name: int(mask.sum()) for name, mask in corrupt.items()},
                "warnings": splits.warnings,
                "trusted": None if self.run.trusted is None else len(self.run.trusted),
                "clean": None if self.run.clean is None else len(self.run.clean),
            },
            "environment": records.environment(acc),
            "config": self.config,
            "experiment": self.experiment,
            **further,
        }
        if acc.is_main_process:
            self.write_tables(corrupt.get("train"))
            if heldout is not None:
                records.write_csv(self.output / records.HELDOUT_FILE, heldout)
            records.write_json(self.output / records.METRICS_FILE, result)
        return result

    def score_heldout(self) -> Any:
        """data.cv_folds: the held-out fold's samples scored by the final model, by their
        position in the whole training set: noisy label, p(label), noise_score = 1 - p(label)."""
        import pandas as pd

        splits = self.splits
        if splits.heldout is None:
            return None
        logits, _ = self.run.predict(dataset=splits.heldout)
        labels = torch.as_tensor(labels_of(splits.heldout), device=logits.device)
        chance = label_probability(logits, labels).cpu().numpy()
        return pd.DataFrame({"index": splits.heldout_index, "noisy_label": labels.cpu().numpy(), "p_label": chance,
                             "noise_score": 1.0 - chance})

    def write_eval_samples(self) -> None:
        table = eval_samples_table(self.splits, self.split_scores)
        if table is not None:
            records.write_csv(self.output / records.EVAL_SAMPLES_FILE, table)

    def write_tables(self, corrupt: np.ndarray | None) -> None:
        import pandas as pd

        splits = self.splits
        table = pd.DataFrame({"index": np.arange(self.run.num_train), "noisy_label": splits.train_labels})
        paths = image_paths(splits.train)
        if paths is not None:
            table.insert(1, "path", paths)
        if splits.true_labels is not None:
            table["true_label"] = pd.array(np.where(splits.true_labels >= 0, splits.true_labels, None), dtype="Int64")
        flags = splits.is_noisy()
        if flags is not None:
            table["is_noisy"] = pd.array(np.where(flags >= 0, flags, None), dtype="Int64")
        table["train_loss"] = self.progress.train_loss_column
        if corrupt is not None:
            table["corrupt"] = corrupt.astype(int)
        for name, values in self.sample_columns.items():
            table[name] = values
        records.write_csv(self.output / records.SAMPLES_FILE, table)
        final = self.sample_columns.get("corrected_label")
        if final is not None and splits.true_labels is not None:
            per_class = metrics.per_class_label_accuracy(
                splits.train_labels, splits.true_labels, self.progress.initial_corrected, final, splits.class_names
            )
            records.write_csv(self.output / records.PER_CLASS_FILE, per_class)
        if self.progress.weight_snapshots:
            plots.weight_histograms(self.progress.weight_snapshots, self.output / records.WEIGHT_PLOT_FILE)
        self.write_eval_samples()
        matrix = metrics.confusion(self.test_true, self.test_pred, splits.num_classes)
        records.write_csv(
            self.output / records.CONFUSION_FILE, records.confusion_frame(matrix, splits.class_names), index=True
        )


def eval_samples_table(splits: DataSplits, scores: dict[str, tuple]) -> Any:
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


def noise_record(splits: DataSplits) -> dict[str, Any]:
    """Noise type and rate (the measured rate for human labels, null for real-world noise)."""
    rate = splits.noise.rate
    record: dict[str, Any] = {"type": splits.noise.type, "rate": None if rate != rate else rate}
    if splits.noise.label_set:
        record["label_set"] = splits.noise.label_set
    return record


def train(
    config: dict[str, Any], output: str | Path, resume: bool = False, plugins: Iterable[Any] = ()
) -> dict[str, Any]:
    """Train ``config`` into folder ``output`` and return the metrics written to metrics.json.

    The folder is locked for the run (lock.py). ``resume=True`` continues from the folder's
    checkpoint, or returns the finished record, or, given more ``epochs``, continues a
    finished run; any other change of the experiment is refused (identity.py). Without
    ``resume`` a folder that already holds a run is refused, so nothing is lost.
    ``plugins`` are extra plugin objects registered beside the method (for tests, tools).
    """
    output = Path(output)
    try:
        claim_run_folder(output)  # outputs.py: a folder of other files is refused, untouched
        with RunLock(output):
            finished = output / records.METRICS_FILE
            record = records.read_record(finished)  # None if absent or unreadable: then recorded anew
            trained = record is not None or records.latest_checkpoint(output) is not None
            if trained and not resume:
                raise ConfigError(f"{output} already holds a run; pass --resume to continue it or choose another --output")
            if trained:  # and resuming: the same experiment, perhaps with more epochs
                saved = saved_config(output)
                refusal = saved and identity.resume_refusal(identity.config_experiment(saved),
                                                            identity.config_experiment(config), output)
                if refusal:
                    raise ConfigError(refusal)
                if record is not None and (saved is None or config["epochs"] == saved["epochs"]):
                    return record
            try:
                with run_logging(output, console=config["progress"]):
                    return Trainer(config, output, plugins).fit(resume)
            finally:
                _clock["origin"] = time.perf_counter()
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            raise
        raise RunInterrupted(interrupted(output)) from None
    finally:
        # Accelerate keeps process-wide singletons; clear them so the next run in this
        # process (a sweep, a notebook, a test) may choose its own mixed precision.
        AcceleratorState._reset_state()
        GradientState._reset_state()
        stop_unreferenced_workers()  # a failed run's (a finished run has released its loaders)


def interrupted(output: Path) -> str:
    """What an interrupted run leaves, and how to go on."""
    saved = records.latest_checkpoint(output)
    done = records.saved_epochs(saved) if saved is not None else 0
    if not done:
        return f"interrupted before the first epoch of {output} was saved; start it again"
    return (f"interrupted: epochs 1-{done} are saved in {saved}; continue with "
            f"noisybench run --output {output} --resume")


def saved_config(output: Path) -> dict[str, Any] | None:
    """The resolved config a run folder was started with, if it has one."""
    path = output / records.CONFIG_FILE
    return load_yaml(path) if path.is_file() else None

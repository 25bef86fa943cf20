"""The training loop: one Accelerate loop with the method hooks at fixed points.

    setup -> for each epoch: epoch_start -> train steps (loss) -> epoch_end
          -> sample_outputs -> evaluate val and test -> checkpoint
          -> in setting ``clean``: ``finetune.epochs`` more epochs of plain
             cross-entropy on the clean set (no method hooks)
          -> records (metrics.json last)

Runs unchanged on one CPU, one GPU or several processes under ``accelerate launch`` /
``torchrun``. Epochs are numbered from 1, as in the papers' algorithms.

This module owns the order of hooks and phases; what happens at each point lives beside
it: choices.py (what a run decides for itself), optim.py (optimiser and schedule),
evaluation.py (predictions, the eval schedule, the best epoch), persistence.py
(checkpoints, ``best/``, resume checks), results.py and samples.py (what a run writes),
unreadable.py (unreadable images). ``train`` is the entry point (api.py, cli.py, folds.py);
``Trainer`` is also built by ``noisybench evaluate`` and ``run --dry-run``.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
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
from noisybench import identity, records, results, threads
from noisybench.choices import choose, choose_mixed_precision, device_settings
from noisybench.config import dump
from noisybench.datasets import DataSplits, build_dataset, image_files
from noisybench.errors import RunInterrupted
from noisybench.evaluation import Evaluator, kept_networks, test_best_epoch
from noisybench.lock import RunLock
from noisybench.outputs import claim_run_folder
from noisybench.logs import logger, run_logging
from noisybench.loaders import eval_loader, loader_options, shuffled_loader, stop_workers, train_loader
from noisybench.models import create_model, model_bytes, parameter_count
from noisybench.optim import follow_schedule, make_optimizer, make_scheduler, step_scheduler
from noisybench.persistence import Checkpoints, Progress, interrupted, prior_record
from noisybench.plugins import make_plugin_manager
from noisybench.run import Batch, Network, Run
from noisybench.samples import sample_outputs
from noisybench.trackers import PROJECT as TRACKER_PROJECT
from noisybench.trackers import check_installed, final_values, numeric
from noisybench.trackers import hyperparameters as tracker_hyperparameters
from noisybench.unreadable import UnreadableImages

SLOW_EPOCH_SECONDS = 600  # an epoch estimated to take longer is announced at its third batch

_clock = {"origin": noisybench.STARTED}  # where this process's next run starts counting


def process_seconds() -> float:
    """Seconds since the run's clock started: the import of noisybench (before torch and the
    rest) for the first run of a process, the end of the previous run for a later one. Not
    the OS's process start, which an ``exec`` from a shell script would move to the script's."""
    return time.perf_counter() - _clock["origin"]


def stop_unreferenced_workers() -> None:
    """Stop the worker processes of loaders nothing refers to any more. Persistent loader
    iterators sit in reference cycles, so only a collection stops them; left to a later one,
    a loader worker forked meanwhile inherits them and tries to stop them itself ("can only
    test a child process"), or interpreter exit tears them down after torch's own state."""
    if multiprocessing.active_children():
        gc.collect()


class Trainer:
    """One run: built from its config (data, model, optimiser, loaders, the method's ``Run``),
    then ``fit`` trains, evaluates, checkpoints and records it."""

    def __init__(self, config: dict[str, Any], output: Path, plugins: Iterable[Any] = ()):
        self.config, self.output = config, Path(output)
        self.pm = make_plugin_manager(config["method"], plugins)
        self.accelerator = acc = self.make_accelerator()
        set_seed(config["seed"])
        auto_size = config["data"]["image_size"] == "auto"
        self.splits: DataSplits = build_dataset(config)
        self.choices = choose(config, self.splits, auto_size)
        self.choices.update(threads.apply(config["threads"], self.choices["input_size"]))
        self.choices["line"] += f"; {self.choices['threads']} CPU thread(s) ({self.choices['threads_why']})"
        self.experiment = identity.experiment(config, self.splits.identity, acc.num_processes, acc.mixed_precision)
        cuda = acc.device.type == "cuda"
        self.device_settings = device_settings(config, cuda)
        files = image_files(self.splits.train)
        self.device_settings["decoder"] = files.decoder if files is not None else "in memory"
        model = self.new_model()
        self.parameters, self.pretrained_tensors = parameter_count(model), model.pretrained_tensors
        self.model_bytes = model_bytes(model)
        if self.device_settings["compile"]:
            model.compile()  # in place: its __call__ is compiled, the state dict's names stay
        optimizer = make_optimizer(config["optimizer"], model, cuda)
        self.scheduler = make_scheduler(config, optimizer)
        splits = self.splits
        options = loader_options(config, splits.train, cuda, acc.num_processes)
        loaders = [train_loader(config, splits.train, splits.train_labels, options)]
        loaders += [eval_loader(config, split, options) for split in (splits.val, splits.test) if split is not None]
        model, optimizer, self.train_loader, *loaders = acc.prepare(model, optimizer, *loaders)
        self.run = Run(
            method=config["method"], config=config, accelerator=acc, model=model, optimizer=optimizer,
            hook=self.pm.hook, train_set=splits.train, train_eval_set=splits.train_eval,
            noisy_labels=torch.as_tensor(splits.train_labels, dtype=torch.long), class_names=splits.class_names,
            num_epochs=config["epochs"], loader_options=options,
            trusted=splits.trusted if config["setting"] == "verify" else None,
            clean=splits.clean if config["setting"] == "clean" else None, output=self.output,
        )
        self.run.network_factory = self.build_network
        self.evaluator = Evaluator(self.run, loaders[0] if splits.val is not None else None, loaders[-1],
                                   config["eval"])
        self.progress = Progress(self.run)
        self.run.history = self.progress.history  # read-only for methods (SMP's readiness)
        self.checkpoints = Checkpoints(self.output, self.run, self.progress)
        self.unreadable = UnreadableImages(splits, acc, self.progress)
        self.clean_loader: DataLoader | None = None
        self.sample_columns: dict[str, np.ndarray] = {}  # the method's per-sample outputs, last taken
        self.estimated = False
        self.first_batch_seconds: float | None = None  # this process's, not saved on resume

    def make_accelerator(self) -> Accelerator:
        config = self.config
        cuda = torch.cuda.is_available()
        pinned = cuda if config["data"]["pin_memory"] is None else bool(config["data"]["pin_memory"])
        trackers = config["report"]["trackers"]
        check_installed(trackers)
        return Accelerator(
            cpu=not cuda,  # several CPU processes then join over gloo
            mixed_precision=choose_mixed_precision(config["mixed_precision"]),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config["seed"],
                                                      non_blocking=pinned),  # copies overlap compute
            log_with=list(trackers) or None,
            project_dir=str(self.output),
        )

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
        follow_schedule(optimizer, self.run.optimizer)
        return Network(model, optimizer)

    # -- the run ------------------------------------------------------------------
    def fit(self, resume: bool) -> dict[str, Any]:
        """Start (or resume), run the epochs left, finish; returns the record."""
        self.start(resume)
        progress = self.progress
        for epoch in range(progress.epochs_done + 1, self.run.num_epochs + self.finetune_epochs + 1):
            self.run_epoch(epoch)
        if progress.epochs_done and not self.evaluator.tested:
            self.evaluator.evaluate_epoch({}, last=True)  # resumed a finished-but-unrecorded run: evaluate once more
            self.sample_columns = results.label_metrics({}, self.run, self.splits, progress)
        return self.finish()

    def start(self, resume: bool) -> None:
        """The method's setup, the checkpoint restored (resuming), the config and model card
        written, the clean set's loader for fine-tuning, trackers started."""
        run, acc = self.run, self.accelerator
        self.pm.hook.noisybench_setup(run=run)
        if resume:
            self.scheduler = self.checkpoints.resume(self.experiment, self.config, self.scheduler)
        self.progress.experiment = self.experiment
        if acc.is_main_process:
            records.write_text(self.output / records.CONFIG_FILE, dump(self.config))
            records.write_json(self.output / records.MODEL_CARD,
                               results.model_card(self.config, self.splits, sorted(run.networks),
                                                  self.choices["input_size"]))
        self.finetune_epochs = self.resolve_finetune()
        if self.config["report"]["trackers"]:
            acc.init_trackers(TRACKER_PROJECT, config=tracker_hyperparameters(self.config))
        self.startup_seconds = process_seconds()
        if acc.is_main_process:
            logger.info(self.choices["line"])
            for warning in self.splits.warnings:
                logger.warning(warning)

    def run_epoch(self, epoch: int) -> None:
        """One epoch: train (or fine-tune), evaluate, keep the best, checkpoint, log."""
        run, acc, progress = self.run, self.accelerator, self.progress
        epoch_start = time.perf_counter()
        run.epoch, run.epoch_log = epoch, {}
        entry: dict[str, Any] = {"epoch": epoch, "stage": "train", "lr": run.optimizer.param_groups[0]["lr"]}
        if epoch <= run.num_epochs:
            for network in run.networks.values():
                follow_schedule(network.optimizer, run.optimizer)
            self.pm.hook.noisybench_epoch_start(run=run, epoch=epoch)
            entry.update(self.train_epoch(epoch))
            if epoch == run.num_epochs:  # the last epoch_end may correct once more (a final model's labels)
                results.capture_initial(progress, self.splits, sample_outputs(run))
            self.pm.hook.noisybench_epoch_end(run=run, epoch=epoch)
            run.gather_harvest()  # rows a method harvested and has not used yet go into the checkpoint
            step_scheduler(self.scheduler, epoch)
            self.sample_columns = results.label_metrics(entry, run, self.splits, progress)
        else:
            entry.update(self.finetune_epoch(epoch))
        self.unreadable.report()
        self.evaluator.evaluate_epoch(entry, last=epoch == run.num_epochs + self.finetune_epochs)
        entry.update(run.epoch_log)
        progress.best.offer(entry, kept_networks(run))
        if self.config["eval"]["each_network"]:
            progress.each_best.offer(run, entry, kept_networks(run), self.evaluator.val_loader)
        progress.epoch_seconds.append(time.perf_counter() - epoch_start)
        entry["seconds"] = progress.epoch_seconds[-1]
        progress.history.append(entry)
        progress.epochs_done = epoch
        if self.config["report"]["trackers"]:
            acc.log(numeric({k: v for k, v in entry.items() if k != "epoch"}), step=epoch)
        self.checkpoints.save(self.scheduler)
        if acc.is_main_process:
            logger.info(epoch_line(entry))

    def finish(self) -> dict[str, Any]:
        """The best epoch tested if it was not, the record written, the loaders stopped."""
        acc = self.accelerator
        test_best_epoch(self.progress.best, self.evaluator)
        if self.config["eval"]["each_network"]:
            self.progress.each_best.test(self.run, kept_networks(self.run), self.evaluator.test_loader)
        result = results.write_record(self)
        if self.config["report"]["trackers"]:
            acc.log(final_values(result), step=self.progress.epochs_done)
        self.release_loaders()
        acc.wait_for_everyone()
        acc.end_training()
        return result

    # -- one epoch ----------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """The method's training steps over the noisy training set; each sample's loss kept
        for samples.csv."""
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
            loader = shuffled_loader(self.config, self.splits.clean, self.run.loader_options)  # keyed augmentation
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

    # -- what the run holds ---------------------------------------------------------
    def network_models(self) -> dict[str, torch.nn.Module]:
        return self.checkpoints.networks()

    def all_parameters(self) -> int:
        """Parameters of the model and of every further network a method added."""
        return self.parameters + sum(parameter_count(self.accelerator.unwrap_model(n.model))
                                     for n in self.run.networks.values())

    def release_loaders(self) -> None:
        """Stop the worker processes of every loader of this run now, in this process: left to
        interpreter exit, persistent workers are torn down after torch's own state and a
        process of a multi-process run can abort there."""
        for loader in (self.train_loader, self.clean_loader, self.evaluator.val_loader, self.evaluator.test_loader,
                       *self.run._loaders.values()):
            stop_workers(loader)
        self.run._loaders.clear()
        self.train_loader = self.clean_loader = None
        self.evaluator.val_loader = self.evaluator.test_loader = None
        stop_unreferenced_workers()


def epoch_line(entry: dict[str, Any]) -> str:
    """The console line of a finished epoch."""
    parts = [f"epoch {entry['epoch']}" + (" (fine-tune)" if entry["stage"] == "finetune" else ""),
             f"loss {entry['train_loss']:.4f}"]
    for key in ("val_accuracy", "test_accuracy", "label_accuracy", "changed_fraction"):
        if entry.get(key) is not None:
            parts.append(f"{key.replace('_accuracy', ' acc').replace('_', ' ')} {entry[key]:.4f}")
    parts.append(f"{entry['seconds']:.1f}s")
    return " | ".join(parts)


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
            record = prior_record(config, output, resume)
            if record is not None:
                return record
            trainer = None
            try:
                with run_logging(output, console=config["progress"]):
                    trainer = Trainer(config, output, plugins)
                    return trainer.fit(resume)
            finally:
                _clock["origin"] = time.perf_counter()
                if trainer is not None:
                    trainer.release_loaders()  # a failed run's too (a finished one has released them already)
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

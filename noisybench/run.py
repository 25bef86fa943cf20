"""What a method sees of a run: model, optimiser, training data, per-sample state, timers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Dataset, Subset

from noisybench.errors import ConfigError


class Batch(NamedTuple):
    """One training batch on the run's device: images, noisy labels, dataset indices."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


class StepOutput(NamedTuple):
    """What a train step reports: the detached batch loss and, if it has them, the logits."""

    loss: torch.Tensor
    logits: torch.Tensor | None = None


def broadcast_weights(accelerator: Any, model: torch.nn.Module) -> None:
    """Give every process the main process's parameters and buffers.

    Under several processes each keeps its own BatchNorm running statistics, which drift
    apart after the last training step (DDP copies them from the main process only at the
    next training forward); an eval pass split over the processes would then score each
    sample with the network of whichever process holds it. After this, an eval pass gives
    what the main process's model (the one checkpointed) gives, whatever the process count.
    """
    if accelerator is None or accelerator.num_processes == 1:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            torch.distributed.broadcast(tensor.data, src=0)


@contextmanager
def evaluating(model: torch.nn.Module, accelerator: Any = None) -> Iterator[torch.nn.Module]:
    """Eval mode for a no-grad pass, with the main process's weights on every process
    (``broadcast_weights``) if an ``accelerator`` is given; the model's previous mode comes
    back even if the pass fails (a model left in eval mode would train with frozen BatchNorm)."""
    broadcast_weights(accelerator, model)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@dataclass
class Network:
    """A further network of a run (``run.add_network``): its model (prepared with
    Accelerate) and optimiser."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer


@contextmanager
def evaluating_all(run: "Run") -> Iterator[None]:
    """``evaluating`` for the run's model and every further network at once."""
    from contextlib import ExitStack

    acc = run.accelerator
    with ExitStack() as stack:
        for model in [run.model, *(n.model for n in run.networks.values())]:
            stack.enter_context(evaluating(acc.unwrap_model(model), acc))
        yield


def unique_by_index(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique indices and, for each, the value of its first occurrence."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    first = torch.full((len(unique),), len(indices), device=indices.device, dtype=positions.dtype)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return unique, values[first]


@dataclass
class Run:
    """The state of one training run, passed to every hook as ``run``.

    Methods read ``model``, ``optimizer``, ``train_set``, ``noisy_labels``, ``options``
    and keep per-sample state in ``state`` (checkpointed without pickles, so it holds
    tensors, arrays, numbers, strings, lists and dicts only) or, for what need not survive a
    resume (caches, large buffers), in ``scratch``. True labels are not here: the core
    keeps them for metrics only.
    """

    method: str
    config: dict[str, Any]
    accelerator: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    hook: Any
    train_set: Dataset
    train_eval_set: Dataset
    noisy_labels: torch.Tensor
    class_names: list[str]
    num_epochs: int
    loader_options: dict[str, Any] = field(default_factory=dict)
    trusted: np.ndarray | None = None
    clean: Dataset | None = None
    output: Path | None = None
    clean_used: bool = False
    epoch: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    epoch_log: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # the core's per-epoch entries so far
    scored_labels: dict[str, torch.Tensor] = field(default_factory=dict)  # score_labels: this epoch's, by name
    warnings: list[str] = field(default_factory=list)
    networks: dict[str, Network] = field(default_factory=dict)  # further networks a method added
    network_factory: Any = field(default=None, repr=False)  # the core's builder behind add_network
    _timer: Any = field(default=None, repr=False)
    _loaders: dict = field(default_factory=dict, repr=False)
    _shares: dict = field(default_factory=dict, repr=False)

    @property
    def options(self) -> dict[str, Any]:
        """The method's own config section."""
        return self.config.get(self.method, {})

    @property
    def num_train(self) -> int:
        return len(self.noisy_labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def trusted_indices(self) -> torch.Tensor:
        """Training indices whose noisy label a human verified as right (setting ``verify`` only).

        Methods use them to guide the method (prototypes, meta weights), not as extra
        training data.
        """
        if self.trusted is None:
            raise ConfigError(
                f"method '{self.method}' needs a verified subset: run it with setting=verify "
                "(clothing1m, food101n, or any dataset with synthetic noise)"
            )
        return torch.as_tensor(self.trusted, dtype=torch.long)

    def clean_set(self, trains_on_it: bool = True) -> Dataset:
        """The separately labelled clean set (setting ``clean`` only); items (image, label, index).

        A method that trains on it itself makes the core skip its own fine-tuning stage
        unless ``finetune.epochs`` is set; one that only reads it (``trains_on_it=False``,
        e.g. to build prototypes) leaves the fine-tuning in place.
        """
        if self.clean is None:
            raise ConfigError(
                f"method '{self.method}' needs a clean set: run it with setting=clean "
                "(clothing1m's clean train, food101n's verified rows, or a held-out slice with synthetic noise)"
            )
        self.clean_used = self.clean_used or trains_on_it
        return self.clean

    def phase(self, name: str):
        """Time a block into ``efficiency.phase_seconds[name]`` (GPU work included).

        Phases may nest; each second counts once, in the innermost phase, so a method's
        ``"meta"`` phase inside the core's ``"train"`` phase is not counted twice. On a GPU
        the host waits for the device once per outermost phase, not at each (timing.py).
        """
        if self._timer is None:
            from noisybench.timing import PhaseTimer, clock_for

            self._timer = PhaseTimer(clock_for(self.device), self.phase_seconds)
        return self._timer.phase(name)

    def warn(self, message: str) -> None:
        """A warning about the labels or weights a method produced: printed once by the main
        process and kept in metrics.json's ``labels.warnings`` (checkpointed)."""
        if message not in self.warnings:
            self.warnings.append(message)
            if self.accelerator.is_main_process:
                from noisybench.logs import logger

                logger.warning(message)

    def warn_if_collapsed(self, name: str, weights: torch.Tensor, zero: float) -> None:
        """Warn when per-sample weights have collapsed: 95% or more below ``zero`` (almost
        nothing trains), or all equal (the weights tell samples apart no more)."""
        share = int((weights < zero).sum()) / max(1, len(weights))
        if share >= 0.95:
            self.warn(f"{name}: {share:.1%} of the sample weights are below {zero:g} at epoch {self.epoch}: almost "
                      "nothing trains; the weights have collapsed")
        elif len(weights) > 1 and float(weights.max() - weights.min()) < 1e-6:
            self.warn(f"{name}: every sample weight is {float(weights[0]):.4g} at epoch {self.epoch}: the weights "
                      "no longer tell samples apart")

    def log(self, **values: Any) -> None:
        """Add values to this epoch's ``history`` entry in metrics.json."""
        self.epoch_log.update(values)

    def score_labels(self, **labels: torch.Tensor) -> None:
        """Labels for every training sample that the method wants scored (a diagnostic, such as
        another labelling it considered): at the end of the epoch the core puts each one's
        accuracy against the true labels into ``history`` under its name, over the samples
        given a label (-1: none; null where the true labels are unknown). The method itself
        never sees the true labels."""
        self.scored_labels.update({name: value.detach().cpu() for name, value in labels.items()})

    def collect(
        self, indices: torch.Tensor, values: torch.Tensor, order: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather (index, value) pairs from every process: one value per index, sorted by index.

        Where an index occurs more than once (the padding a distributed sampler adds at
        the end of an epoch), the occurrence with the smallest ``order`` wins; without an
        ``order``, the one earliest in its process's list (ties: the lower process).
        """
        acc = self.accelerator
        indices, values = indices.to(acc.device), values.to(acc.device)
        order = torch.arange(len(indices), device=acc.device) if order is None else order.to(acc.device)
        if acc.num_processes > 1:
            indices = acc.pad_across_processes(indices, pad_index=-1)
            values = acc.pad_across_processes(values, pad_index=0)
            order = acc.pad_across_processes(order, pad_index=0)
            indices, values, order = acc.gather((indices.contiguous(), values.contiguous(), order.contiguous()))
            keep = indices >= 0
            indices, values, order = indices[keep], values[keep], order[keep]
        by_order = torch.sort(order, stable=True).indices
        return unique_by_index(indices[by_order], values[by_order])

    def harvest_start(self) -> None:
        """Keep the rows that ``harvest`` is given during this epoch's training batches:
        features a method would otherwise compute in an extra pass. ``harvest_end``, at the
        start of a later epoch (or at this epoch's end), returns them."""
        self.scratch["harvest_parts"] = []
        self.scratch.pop("harvested", None)

    def harvest(self, indices: torch.Tensor, *values: torch.Tensor) -> None:
        """Keep one training batch's rows, ``values`` side by side (float16 on a GPU), if
        ``harvest_start`` began a harvest; otherwise do nothing, at no cost."""
        parts = self.scratch.get("harvest_parts")
        if parts is not None:
            row = torch.cat([v.detach().to(torch.float16 if v.is_cuda else torch.float32) for v in values], dim=1)
            parts.append((indices.detach(), row))

    def gather_harvest(self) -> None:
        """Gather this epoch's harvested rows from every process (a collective; the core calls
        it after each training epoch, so the rows are checkpointed and a resumed run uses
        the same features as an uninterrupted one)."""
        parts = self.scratch.pop("harvest_parts", None)
        if parts is None:
            return
        if not parts:
            self.scratch["harvested"] = None
            return
        order = torch.cat([torch.full_like(indices, step) for step, (indices, _) in enumerate(parts)])
        order = order * self.accelerator.num_processes + self.accelerator.process_index
        seen, values = self.collect(torch.cat([i for i, _ in parts]), torch.cat([v for _, v in parts]), order=order)
        self.scratch["harvested"] = values if len(seen) == self.num_train else None

    def harvest_end(self) -> torch.Tensor | None:
        """The harvested rows of every process, one per training sample in index order (a
        sample seen twice keeps its first row); None if no harvest was begun or the epoch
        did not visit every sample (a class-balanced subset). Called on every process."""
        self.gather_harvest()
        harvested = self.scratch.pop("harvested", None)
        return None if harvested is None else harvested.to(self.device)

    def add_network(self, name: str) -> Network:
        """A further network of the run's architecture (its own initial weights, seeded by
        the run's seed and ``name``) with an optimiser of the run's settings whose learning
        rate follows the run's schedule; prepared for the run's processes, checkpointed
        and resumed with the run, counted in ``efficiency.parameters``. Call it in
        ``noisybench_setup``; a second call with a name returns the same network."""
        if name not in self.networks:
            if self.network_factory is None:
                raise ConfigError("add_network is for noisybench_setup, once the run is built")
            self.networks[name] = self.network_factory(name)
        return self.networks[name]

    def views(self, indices: torch.Tensor, count: int = 2) -> list[Any]:
        """``count`` further augmentations of training samples ``indices`` (each drawn afresh
        with the training transforms, as the loader draws its own, view v of the epoch keyed
        by (seed, epoch, v, index)), batched and on the run's device, for methods that compare
        views of one batch (MixMatch's two augmentations). Drawn in this process: cheap for
        in-memory data, a decode per image for files."""
        from torch.utils.data import default_collate

        from noisybench.datasets import fetch_items

        from noisybench.datasets.draws import TRAIN, drawing, stream

        positions = [int(i) for i in torch.as_tensor(indices).cpu()]
        collate = self.loader_options.get("collate_fn", default_collate)
        out = []
        for view in range(1, count + 1):  # view 0 is the loader's
            with drawing(stream(TRAIN, self.config["seed"], self.epoch, view)):
                out.append(send_to_device(collate(fetch_items(self.train_set, positions))[0], self.device))
        return out

    def eval_logits(self, images: Any, logits: torch.Tensor) -> torch.Tensor:
        """The logits the run is evaluated by, given the model's own ``logits`` for ``images``:
        the method's ``noisybench_eval_logits`` (e.g. two networks' mean), else ``logits``.
        For eval passes (models in eval mode)."""
        chosen = self.hook.noisybench_eval_logits(run=self, images=images, logits=logits)
        return logits if chosen is None else chosen

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        """A DataLoader over ``dataset`` kept for the whole run, so its workers (persistent
        with ``data.persistent_workers``) are started once, not at every pass. A shuffled
        one draws its order from a generator reseeded with ``seed`` here: the order depends on
        the seed alone, as a new loader's would, and pass p after it draws its augmentations
        from the stream (seed, p), whatever the worker count. Items come as the dataset
        gives them (uint8 images: the model normalises)."""
        from noisybench.loaders import method_loader

        key = (dataset, batch_size, shuffle)
        if key not in self._loaders:
            self._loaders[key] = method_loader(dataset, batch_size, shuffle, self.loader_options)
        loader = self._loaders[key]
        loader.sampler.reseed(seed)
        return loader

    def extract_features(self, indices: torch.Tensor | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Pooled pre-logit features of training samples (all, or ``indices`` in that order).

        One pass with eval transforms and no gradient (mixed precision if the run uses it),
        split over the processes and gathered, so every process gets the same tensor, of
        ``dtype`` (float16 halves the memory of a million 2048-d features). The model is put
        back in the mode it was in (train mode during training), even if the pass fails.
        """
        return self.predict(indices, dtype)[1]

    @torch.no_grad()
    def predict(self, indices: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
                dataset: Dataset | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of the samples of ``dataset`` (the training set with eval
        transforms unless given), all or ``indices``, in that order; as ``extract_features``."""
        dataset = self.train_eval_set if dataset is None else dataset
        wanted = torch.arange(len(dataset)) if indices is None else torch.as_tensor(indices).cpu()
        acc = self.accelerator
        mine = wanted[acc.process_index :: acc.num_processes]
        if indices is None:  # a whole split, pass after pass: one loader, its workers kept
            if dataset not in self._shares:
                self._shares[dataset] = Subset(dataset, mine.tolist())
            loader = self.loader(self._shares[dataset], self.config["eval_batch_size"])
        else:
            loader = DataLoader(Subset(dataset, mine.tolist()), batch_size=self.config["eval_batch_size"],
                                **self.loader_options)
        model = acc.unwrap_model(self.model)
        outputs = []
        with evaluating_all(self), acc.autocast():
            for images, *_ in loader:
                images = send_to_device(images, self.device, non_blocking=True)
                logits, features = model(images)
                logits = self.eval_logits(images, logits)  # the method's evaluation (e.g. an ensemble)
                outputs.append(torch.cat([logits.to(dtype), features.to(dtype)], dim=1))
        width = self.num_classes + getattr(model, "num_features", 0)
        local = torch.cat(outputs) if outputs else torch.zeros(0, width, device=self.device, dtype=dtype)
        got, gathered = self.collect(mine.to(self.device), local)  # a Subset keeps the order of ``mine``
        gathered = gathered[torch.searchsorted(got, wanted.to(self.device))]
        return gathered[:, : self.num_classes], gathered[:, self.num_classes :]

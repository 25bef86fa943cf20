"""Evaluation and the best epoch: predictions over a split, the eval schedule (which epochs
score val and test), and the best val epoch with the weights kept to test it at the end.

Called by the loop (engine.py) after each epoch and at the end of a run, and by
``noisybench evaluate`` (evaluate.py); persistence.py checkpoints the best epoch and writes
``best/`` when it changes.

To change the best-epoch rule, read ``BestEpoch.offer``. ``kept_networks`` names the networks
whose best weights are kept (the main model and every further network); the rest (keeping,
checkpointing, restoring, testing with them in place) is written for any set of named networks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from noisybench import metrics
from noisybench.run import Run, evaluating_all

MAIN = "model"  # the name of the main model among the kept networks


def label_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's softmax probability of its label (noise_score = 1 − it)."""
    return torch.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)


class Evaluator:
    """Scores the run's model (through the method's eval logits) on the val and test splits,
    on the schedule of ``eval``. Keeps the last test predictions (metrics.json's ``test``,
    the confusion table) and the final model's per-sample scores (eval_samples.csv)."""

    def __init__(self, run: Run, val_loader: DataLoader | None, test_loader: DataLoader, schedule: dict[str, Any]):
        self.run, self.schedule = run, schedule
        self.val_loader, self.test_loader = val_loader, test_loader
        self.split_scores: dict[str, tuple] = {}  # val/test of the final model: (label, prediction, p(label))
        self.test_true: np.ndarray | None = None
        self.test_pred: np.ndarray | None = None
        self.test_seconds = 0.0

    @torch.no_grad()
    def predict(self, loader: DataLoader, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(true labels, predictions) over a whole eval split, gathered from all processes.
        With ``split``, each sample's softmax probability of its label is kept in
        ``split_scores[split]`` too (eval_samples.csv)."""
        acc = self.run.accelerator
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

    def evaluate_epoch(self, entry: dict[str, Any], last: bool) -> None:
        """Val accuracy every ``eval.every`` epochs and at the last; test accuracy at the last
        epoch, or after every epoch with ``eval.test=every``. Not evaluated: None."""
        with self.run.phase("eval"):
            entry["val_accuracy"] = None
            if self.val_loader is not None and (last or entry.get("epoch", 0) % self.schedule["every"] == 0):
                true, pred = self.predict(self.val_loader, "val" if last else None)
                entry["val_accuracy"] = metrics.accuracy(true, pred)
            entry["test_accuracy"] = None
            if last or self.schedule["test"] == "every":
                start = time.perf_counter()
                self.test_true, self.test_pred = self.predict(self.test_loader, "test" if last else None)
                self.test_seconds = time.perf_counter() - start
                entry["test_accuracy"] = metrics.accuracy(self.test_true, self.test_pred)

    @property
    def tested(self) -> bool:
        """Whether the test split was scored in this process (a resumed finished run was not)."""
        return self.test_pred is not None


def evaluation_record(schedule: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """What was evaluated when: the schedule and the epochs with a val and a test accuracy."""
    return {"every": schedule["every"], "test": schedule["test"],
            "val_epochs": [h["epoch"] for h in history if h.get("val_accuracy") is not None],
            "test_epochs": [h["epoch"] for h in history if h.get("test_accuracy") is not None]}


def kept_networks(run: Run) -> dict[str, torch.nn.Module]:
    """The networks whose weights the best epoch keeps, to test them at the end when that
    epoch was not tested: the main model and every further network a method added (a peer
    that evaluates with it: co-teaching's mean, DivideMix's ensemble), as ``best/`` holds them."""
    unwrap = run.accelerator.unwrap_model
    return {MAIN: unwrap(run.model), **{f"network_{name}": unwrap(n.model) for name, n in run.networks.items()}}


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


@contextmanager
def weights_in(networks: dict[str, torch.nn.Module], weights: dict[str, dict[str, torch.Tensor]]) -> Iterator[None]:
    """``weights`` (by network name) in ``networks`` for the block, their own weights back after it."""
    current = {name: weights_of(networks[name]) for name in weights}
    try:
        for name, state in weights.items():
            networks[name].load_state_dict(state)
        yield
    finally:
        for name, state in current.items():
            networks[name].load_state_dict(state)


class BestEpoch:
    """The epoch of the best val accuracy so far (metrics.json's ``best_val``: epoch, val and
    test accuracy) and, where its test accuracy is not known yet, the weights of that epoch
    (``kept_networks``), which ``test_best_epoch`` tests once at the end."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {"epoch": None, "accuracy": None, "test_accuracy": None}
        self.weights: dict[str, dict[str, torch.Tensor]] | None = None  # per kept network
        self.unsaved = False  # a new best whose weights best/ does not hold yet (not checkpointed)

    def offer(self, entry: dict[str, Any], networks: dict[str, torch.nn.Module]) -> bool:
        """Take the epoch of ``entry`` if its val accuracy beats the best so far: remember its
        test accuracy if it was tested, else the weights of ``networks``."""
        accuracy, best = entry["val_accuracy"], self.record
        if accuracy is None or (best["accuracy"] is not None and accuracy <= best["accuracy"]):
            return False
        best.update(epoch=entry["epoch"], accuracy=accuracy, test_accuracy=entry["test_accuracy"])
        self.weights = (None if entry["test_accuracy"] is not None
                        else {name: weights_of(model) for name, model in networks.items()})
        self.unsaved = True
        return True

    def weights_in(self, networks: dict[str, torch.nn.Module]):
        """The kept weights in ``networks`` for the block, their own weights back after it."""
        return weights_in(networks, self.weights)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``best_val`` and ``best_weights`` (the main model's state dict, as
        runs have always saved it), plus ``best_network_weights`` for any further network kept."""
        weights = dict(self.weights or {})
        state = {"best_val": self.record, "best_weights": weights.pop(MAIN, None)}
        if weights:
            state["best_network_weights"] = weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.record = state["best_val"]
        main = state.get("best_weights")
        weights = {MAIN: main} if main is not None else {}
        weights.update(state.get("best_network_weights") or {})
        self.weights = weights or None


def test_best_epoch(best: BestEpoch, evaluator: Evaluator) -> None:
    """best_val's test accuracy where its epoch was not tested: the kept weights of that
    epoch, tested once at the end (the same number a test after that epoch gave)."""
    if best.record["epoch"] is None or best.record["test_accuracy"] is not None or best.weights is None:
        return
    with best.weights_in(kept_networks(evaluator.run)), evaluator.run.phase("eval"):
        true, pred = evaluator.predict(evaluator.test_loader)
    best.record["test_accuracy"] = metrics.accuracy(true, pred)

"""Each network's own best epoch (``eval.each_network=true``): the report of DivideMix's
Clothing1M code, where each network keeps its weights of the epoch of its own best val
accuracy (that network's logits alone, the first epoch of ties: their ``if acc > best``)
and the test predicts by the sum of the kept networks' logits.

It sits beside ``best_val`` (one epoch for all networks, scored by the method's eval
logits), never replaces it: metrics.json's ``best_val_each_network``. The per-network val
accuracies go into each epoch's history as ``val_accuracy_<network>`` (``model`` is the
main network, ``network_<name>`` a further one, as ``kept_networks`` names them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from noisybench import metrics
from noisybench.evaluation import weights_in, weights_of
from noisybench.run import Run, evaluating_all


@torch.no_grad()
def sum_of_logits_accuracy(run: Run, networks: list[torch.nn.Module], loader: DataLoader) -> float:
    """Accuracy on ``loader`` of the argmax of the sum of ``networks``' own logits (no method
    eval logits: the authors score each network, and the pair, by its raw outputs)."""
    acc = run.accelerator
    trues, preds = [], []
    with evaluating_all(run), acc.autocast():
        for images, labels, _ in loader:
            logits = sum(model(images)[0].float() for model in networks)
            pred, true = acc.gather_for_metrics((logits.argmax(dim=1), labels))
            preds.append(pred)
            trues.append(true)
    return metrics.accuracy(torch.cat(trues).cpu().numpy(), torch.cat(preds).cpu().numpy())


class EachNetworkBest:
    """Per network: the epoch and val accuracy of its own best so far, and its weights then."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {"epochs": {}, "val_accuracy": {}, "test_accuracy": None}
        self.weights: dict[str, dict[str, torch.Tensor]] = {}

    def offer(self, run: Run, entry: dict[str, Any], networks: dict[str, torch.nn.Module], val: DataLoader) -> None:
        """Score each network alone on val (only in epochs whose val the core scored) and keep
        the weights of any network that beats its own best."""
        if entry.get("val_accuracy") is None:
            return
        for name, model in networks.items():
            accuracy = sum_of_logits_accuracy(run, [model], val)
            entry[f"val_accuracy_{name}"] = accuracy
            best = self.record["val_accuracy"].get(name)
            if best is None or accuracy > best:
                self.record["epochs"][name], self.record["val_accuracy"][name] = entry["epoch"], accuracy
                self.weights[name] = weights_of(model)

    def test(self, run: Run, networks: dict[str, torch.nn.Module], test: DataLoader) -> None:
        """The test accuracy of the sum of the kept networks' logits, each with its own best weights."""
        if not self.weights or self.record["test_accuracy"] is not None:
            return
        with weights_in(networks, self.weights):
            self.record["test_accuracy"] = sum_of_logits_accuracy(run, list(networks.values()), test)

    def state_dict(self) -> dict[str, Any]:
        return {"each_network_best": self.record, "each_network_weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.record = state.get("each_network_best") or self.record
        self.weights = state.get("each_network_weights") or {}


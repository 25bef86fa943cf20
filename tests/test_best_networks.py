"""best_val of a method with several networks: every network's weights of the best epoch are
kept and tested together at the end, as testing after every epoch does and as ``best/``
holds them (co-teaching evaluated by both networks' mean, DivideMix)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_digits

from noisybench import hookimpl
from noisybench.api import make_config
from noisybench.checkpoint import load_models
from noisybench.datasets import build_dataset
from noisybench.evaluate import score_split, trained_run


class PeerVotes:
    """Both networks' classifiers set by hand after each epoch's training: the main network's
    weights zeroed and its bias a near-uniform ramp (its softmax about 0.1 a class), the peer's
    weights zeroed and +20 on the logit of ``votes[epoch]``. The two networks' mean softmax
    then predicts that class for every image, so each epoch's val and test accuracy is that
    class's share of the split, on any CPU. Testing the best epoch with the last epoch's peer
    in place would give the last vote's share instead."""

    def __init__(self, votes: dict[int, int]):
        self.votes = votes

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        unwrap = run.accelerator.unwrap_model
        main = unwrap(run.model).backbone.get_classifier()
        peer = unwrap(run.networks["peer"].model).backbone.get_classifier()
        with torch.no_grad():
            main.weight.zero_()
            main.bias.copy_(torch.arange(len(main.bias), dtype=main.bias.dtype) * 0.01)
            peer.weight.zero_()
            peer.bias.zero_()
            peer.bias[self.votes[epoch]] = 20.0


def class_shares() -> tuple[np.ndarray, np.ndarray]:
    """Each class's share of digits' val and test labels (the seeded split every run uses)."""
    splits = build_dataset(make_config("ce", "digits"))
    return (np.bincount(splits.val.labels.numpy(), minlength=10) / len(splits.val),
            np.bincount(splits.test.labels.numpy(), minlength=10) / len(splits.test))


@pytest.mark.parametrize("method, options", [("coteaching", ["coteaching.evaluate=mean"]),
                                             ("dividemix", ["dividemix.warm_up=1"])])
def test_best_val_with_two_networks_tests_both_networks_of_the_best_epoch(tmp_path, method, options):
    val, test = class_shares()
    last = int(np.argmin(val))  # epoch 2 votes the val's smallest class, epoch 1 a larger one
    best = next(c for c in range(10) if val[c] > val[last] and test[c] != test[last])  # the wrong peer shows
    votes = PeerVotes({1: best, 2: last})
    common = ["epochs=2", "noise=symmetric:0.4", "batch_size=32", "data.epoch_subset=64", *options]
    every = run_digits(tmp_path / "every", *common, "eval.test=every", method=method, plugins=[votes])
    end = run_digits(tmp_path / "end", *common, method=method, plugins=[votes])
    assert [h["val_accuracy"] for h in end["history"]] == pytest.approx([val[best], val[last]])
    assert end["best_val"]["epoch"] == 1 and end["test"]["accuracy"] == pytest.approx(test[last])
    assert end["best_val"]["test_accuracy"] == pytest.approx(test[best])  # both networks of epoch 1
    assert end["best_val"] == every["best_val"]  # tested at the end as after every epoch
    with trained_run(tmp_path / "end") as trainer:  # both networks as best/ holds them
        load_models(tmp_path / "end" / "best", trainer.accelerator, trainer.run.model, trainer.network_models())
        assert score_split(trainer, "test")["accuracy"] == end["best_val"]["test_accuracy"]


class OwnVotes:
    """Each network's classifier set by hand after each epoch: weights zeroed, the bias
    ``biases[network][epoch]`` (class -> logit, the rest 0). A network alone predicts its
    largest bias for every image; the sum of two networks' logits predicts the class whose
    summed bias is largest."""

    def __init__(self, biases: dict[str, dict[int, dict[int, float]]]):
        self.biases = biases

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        unwrap = run.accelerator.unwrap_model
        for name, model in (("main", run.model), ("peer", run.networks["peer"].model)):
            classifier = unwrap(model).backbone.get_classifier()
            with torch.no_grad():
                classifier.weight.zero_()
                classifier.bias.zero_()
                for label, logit in self.biases[name][epoch].items():
                    classifier.bias[label] = logit


def test_each_network_keeps_its_own_best_epoch_and_tests_the_sum_of_logits(tmp_path):
    """eval.each_network (DivideMix's Clothing1M report): the main network is best at epoch 1
    (it votes A there, then S, the val's smallest class), the peer at epoch 2 (S, then B).
    With both own-best weights in place the summed logits vote E (22 + 22 beats A's 30 and
    B's 28); the main network of epoch 2 with the best peer votes B, the best main with the
    peer of epoch 1 votes A: only the right pair of epochs gives E's test share."""
    val, test = class_shares()
    s = int(np.argmin(val))
    others = [k for k in range(10) if val[k] > val[s]]
    a, b = others[0], others[1]
    e = next(k for k in others if test[k] not in (test[a], test[b]))
    votes = OwnVotes({"main": {1: {a: 30.0, e: 22.0}, 2: {s: 15.0}},
                      "peer": {1: {s: 15.0}, 2: {b: 28.0, e: 22.0}}})
    common = ["noise=symmetric:0.4", "batch_size=32", "data.epoch_subset=64", "dividemix.warm_up=1",
              "eval.each_network=true"]
    whole = run_digits(tmp_path / "whole", "epochs=2", *common, method="dividemix", plugins=[votes])
    report = whole["best_val_each_network"]
    assert report["epochs"] == {"model": 1, "network_peer": 2}
    assert report["val_accuracy"] == pytest.approx({"model": val[a], "network_peer": val[b]})
    assert report["test_accuracy"] == pytest.approx(test[e])
    assert [h["val_accuracy_model"] for h in whole["history"]] == pytest.approx([val[a], val[s]])
    assert [h["val_accuracy_network_peer"] for h in whole["history"]] == pytest.approx([val[s], val[b]])
    resumed = tmp_path / "resumed"  # the main network's epoch-1 weights survive the checkpoint
    run_digits(resumed, "epochs=1", *common, method="dividemix", plugins=[votes])
    again = run_digits(resumed, "epochs=2", *common, method="dividemix", plugins=[votes], resume=True)
    assert again["best_val_each_network"] == report
    plain = run_digits(tmp_path / "plain", "epochs=2", *common[:-1], method="dividemix", plugins=[votes])
    assert "best_val_each_network" not in plain and plain["fingerprint"] != whole["fingerprint"]
    losses = [[h["train_loss"] for h in record["history"]] for record in (plain, whole)]
    assert losses[0] == losses[1]  # its val passes draw nothing from the run's random stream

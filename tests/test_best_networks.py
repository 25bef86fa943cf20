"""best_val of a method with several networks: every network's weights of the best epoch are
kept and tested together at the end, as testing after every epoch does and as ``best/``
holds them (co-teaching evaluated by both networks' mean, DivideMix)."""

from __future__ import annotations

import pytest
import torch
from conftest import run_digits

from noisybench import hookimpl
from noisybench.checkpoint import load_models
from noisybench.evaluate import score_split, trained_run


class SpoilTheLastEpoch:
    """After the last epoch's training the main network's classifier is zeroed (its logits tie,
    so the val accuracy falls to one class's share and an earlier epoch is the best) and the
    peer votes class 0 for everything (+1000 on that logit): a best epoch tested with the last
    peer in place would score about one class's share too. Conditions built by hand, not
    picked from a run's trajectory."""

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        if epoch == run.num_epochs:
            unwrap = run.accelerator.unwrap_model
            with torch.no_grad():
                for tensor in unwrap(run.model).backbone.get_classifier().parameters():
                    tensor.zero_()
                unwrap(run.networks["peer"].model).backbone.get_classifier().bias[0] += 1000.0


@pytest.mark.parametrize("method, options", [("coteaching", ["coteaching.evaluate=mean"]),
                                             ("dividemix", ["dividemix.warm_up=1"])])
def test_best_val_with_two_networks_tests_both_networks_of_the_best_epoch(tmp_path, method, options):
    common = ["epochs=2", "noise=symmetric:0.4", "batch_size=128", *options]
    every = run_digits(tmp_path / "every", *common, "eval.test=every", method=method, plugins=[SpoilTheLastEpoch()])
    end = run_digits(tmp_path / "end", *common, method=method, plugins=[SpoilTheLastEpoch()])
    assert end["best_val"]["epoch"] == every["best_val"]["epoch"] == 1  # the last epoch's val is one class's share
    assert end["history"][-1]["val_accuracy"] < 0.2 < end["best_val"]["accuracy"]
    assert end["test"]["accuracy"] < 0.2  # the last model: the peer's class-0 vote
    assert end["best_val"] == every["best_val"]  # the kept weights of both networks, tested at the end
    with trained_run(tmp_path / "end") as trainer:  # both networks as best/ holds them
        load_models(tmp_path / "end" / "best", trainer.accelerator, trainer.run.model, trainer.network_models())
        assert score_split(trainer, "test")["accuracy"] == end["best_val"]["test_accuracy"]

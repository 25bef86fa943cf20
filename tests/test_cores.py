"""CORES² phase 1 (Cheng et al. 2021) against loss.py and phase1.py of UCSC-REAL/cores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import resumed_like_straight
from noisybench_cores import beta_at, class_prior, noisybench_check_options, sieve_loss

from noisybench import hookimpl


@pytest.fixture(autouse=True)
def no_weight_plot(monkeypatch):
    """The runs' weight histograms (a second of matplotlib each) are no part of these checks."""
    monkeypatch.setattr("noisybench.plots.weight_histograms", lambda *args, **kwargs: None)


def f_beta(epoch):  # loss.py of the authors, verbatim in substance
    return np.concatenate((np.linspace(0.0, 0.0, num=10), np.linspace(0.0, 2, num=30), np.linspace(2, 2, num=60)))[epoch]


def test_beta_schedule_is_the_authors_at_100_epochs_and_scales_with_the_run():
    assert [beta_at(e, 2.0, 10, 30) for e in range(1, 101)] == [float(f_beta(e - 1)) for e in range(1, 101)]
    for epochs, expected in ((100, (10, 30, 31)), (15, (2, 5, 5)), (1, (0, 1, 0))):
        options = {"beta": 2.0, "beta_warmup": "auto", "beta_ramp": "auto", "sieve_after": "auto", "lr_scaling": True}
        noisybench_check_options(options=options, config={"epochs": epochs})
        assert (options["beta_warmup"], options["beta_ramp"], options["sieve_after"]) == expected


def test_sieve_and_confidence_regularised_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 0])
    prior = torch.tensor([0.5, 0.25, 0.25])
    e2 = math.exp(2)
    high, low = e2 / (e2 + 2), 1 / (e2 + 2)
    surprise = [-math.log(high + 1e-8), -math.log(low + 1e-8)]
    # sample 0 (label = argmax): CE = -log(high); statistic = CE - mean surprise < 0: kept
    # sample 1 (label 0, argmax 2): CE = -log(low) = surprise of a low class; statistic > 0: sieved out
    stat0 = -math.log(high) - (surprise[0] + 2 * surprise[1]) / 3
    stat1 = -math.log(low) - (2 * surprise[1] + surprise[0]) / 3
    beta = 1.5
    cores0 = -math.log(high) - beta * (0.5 * surprise[0] + 0.5 * surprise[1])
    out = sieve_loss(logits, labels, prior, beta, sieve=True)
    assert out.statistic.tolist() == pytest.approx([stat0, stat1], abs=1e-6)
    assert out.kept.tolist() == [True, False]
    assert out.loss.item() == pytest.approx(cores0, abs=1e-6)
    cores1 = -math.log(low) - beta * (0.5 * surprise[1] + 0.25 * surprise[1] + 0.25 * surprise[0])
    unsieved = sieve_loss(logits, labels, prior, beta, sieve=False)  # the first epochs keep every sample
    assert unsieved.loss.item() == pytest.approx((cores0 + cores1) / 2, abs=1e-6)
    nothing = sieve_loss(logits[1:], labels[1:], prior, beta, sieve=True)  # all sieved: no gradient, as theirs
    assert nothing.loss.item() == 0 and not nothing.kept.any()


def test_prior_leaves_out_the_sieved_samples_labels():
    labels = torch.tensor([0, 0, 1, 2, 2])
    assert class_prior(labels, torch.tensor([True, False, False, True, False]), 3).tolist() == pytest.approx(
        [1 / 3, 1 / 3, 1 / 3])
    assert class_prior(labels, torch.zeros(5, dtype=torch.bool), 3).tolist() == pytest.approx([0.4, 0.2, 0.4])


class LearningRates:
    """Reads the learning rate each epoch trains with, and the one the scheduler gets back."""

    def __init__(self):
        self.during, self.after = {}, {}

    @hookimpl
    def noisybench_train_step(self, run):
        self.during[run.epoch] = run.optimizer.param_groups[0]["lr"]

    @hookimpl(trylast=True)
    def noisybench_epoch_end(self, run):
        self.after[run.epoch] = run.optimizer.param_groups[0]["lr"]


def test_cores_divides_the_lr_by_one_plus_beta_and_resumes_exactly(tmp_path):
    options = ["epochs=3", "noise=symmetric:0.4", "cores.beta_warmup=1", "cores.beta_ramp=2", "cores.sieve_after=0",
               "data.epoch_subset=200"]  # 200 samples an epoch; every epoch sieves
    rates = LearningRates()
    record, _ = resumed_like_straight(tmp_path, "cores", *options, crash_at=3, watch=[rates])
    assert [h["cores_beta"] for h in record["history"]] == [0.0, 0.0, 2.0]
    assert rates.during == pytest.approx({1: 0.05, 2: 0.05, 3: 0.05 / 3})
    assert rates.after == pytest.approx({1: 0.05, 2: 0.05, 3: 0.05})  # the scheduler's own lr back
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    sieved = samples["noise_score"] > 0  # the sieve's statistic of the sample's last batch (0: never drawn, kept)
    assert samples["flagged"].astype(bool).equals(sieved) and samples["weight"].equals((~sieved).astype(float))


def test_paper_config_resolves():
    from pathlib import Path

    from noisybench.api import make_config

    config = make_config("cores", config_file=Path(__file__).parents[1] / "benchmarks" / "configs" / "cifar10_cores.yaml")
    assert (config["noise"], config["model"]["name"], config["batch_size"], config["epochs"]) == (
        "instance:0.6", "resnet34_cifar", 64, 100)
    assert config["optimizer"]["momentum"] == 0 and config["lr_schedule"]["milestones"] == [50]
    assert [config["cores"][k] for k in ("beta_warmup", "beta_ramp", "sieve_after")] == [10, 30, 31]

"""Co-teaching+ (Yu et al. 2019) against loss.py and main.py of xingruiyu/coteaching_plus, and the
forget-rate schedule it shares with JoCoR."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import resumed_like_straight
from noisybench_coteaching.family import authors_forget_rate
from noisybench_coteachingplus import coteaching_choice, disagreement_choice, noisybench_check_options

from noisybench.errors import ConfigError


@pytest.fixture(autouse=True)
def no_weight_plot(monkeypatch):
    """The runs' weight histograms (a second of matplotlib each) are no part of these checks."""
    monkeypatch.setattr("noisybench.plots.weight_histograms", lambda *args, **kwargs: None)


def test_forget_rate_is_the_authors_linspace_indexed_by_epoch():
    # rate_schedule[:10] = linspace(0, 0.4, 10), then 0.4; training epoch e uses rate_schedule[e]
    assert [authors_forget_rate(e, 0.4, 10) for e in (1, 5, 9, 10, 30)] == pytest.approx(
        [0.4 / 9, 2 * 0.4 / 9 * 2.5, 0.4, 0.4, 0.4])
    schedule = np.ones(200) * 0.4
    schedule[:10] = np.linspace(0, 0.4 ** 2, 10)  # JoCoR's exponent c = 2: the ramp ends at tau**2, then jumps
    assert [authors_forget_rate(e, 0.4, 10, 2.0) for e in range(1, 200)] == schedule[1:].tolist()


def ce_of(logits, label):
    return -logits[label] + math.log(sum(math.exp(z) for z in logits))


def test_each_network_keeps_its_small_losses_of_the_disagreement_pool():
    logits_main = torch.tensor([[3.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 3.0]])  # predicts 0, 1, 0, 1
    logits_peer = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # predicts 0, 0, 1, 1
    labels = torch.tensor([0, 0, 0, 1])
    # pool: samples 1 and 2; keep 0.5 -> one each. Main's smallest is sample 2 (-> the peer trains on it),
    # the peer's smallest is sample 1 (-> the main network trains on it)
    choice = disagreement_choice(logits_main, logits_peer, labels, keep=0.5, on_probabilities=False, fallback=True)
    assert choice.loss_main.item() == pytest.approx(ce_of([0.0, 2.0], 0))
    assert choice.loss_peer.item() == pytest.approx(ce_of([0.0, 1.0], 0))
    assert choice.left_out.tolist() == [False, False, True, False]  # in the pool, not the peer's pick for main
    # the authors' code: cross-entropy of the softmax outputs (a second softmax over probabilities)
    probs = torch.softmax(torch.tensor([0.0, 2.0]), 0).tolist()
    choice = disagreement_choice(logits_main, logits_peer, labels, keep=0.5, on_probabilities=True, fallback=True)
    assert choice.loss_main.item() == pytest.approx(ce_of(probs, 0))


def test_a_batch_without_disagreement_trains_on_all_only_early():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    early = disagreement_choice(logits, logits + 1, labels, keep=0.5, on_probabilities=False, fallback=True)
    assert early.loss_main.item() == pytest.approx((ce_of([2.0, 0.0], 0) + ce_of([0.0, 1.0], 0)) / 2)
    late = disagreement_choice(logits, logits + 1, labels, keep=0.5, on_probabilities=False, fallback=False)
    assert late.loss_main.item() == 0 and late.loss_peer.item() == 0  # zero, yet stepped: as their code
    assert not late.left_out.any() and not early.left_out.any()


def test_before_init_epoch_it_is_coteaching_on_the_whole_batch():
    logits_main = torch.tensor([[3.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 3.0]])
    logits_peer = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 0, 1])
    choice = coteaching_choice(logits_main, logits_peer, labels, keep=0.5)  # two of four by each network
    # the peer's two smallest: samples 0 and 3 (losses of logits, not of probabilities)
    assert choice.loss_main.item() == pytest.approx((ce_of([3.0, 0.0], 0) + ce_of([0.0, 3.0], 1)) / 2)
    assert choice.left_out.tolist() == [False, True, True, False]


def test_a_pool_too_small_to_cut_trains_both_networks_on_all_of_it():
    """loss_coteaching: ⌊(1 − λ)·m⌋ = 0 falls back to every sample of the pool (τ = 0.8, m = 2)."""
    logits_main = torch.tensor([[3.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 3.0]])  # predicts 0, 1, 0, 1
    logits_peer = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # predicts 0, 0, 1, 1
    labels = torch.tensor([0, 0, 0, 1])
    choice = disagreement_choice(logits_main, logits_peer, labels, keep=0.2, on_probabilities=False, fallback=True)
    assert choice.loss_main.item() == pytest.approx((ce_of([0.0, 2.0], 0) + ce_of([2.0, 0.0], 0)) / 2)
    assert choice.loss_peer.item() == pytest.approx((ce_of([1.0, 0.0], 0) + ce_of([0.0, 1.0], 0)) / 2)
    assert not choice.left_out.any()
    early = coteaching_choice(logits_main, logits_peer, labels, keep=0.2)  # ⌊0.2·4⌋ = 0: all four
    assert not early.left_out.any()
    assert early.loss_main.item() == pytest.approx(sum(ce_of(z, y) for z, y in zip(logits_main.tolist(), [0, 0, 0, 1])) / 4)


def test_auto_options_are_the_authors_per_dataset():
    options = {"forget_rate": "auto", "num_gradual": 10, "init_epoch": "auto", "loss_on": "probabilities",
               "fallback_steps": 5000, "evaluate": "main"}
    noisybench_check_options(options=options, config={"noise": "asymmetric:0.45", "dataset": "cifar10"})
    assert (options["forget_rate"], options["init_epoch"]) == (0.45, 20)
    options.update(init_epoch="auto")
    noisybench_check_options(options=options, config={"noise": "symmetric:0.2", "dataset": "digits"})
    assert options["init_epoch"] == 0
    with pytest.raises(ConfigError, match="coteachingplus.loss_on"):
        noisybench_check_options(options=dict(options, loss_on="softmax"), config={"noise": "symmetric:0.2"})


def test_coteachingplus_resumes_exactly_and_records_its_choices(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "coteachingplus", "epochs=2", "noise=symmetric:0.4",
                                        "coteachingplus.init_epoch=2", "coteachingplus.num_gradual=2", crash_at=2)
    assert straight["efficiency"]["parameters"] > 0 and straight["config"]["coteachingplus"]["forget_rate"] == 0.4
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    # weight = the share of its 2 epochs a sample was kept; flagged = left out in epoch 2
    flagged = samples["flagged"].astype(bool)
    assert samples["weight"].isin([0, 0.5, 1]).all()
    assert (samples["weight"][flagged] <= 0.5).all() and (samples["weight"][~flagged] >= 0.5).all()
    kept_in_epoch_1 = 2 * samples["weight"] - (~flagged)  # epoch 1 (< init_epoch): Co-teaching at rate 0.4
    assert kept_in_epoch_1.mean() == pytest.approx(0.6, abs=0.02)


def test_paper_config_resolves():
    from pathlib import Path

    from noisybench.api import make_config

    config = make_config("coteachingplus", config_file=Path(__file__).parents[1] / "benchmarks" / "configs"
                         / "cifar10n_coteachingplus.yaml")
    assert (config["noise"], config["model"]["name"], config["optimizer"]["name"]) == ("human:aggre", "resnet34_cifar", "adamw")
    assert config["coteachingplus"]["init_epoch"] == 20 and config["coteachingplus"]["loss_on"] == "probabilities"

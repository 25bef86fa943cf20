"""DivideMix (Li, Socher & Hoi, 2020): each piece on a case computed by hand, and runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess, resumed_like_straight, run_digits
from noisybench_dividemix import noisybench_check_options
from noisybench_dividemix.mixmatch import (clean_probability, co_guess, mix, mixmatch_losses, rampup, refined_labels,
                                           sharpen, uniform_prior_penalty)

from noisybench.errors import ConfigError


def test_the_mixture_splits_a_loss_vector_whose_split_is_known():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.2, 0.05, 120), rng.normal(2.0, 0.3, 40)])  # 120 clean, 40 noisy
    w = clean_probability(losses, seed=0)
    assert (w[:120] > 0.99).all() and (w[120:] < 0.01).all()
    assert np.array_equal(w, clean_probability(losses, seed=0))  # seeded: a resumed run divides alike


def test_sharpening_and_label_refinement_by_hand():
    p = torch.tensor([[0.6, 0.3, 0.1]])
    squared = [0.36, 0.09, 0.01]  # T = 0.5: p^2, renormalised
    assert sharpen(p, 0.5)[0].tolist() == pytest.approx([v / sum(squared) for v in squared])
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    views = [torch.tensor([[0.5, 0.4, 0.1]]), torch.tensor([[0.7, 0.2, 0.1]])]  # mean (0.6, 0.3, 0.1)
    w = torch.tensor([0.8])
    refined = [0.8 * y + 0.2 * q for y, q in zip([0, 1, 0], [0.6, 0.3, 0.1])]  # (0.12, 0.86, 0.02)
    expected = [v ** 2 / sum(r ** 2 for r in refined) for v in refined]
    assert refined_labels(one_hot, views, w, 0.5)[0].tolist() == pytest.approx(expected)


def test_co_guessing_averages_both_networks_over_both_views():
    views = [torch.tensor([[0.7, 0.3]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]]),
             torch.tensor([[0.3, 0.7]])]  # mean (0.6, 0.4)
    assert co_guess(views, 1.0)[0].tolist() == pytest.approx([0.6, 0.4])
    assert co_guess(views, 0.5)[0].tolist() == pytest.approx([0.36 / 0.52, 0.16 / 0.52])


def test_mixup_takes_the_larger_weight_for_the_first_input():
    inputs = torch.tensor([[0.0], [10.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    order = torch.tensor([1, 0])
    for lam in (0.3, 0.7):  # both mean lambda' = 0.7
        mixed, soft = mix(inputs, targets, lam, order)
        assert mixed.flatten().tolist() == pytest.approx([3.0, 7.0])
        assert soft.tolist() == [pytest.approx([0.7, 0.3]), pytest.approx([0.3, 0.7])]


def test_the_uniform_prior_penalty_and_the_losses_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # softmax (0.75, 0.25) and (0.5, 0.5): mean (0.625, 0.375)
    expected = 0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)
    assert uniform_prior_penalty(logits).item() == pytest.approx(expected, rel=1e-6)
    targets = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    lx, lu = mixmatch_losses(logits, targets, logits, targets)
    assert lx.item() == pytest.approx(-(0.9 * math.log(0.75) + 0.1 * math.log(0.25) + math.log(0.5)) / 2, rel=1e-6)
    assert lu.item() == pytest.approx((0.15 ** 2 * 2 + 0.1 ** 2 * 2) / 4, rel=1e-6)
    empty = torch.zeros(0, 2)
    assert mixmatch_losses(empty, empty, logits, targets)[0].item() == 0.0
    assert [rampup(e, 10) for e in (5, 10, 18, 26, 40)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_options_and_the_confidence_penalty_under_asymmetric_noise():
    options = {"warm_up": 10, "p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": 25.0,
               "confidence_penalty": "auto", "mix": "auto"}
    noisybench_check_options(options=options, config={"noise": "asymmetric:0.4"})
    assert options["confidence_penalty"] is True
    for noise, dataset, expected in (("symmetric:0.4", "digits", False), ("none", "clothing1m", True),
                                     ("mapped:0.4", "cifar10", True)):
        chosen = dict(options, confidence_penalty="auto")
        noisybench_check_options(options=chosen, config={"noise": noise, "dataset": dataset})
        assert chosen["confidence_penalty"] is expected
    with pytest.raises(ConfigError, match="dividemix.p_threshold"):
        noisybench_check_options(options=dict(options, p_threshold=1.5), config={"noise": "none"})
    for dataset, expected in (("clothing1m", "labelled"), ("cifar10", "all")):  # their Clothing1M script's mix
        chosen = dict(options, mix="auto")
        noisybench_check_options(options=chosen, config={"noise": "none", "dataset": dataset})
        assert chosen["mix"] == expected
    with pytest.raises(ConfigError, match="dividemix.mix"):
        noisybench_check_options(options=dict(options, mix="unlabelled"), config={"noise": "none"})


class CountingNet(torch.nn.Module):
    """A linear classifier on 4 features that records the batch size of every forward."""

    def __init__(self):
        super().__init__()
        self.linear, self.sizes = torch.nn.Linear(4, 3), []

    def forward(self, x):
        self.sizes.append(len(x))
        return self.linear(x), None


def one_mixmatch_step(mix_scope: str, lambda_u: float, w: torch.Tensor):
    """The loss of one mixmatch_step on a fixed case (seeded MixUp), and the net it trained."""
    from types import SimpleNamespace

    from noisybench_dividemix import mixmatch_step

    torch.manual_seed(0)
    net, other = CountingNet(), CountingNet()
    views = [torch.rand(6, 4), torch.rand(6, 4)]
    run = SimpleNamespace(options={"p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": lambda_u,
                                   "warm_up": 1, "mix": mix_scope},
                          num_classes=3, epoch=9, accelerator=SimpleNamespace(backward=lambda loss: loss.backward()))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = mixmatch_step(run, net, other, optimizer, views, torch.tensor([0, 1, 2, 0, 1, 2]), w)
    return float(loss), net


def test_mix_labelled_scores_only_the_mixed_labelled_samples_without_an_unlabelled_loss():
    """dividemix.mix=labelled (their Clothing1M script): the trained forward sees the 2·2 mixed
    labelled samples only (all: the 12 mixed samples), and the loss does not move with λ_u;
    with no labelled sample in the batch the step changes nothing."""
    w = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.3, 0.1])
    loss, net = one_mixmatch_step("labelled", 25.0, w)
    assert net.sizes[-1] == 4 and loss == one_mixmatch_step("labelled", 1000.0, w)[0]
    loss_all, net_all = one_mixmatch_step("all", 25.0, w)
    assert net_all.sizes[-1] == 12 and loss_all != one_mixmatch_step("all", 1000.0, w)[0]
    torch.manual_seed(0)
    before = CountingNet().linear.weight.detach().clone()
    loss, net = one_mixmatch_step("labelled", 25.0, torch.zeros(6))
    assert loss == 0 and torch.equal(net.linear.weight, before)


def test_dividemix_on_digits_divides_and_tests_by_both_networks(tmp_path):
    record = run_digits(tmp_path, "epochs=6", "noise=symmetric:0.4", "dividemix.warm_up=2", method="dividemix")
    phases = record["efficiency"]["phase_seconds"]
    assert {"eval_pass", "gmm", "mixmatch"} <= set(phases)
    assert record["detection"]["auc"] > 0.9 and record["test"]["accuracy"] > 0.85
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert samples["weight"].between(0, 1).all()
    assert (samples["flagged"] == (samples["weight"] <= 0.5)).all()


def test_dividemix_resumes_both_networks_and_their_division_exactly(tmp_path):
    resumed_like_straight(tmp_path, "dividemix", "epochs=4", "noise=symmetric:0.4", "dividemix.warm_up=1", crash_at=3)


def test_dividemix_under_two_processes(tmp_path):
    proc = noisybench_subprocess("run", "--method", "dividemix", "--dataset", "digits", "--output", str(tmp_path),
                                 "epochs=3", "noise=symmetric:0.4", "dividemix.warm_up=1", "progress=false",
                                 processes=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"]["num_processes"] == 2 and record["detection"]["auc"] > 0.5


def test_under_an_epoch_subset_the_co_divide_scores_and_divides_that_subset_only():
    """As the authors' Clothing1M code: each epoch's mixture is fitted to the losses of the
    epoch's sampled subset (the one it then trains on), not of the whole training set."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from noisybench_dividemix import noisybench_epoch_start

    from noisybench.loaders import BalancedEpochSampler

    labels = torch.arange(40) % 4
    asked = []

    def predict(indices=None):
        asked.append(indices)
        chosen = torch.arange(40) if indices is None else indices
        logits = torch.full((len(chosen), 4), -4.0)
        logits[torch.arange(len(chosen)), (labels[chosen] + (chosen % 3 == 0)) % 4] = 4.0  # every third: wrong
        return logits, None

    run = SimpleNamespace(options={"warm_up": 1}, config={"seed": 3, "data": {"epoch_subset": 12}}, noisy_labels=labels,
                          state={"w": torch.full((2, 40), 7.0)}, scratch={}, phase=lambda name: nullcontext(),
                          predict=predict)
    noisybench_epoch_start(run=run, epoch=2)
    sampler = BalancedEpochSampler(labels.numpy(), 12, 3)
    sampler.set_epoch(2)
    subset = sorted(i for _, i in sampler)
    assert [a.tolist() for a in asked] == [subset, subset]  # both networks, the epoch's 12 samples
    w = run.state["w"]
    outside = torch.ones(40, dtype=torch.bool)
    outside[subset] = False
    assert (w[:, outside] == 7.0).all()  # not trained this epoch: untouched
    wrong = torch.as_tensor(subset) % 3 == 0
    assert (w[:, subset][:, wrong] < 0.5).all() and (w[:, subset][:, ~wrong] > 0.5).all()
    run.config["data"]["epoch_subset"] = 0
    noisybench_epoch_start(run=run, epoch=2)
    assert asked[-1] is None and (run.state["w"] != 7.0).all()  # no subset: the whole set
